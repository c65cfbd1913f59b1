"""Redis pub/sub broker: one subscription per instance and topic, at-most-once.

One connection subscribes (SUBSCRIBE ``aiotcp:topic:T`` for each topic with a local
subscriber) and one reader task delivers what it receives to the local fanout; a
:class:`~aiotcp.broker.link.CommandPipe` on a second connection publishes. A message
reaches this instance's subscribers through Redis, the instance's own publishes
included, so every subscriber sees one order per publisher.

A SUB returns once Redis confirmed the SUBSCRIBE. When the subscribing connection is
lost, the reader reconnects with backoff, subscribes every topic again and logs, once
confirmed, that messages published during the outage may have been lost: Redis
pub/sub keeps nothing for a subscriber that is not connected. Each local subscriber is
told too: its next message on each topic comes after ``GAP <topic> ?``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Awaitable, Coroutine
from typing import Any

from redis.asyncio.connection import Connection

from aiotcp.broker.contract import KEY_PREFIX, BrokerUnavailable
from aiotcp.broker.fanout import Fanout
from aiotcp.broker.link import (
    BEATS_PER_TIMEOUT,
    COMMAND_TIMEOUT,
    CommandPipe,
    Settings,
    endpoint,
    keep_reading,
    reason,
)

log = logging.getLogger("aiotcp.broker")

# Redis confirms a SUBSCRIBE in well under a millisecond; a SUB that waits the broker
# timeout (``--broker-timeout``) gets ERR unavailable. The subscribing connection
# receives nothing while topics are quiet: it is PINGed every timeout/BEATS_PER_TIMEOUT
# and treated as lost when nothing (not even the PONG) came for the timeout.
# Messages taken from the buffer in one go before delivering (bounds one loop turn).
MAX_BURST = 1000
# On shutdown, how long the reader may take to read what Redis already sent.
DRAIN_TIMEOUT = 2.0


class PubSubBroker:
    """See the module doc."""

    def __init__(self, settings: Settings, fanout: Fanout, timeout: float = COMMAND_TIMEOUT) -> None:
        self._settings = settings
        self._fanout = fanout
        self._stats = fanout.stats
        self._timeout = timeout
        self._pipe = CommandPipe(settings, timeout)
        self._conn: Connection | None = None
        self._wanted: set[str] = set()  # topics with local subscribers
        self._requested: set[str] = set()  # SUBSCRIBE sent on this connection, no UNSUBSCRIBE since
        self._unconfirmed: dict[str, int] = {}  # SUBSCRIBEs sent and not yet confirmed
        self._live: set[str] = set()  # confirmed: a message published now is delivered
        self._waiters: dict[str, list[asyncio.Future[None]]] = {}
        self._connected = False
        self._last_seen = 0.0
        self._outage_since: float | None = None  # monotonic time the link was lost
        self._resubscribing = 0  # topics to confirm before the reconnect is logged
        self._stopping = False
        self._reader: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()  # the pinger and UNSUBSCRIBE sends
        self._first_attempt = asyncio.Event()

    @property
    def ready(self) -> bool:
        """Subscribed (the reader's link is there) and Redis answered the heartbeat
        within the timeout."""
        return self._connected and self._pipe.up

    async def start(self) -> None:
        """Start the reader and the publisher, and wait for the reader's first connection
        attempt: Redis may be down (the reader goes on retrying; not ready meanwhile)."""
        self._pipe.start()
        loop = asyncio.get_running_loop()
        self._reader = loop.create_task(self._read_forever(), name="aiotcp-pubsub-reader")
        self._spawn(self._keep_alive())
        await self._first_attempt.wait()
        if self._pipe.first_beat is not None:  # ready at once if Redis is there
            await asyncio.shield(self._pipe.first_beat)

    def publish(self, topic: str, text: str) -> Awaitable[None]:
        return self._published(self._pipe.submit("PUBLISH", KEY_PREFIX + topic, text))

    async def _published(self, reply: Awaitable[Any]) -> None:
        await reply
        self._stats.pubsub_published += 1

    resumable = False

    async def replay(self, topic: str, after: str, conn: Any) -> None:
        raise BrokerUnavailable("this broker has no entry IDs to resume from")

    async def subscribe(self, topic: str) -> None:
        self._wanted.add(topic)
        if topic in self._live:
            return
        conn = self._conn
        if conn is None or not self._connected:
            raise BrokerUnavailable(f"redis: not connected to {endpoint(self._settings)}")
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(topic, []).append(fut)
        if topic not in self._requested:
            await self._send(conn, "SUBSCRIBE", [topic])
        try:
            async with asyncio.timeout(self._timeout):
                await fut
        except TimeoutError:
            raise BrokerUnavailable(
                f"redis: SUBSCRIBE not confirmed in {self._timeout:g}s"
            ) from None
        finally:
            waiting = self._waiters.get(topic)
            if waiting is not None and fut in waiting:
                waiting.remove(fut)

    def unsubscribe(self, topic: str) -> None:
        self._wanted.discard(topic)
        self._live.discard(topic)
        conn = self._conn
        if topic in self._requested and conn is not None and self._connected:
            self._requested.discard(topic)
            self._spawn(self._send(conn, "UNSUBSCRIBE", [topic]))

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send(self, conn: Connection, command: str, topics: list[str]) -> None:
        """SUBSCRIBE/UNSUBSCRIBE ``topics`` on the subscribing connection.

        A failure here is a lost link: the reader sees it too, and resubscribes.
        """
        if command == "SUBSCRIBE":
            for t in topics:
                self._requested.add(t)
                self._unconfirmed[t] = self._unconfirmed.get(t, 0) + 1
        with contextlib.suppress(Exception):
            await conn.send_command(command, *(KEY_PREFIX + t for t in topics), check_health=False)

    # ---- the reader ------------------------------------------------------------------

    async def _read_forever(self) -> None:
        await keep_reading(
            self._settings, None, self._session, self._lost, lambda: self._stopping,
            self._timeout,
        )

    async def _session(self, conn: Connection) -> None:
        """Prove the link, subscribe every wanted topic, deliver until drained."""
        try:
            # A proxy in the way accepts the TCP connection even with Redis gone: only
            # an answer proves the link.
            await conn.send_command("PING", check_health=False)
            if await conn.read_response(timeout=self._timeout) is None:
                raise TimeoutError(f"no answer to PING in {self._timeout:g}s")
            await self._connected_on(conn)
            while True:
                burst = [await conn.read_response(timeout=math.inf)]
                # What Redis sent meanwhile is already buffered: take it too, so a
                # burst costs one write per subscriber, not one per message.
                while len(burst) < MAX_BURST and await conn.can_read():
                    burst.append(await conn.read_response(timeout=math.inf))
                self._last_seen = time.monotonic()
                if self._on_burst(burst):
                    return  # drained: the final UNSUBSCRIBE was confirmed
        finally:
            self._conn = None

    async def _connected_on(self, conn: Connection) -> None:
        self._first_attempt.set()
        self._conn = conn
        self._connected = True
        self._last_seen = time.monotonic()
        self._requested.clear()
        self._unconfirmed.clear()
        self._live.clear()
        topics = sorted(self._wanted)
        if self._outage_since is not None:
            self._stats.broker_reconnects += 1
            self._resubscribing = len(topics)
            if not topics:
                self._log_reconnected(0)
        if topics:
            await self._send(conn, "SUBSCRIBE", topics)

    def _on_burst(self, burst: list[Any]) -> bool:
        """Handle pushed replies in order; True once the drain's UNSUBSCRIBE-all is
        confirmed. Consecutive messages go out per topic together (deliver_many)."""
        lines: dict[str, list[str]] = {}
        drained = False
        for msg in burst:
            if not isinstance(msg, list) or len(msg) < 3:
                continue  # a PONG
            kind = msg[0]
            if kind == b"message":
                topic = msg[1].decode("utf-8", "replace")[len(KEY_PREFIX) :]
                text = msg[2].decode("utf-8", "replace")
                lines.setdefault(topic, []).append(f"MSG {topic} {text}")
                continue
            self._flush(lines)
            if kind == b"subscribe":
                self._confirmed(msg[1].decode("utf-8", "replace")[len(KEY_PREFIX) :])
            elif kind == b"unsubscribe" and self._stopping and msg[2] == 0:
                drained = True
        self._flush(lines)
        return drained

    def _flush(self, lines: dict[str, list[str]]) -> None:
        for topic, topic_lines in lines.items():
            self._fanout.deliver_many(topic, topic_lines)
        lines.clear()

    def _confirmed(self, topic: str) -> None:
        left = self._unconfirmed.get(topic, 0) - 1
        if left > 0:
            self._unconfirmed[topic] = left
            return
        self._unconfirmed.pop(topic, None)
        if topic not in self._requested:
            return  # unsubscribed meanwhile
        self._live.add(topic)
        for fut in self._waiters.pop(topic, []):
            if not fut.done():
                fut.set_result(None)
        if self._outage_since is not None and self._resubscribing:
            self._resubscribing -= 1
            if not self._resubscribing:
                self._log_reconnected(len(self._live))

    def _log_reconnected(self, topics: int) -> None:
        since, self._outage_since = self._outage_since, None
        outage = time.monotonic() - since if since is not None else 0.0
        log.warning(
            "broker: reconnected to Redis at %s after %.1fs; resubscribed %d topic(s); "
            "messages published during the outage may have been lost (pub/sub mode is "
            "at-most-once)",
            endpoint(self._settings), outage, topics,
        )

    def _lost(self, exc: BaseException) -> None:
        self._first_attempt.set()
        was_connected = self._connected
        if was_connected:  # what is published until resubscribed never reaches us
            self._fanout.lost_unknown()
        self._connected = False
        self._live.clear()
        self._pipe.reset()
        failure = BrokerUnavailable(reason(exc))
        for waiting in self._waiters.values():
            for fut in waiting:
                if not fut.done():
                    fut.set_exception(failure)
        self._waiters.clear()
        if was_connected or self._outage_since is None:
            self._outage_since = time.monotonic() if self._outage_since is None else self._outage_since
            if not self._stopping:
                log.error("broker: lost Redis at %s (%s); reconnecting",
                          endpoint(self._settings), reason(exc))

    async def _keep_alive(self) -> None:
        """PING the subscribing connection; drop it when Redis stopped answering."""
        while not self._stopping:
            await asyncio.sleep(self._timeout / BEATS_PER_TIMEOUT)
            conn = self._conn
            if conn is None or not self._connected:
                continue
            if time.monotonic() - self._last_seen > self._timeout:
                with contextlib.suppress(Exception):
                    await conn.disconnect(nowait=True)  # the reader's read fails: reconnect
                continue
            with contextlib.suppress(Exception):
                await conn.send_command("PING", check_health=False)

    # ---- shutdown --------------------------------------------------------------------

    async def drain(self) -> None:
        """UNSUBSCRIBE from everything; the reader delivers what Redis sent before the
        confirmation, then stops."""
        self._stopping = True
        reader = self._reader
        conn = self._conn
        if reader is None or reader.done():
            return
        if conn is None or not self._connected:
            reader.cancel()
        else:
            with contextlib.suppress(Exception):
                await conn.send_command("UNSUBSCRIBE", check_health=False)
        with contextlib.suppress(asyncio.CancelledError, TimeoutError):
            async with asyncio.timeout(DRAIN_TIMEOUT):
                await asyncio.shield(reader)

    async def close(self) -> None:
        self._stopping = True
        tasks = [t for t in (self._reader, *self._tasks) if t is not None]
        self._reader = None
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._connected = False
        await self._pipe.close()
