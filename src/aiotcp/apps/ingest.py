"""The ``ingest`` app: durable acks. ``aiotcp serve --app ingest --store URL``.

Every message is a row (received_at, peer, body) of the store's table; its ack
(``<ack prefix><message>``) leaves only after the transaction holding it committed.
All the messages of one read are one append, and the appends that arrive while a
commit is in flight share the next one (:mod:`aiotcp.stores.group`), so the store sees
one transaction per batch, never one per message.

When a commit fails, each message of that batch is answered
``ERR unavailable <reason>`` instead of an ack (it may or may not have been stored:
the client may resend it); the server keeps serving and retries the store with the
next batch. A store that cannot be opened at startup stops the server (exit 1).

Each ``ERR unavailable`` is counted in the server's ``aiotcp_errors_total``; failed
commits are logged once when they begin (with the reason), reminded once a minute while
they go on, and the recovery is logged (see :mod:`aiotcp.observe.outage`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncGenerator
from typing import TYPE_CHECKING, Any

from aiotcp.app import App, AppError, State
from aiotcp.apps import counting_app
from aiotcp.observe.outage import Outage
from aiotcp.observe.stats import Stats
from aiotcp.stores import Row, StoreError, StoreUnavailable, store_from_url
from aiotcp.stores.group import GroupCommitter

if TYPE_CHECKING:
    from aiotcp.config import Config

log = logging.getLogger("aiotcp.ingest")

UNAVAILABLE = "ERR unavailable "


def peer_name(peer: Any) -> str:
    """``host:port`` (``[host]:port`` for IPv6) of a transport's peername."""
    if isinstance(peer, tuple) and len(peer) >= 2:
        host = str(peer[0])
        return f"[{host}]:{peer[1]}" if ":" in host else f"{host}:{peer[1]}"
    return str(peer)


class Ingest:
    """The handler: append a read's messages, ack them once committed."""

    def __init__(self, committer: GroupCommitter, prefix: str) -> None:
        self.committer = committer
        self.prefix = prefix
        # The serving server's counters once the app runs (see make_app).
        self.stats = Stats()
        self.health = Outage(f"store {committer.store.url.shown}", "commits failing", log)

    async def lifespan(self, state: State) -> AsyncGenerator[None, None]:
        """Open the store and start the group committer; close them after the drain."""
        try:
            await self.committer.start()
        except StoreUnavailable as e:
            await self.committer.close()
            raise StoreUnavailable(
                f"store {self.committer.store.url.shown} cannot be opened: {e}"
            ) from None
        try:
            yield
        finally:
            await self.committer.close()

    async def batch(self, messages: list[str], conn: Any) -> list[str]:
        """One append for the messages of a read; acks once it is committed."""
        received_at = time.time()
        peer = peer_name(conn.peer)
        rows: list[Row] = [(received_at, peer, m) for m in messages]
        try:
            await self.committer.append(rows)
        except StoreUnavailable as e:
            self.health.failed(str(e))
            self.stats.error("unavailable", len(messages))
            return [UNAVAILABLE + str(e)] * len(messages)
        self.health.succeeded()
        prefix = self.prefix
        return [prefix + m for m in messages]

    async def __call__(self, message: str, conn: Any) -> str:
        return (await self.batch([message], conn))[0]


def make_app(config: Config) -> App:
    """The ingest app for ``config.store``. Raises AppError (one line) for a store URL
    with an unknown scheme or option, or whose driver is not installed."""
    try:
        store = store_from_url(config.store, config.store_timeout)
    except StoreError as e:
        raise AppError(str(e)) from None
    committer = GroupCommitter(store, per_message=store.url.commit == "each")
    handler = Ingest(committer, config.ack_prefix)
    app = counting_app(handler)
    app.lifespan(handler.lifespan)
    return app
