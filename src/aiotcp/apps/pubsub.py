"""The pubsub app: topics over line framing, fanned out through a broker.

Commands (one per line; the verb in any case):

``SUB <topic>``          ``OK SUB <topic>`` once the subscription is live
``SUB <topic> FROM <id>`` streams mode: the entries after ``<id>`` first, then live
``UNSUB <topic>``        ``OK UNSUB <topic>``
``PUB <topic> <text>``   ``已收到: <text>`` once the broker accepted it, or
                         ``ERR unavailable <reason>`` while it cannot be reached

Every connection subscribed to ``<topic>``, on any instance sharing the broker, gets
``MSG <topic> <text>`` (``MSG <topic> <entry-id> <text>`` with ``--message-ids`` in
streams mode), pushed outside the reply order. A topic is 1-200 bytes of printable
UTF-8 without spaces. Errors: ``ERR bad-command <why>`` and ``ERR too-many-subscriptions
<why>`` (the connection stays open). A connection's subscriptions end when it closes.

Nothing is lost without the subscriber being told (``aiotcp.broker.fanout``): a
subscriber too far behind gets ``GAP <topic> <n>`` before its next message (local and
pub/sub modes), or, in streams mode, ``ERR lagging <topic> <entry-id> ...`` and is
closed; ``SUB <topic> FROM <entry-id>`` (on any instance) resumes after that entry.

The handler is an ``async def batch``: everything a client pipelined is handled in one
call, in order, and its PUBs go to the broker in one round trip.
"""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncGenerator, Awaitable
from dataclasses import dataclass
from typing import Any

from aiotcp.app import App, AppError, State
from aiotcp.broker import Broker, BrokerUnavailable, open_broker
from aiotcp.broker.fanout import Fanout
from aiotcp.config import Config
from aiotcp.observe.stats import Stats

log = logging.getLogger("aiotcp.broker")

# Longest topic name in bytes: a Redis key can be far longer, but a topic is a name, not
# a payload, and every MSG line repeats it.
MAX_TOPIC_BYTES = 200
STATE_KEY = "pubsub.topics"
USAGE = "expected SUB <topic> [FROM <entry-id>], UNSUB <topic> or PUB <topic> <text>"
# A stream entry ID: MS[-SEQ], each a 64-bit unsigned number (Redis's own limit).
ENTRY_ID = re.compile(r"[0-9]{1,20}(-[0-9]{1,20})?")
MAX_ID_PART = 2**64 - 1


@dataclass(frozen=True, slots=True)
class Command:
    verb: str  # "SUB", "UNSUB" or "PUB"
    topic: str
    text: str = ""
    after: str = ""  # SUB ... FROM <entry-id>: resume after this stream entry


@dataclass(frozen=True, slots=True)
class BadCommand:
    why: str


def topic_error(topic: str) -> str | None:
    """Why ``topic`` is not a topic name, or None if it is one."""
    if not topic:
        return "empty topic"
    if len(topic.encode()) > MAX_TOPIC_BYTES:
        return f"topic over {MAX_TOPIC_BYTES} bytes"
    if not topic.isprintable() or " " in topic:
        return "topic must be printable UTF-8 without spaces"
    return None


def parse(line: str) -> Command | BadCommand:
    """One command line -> a Command, or BadCommand saying why it is not one."""
    verb, sep, rest = line.partition(" ")
    # The verbs are ASCII in any case: str.upper() alone would also make "ſub" SUB.
    verb = verb.upper() if verb.isascii() else verb
    if verb == "PUB":
        topic, sep2, text = rest.partition(" ")
        if not sep or not sep2:
            return BadCommand("expected PUB <topic> <text>")
    elif verb in ("SUB", "UNSUB"):
        topic, text = rest, ""
        if not sep:
            return BadCommand(f"expected {verb} <topic>")
        words = rest.split(" ")
        if verb == "SUB" and len(words) == 3 and words[1].upper() == "FROM":
            topic, after = words[0], words[2]
            if not ENTRY_ID.fullmatch(after) or any(
                    int(part) > MAX_ID_PART for part in after.split("-")):
                return BadCommand(f"FROM needs a stream entry ID like 1700000000000-0, not {after!r}")
            why = topic_error(topic)
            return BadCommand(why) if why is not None else Command(verb, topic, after=after)
    else:
        return BadCommand(USAGE)
    why = topic_error(topic)
    if why is not None:
        return BadCommand(why)
    return Command(verb, topic, text)


class PubSub:
    """The handler: commands of one connection against this process's fanout and broker."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.max_subscriptions = config.max_subscriptions
        self.fanout = Fanout(Stats())  # replaced by the server's counters at startup
        self.broker: Broker | None = None

    @property
    def stats(self) -> Stats:
        return self.fanout.stats

    async def batch(self, messages: list[str], conn: Any) -> list[str | None]:
        """Every command in order; PUB acks wait for the broker together at the end."""
        replies: list[Any] = []
        for line in messages:
            cmd = parse(line)
            if isinstance(cmd, BadCommand):
                replies.append(self._error("bad-command", cmd.why))
            elif cmd.verb == "PUB":
                replies.append(self._publish(cmd))
            elif cmd.verb == "SUB" and cmd.after:
                replies.append(await self._resume(cmd.topic, cmd.after, conn))
            elif cmd.verb == "SUB":
                replies.append(await self._subscribe(cmd.topic, conn))
            else:
                self._unsubscribe(cmd.topic, conn)
                replies.append(f"OK UNSUB {cmd.topic}")
        for i, r in enumerate(replies):
            if not isinstance(r, str):
                replies[i] = await self._acked(r)
        return replies

    async def __call__(self, message: str, conn: Any) -> str | None:
        return (await self.batch([message], conn))[0]

    def _publish(self, cmd: Command) -> tuple[Awaitable[None], str] | str:
        """Queue the publish now, so a connection's PUBs reach the broker in order."""
        assert self.broker is not None
        try:
            return self.broker.publish(cmd.topic, cmd.text), cmd.text
        except BrokerUnavailable as e:
            return self._error("unavailable", str(e))

    async def _acked(self, pending: tuple[Awaitable[None], str]) -> str:
        accepted, text = pending
        try:
            await accepted
        except BrokerUnavailable as e:
            return self._error("unavailable", str(e))
        return self.config.ack_prefix + text

    async def _subscribe(self, topic: str, conn: Any) -> str:
        assert self.broker is not None
        topics = self._topics(conn)
        if topic in topics:
            return f"OK SUB {topic}"
        if len(topics) >= self.max_subscriptions:
            return self._error(
                "too-many-subscriptions", f"limit {self.max_subscriptions} per connection"
            )
        topics.add(topic)
        conn.listening = True  # a subscriber may stay quiet: no idle timeout
        self.fanout.add(topic, conn)
        try:
            await self.broker.subscribe(topic)
        except BrokerUnavailable as e:
            self._unsubscribe(topic, conn)
            return self._error("unavailable", str(e))
        return f"OK SUB {topic}"

    async def _resume(self, topic: str, after: str, conn: Any) -> str:
        """SUB ... FROM: the entries after ``after`` (streams mode), then live ones."""
        assert self.broker is not None
        if not self.broker.resumable:
            return self._error("bad-command", "FROM needs --broker-mode streams (entry IDs)")
        topics = self._topics(conn)
        if topic in topics:
            return self._error("bad-command", f"already subscribed to {topic}")
        if len(topics) >= self.max_subscriptions:
            return self._error(
                "too-many-subscriptions", f"limit {self.max_subscriptions} per connection"
            )
        topics.add(topic)
        conn.listening = True
        try:
            await self.broker.subscribe(topic)
            await self.broker.replay(topic, after, conn)  # joins the fanout when caught up
        except BrokerUnavailable as e:
            self._unsubscribe(topic, conn)
            return self._error("unavailable", str(e))
        except ValueError as e:  # the stream no longer holds what follows ``after``
            self._unsubscribe(topic, conn)
            return self._error("trimmed", str(e))
        return f"OK SUB {topic}"

    def _unsubscribe(self, topic: str, conn: Any) -> None:
        topics = self._topics(conn)
        topics.discard(topic)
        if not topics:
            conn.listening = False
        removed_last = self.fanout.remove(topic, conn)
        if self.broker is not None and (removed_last or not self.fanout.has(topic)):
            self.broker.unsubscribe(topic)  # (not in the fanout: a replay that failed)

    def _topics(self, conn: Any) -> set[str]:
        state = conn.state
        topics: set[str] | None = state.get(STATE_KEY)
        if topics is None:
            topics = state[STATE_KEY] = set()
            conn.on_close(self._closed)
        return topics

    def _closed(self, conn: Any) -> None:
        """The close hook: the connection's subscriptions end with it."""
        for topic in list(conn.state.get(STATE_KEY, ())):
            self._unsubscribe(topic, conn)

    def _error(self, code: str, why: str) -> str:
        self.stats.error(code)
        return f"ERR {code} {why}"


def make_app(config: Config) -> App:
    """The pubsub app for ``config`` (``--broker``, ``--broker-mode``...).

    Raises AppError for settings it cannot serve; the broker is opened by the lifespan
    (a streams broker that cannot reach Redis there makes startup fail).
    """
    if config.framing != "line":
        raise AppError("the pubsub app speaks line framing (--framing line)")
    if config.message_ids and not (config.broker and config.broker_mode == "streams"):
        raise AppError("--message-ids needs --broker-mode streams (pub/sub has no entry IDs)")
    handler = PubSub(config)
    app = App(handler)
    try:
        if config.broker:  # check the URL now: a bad one is exit 1, before anything starts
            from aiotcp.broker.link import connection_settings

            connection_settings(config.broker)
    except ValueError as e:
        raise AppError(str(e)) from None
    except ImportError as e:
        raise AppError(f"--broker needs {e.name or e} (pip install 'aiotcp[redis]')") from None

    @app.lifespan
    async def broker(state: State) -> AsyncGenerator[None, None]:
        if app.stats is not None:
            handler.fanout.stats = app.stats
        b = open_broker(config, handler.fanout)
        try:
            await b.start()
        except BaseException:
            await b.close()
            raise
        handler.broker = b
        try:
            yield
        finally:
            await b.close()

    broker.__qualname__ = "pubsub broker"  # how a startup failure names it, on one line

    @app.readiness
    def broker_ready() -> bool:
        return handler.broker is None or handler.broker.ready

    @app.on_drain
    async def deliver_received() -> None:
        if handler.broker is not None:
            await handler.broker.drain()

    return app
