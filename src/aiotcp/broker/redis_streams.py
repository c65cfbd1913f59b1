"""Redis Streams broker: one stream per topic, at-least-once for connected subscribers.

PUB is ``XADD aiotcp:topic:T MAXLEN ~ N * text <text>`` through the in-order
:class:`~aiotcp.broker.link.CommandPipe`; its ack leaves once XADD returned. One reader
task per instance runs ``XREAD COUNT BLOCK STREAMS <topics> <last IDs>`` on its own
connection, from the last ID it delivered per topic, so an instance cut off from Redis
for a while delivers, once back, what was published meanwhile (as long as the stream
still holds it: each is trimmed to about ``--stream-maxlen`` entries).

A SUB of a topic new to the instance records the stream's last ID (XREVRANGE ... COUNT
1) before it answers, so whatever is published after ``OK SUB`` is delivered, then
wakes the reader (CLIENT UNBLOCK) so its next XREAD covers the topic.

A subscriber is never dropped silently: the fanout knows the last entry it sent each one
and closes one that falls behind with ``ERR lagging <topic> <entry-id>``. ``SUB <topic>
FROM <entry-id>`` (:meth:`StreamsBroker.replay`) sends the entries after that one
(XRANGE, exclusive start) up to where this instance's reader is, then joins the live
delivery at that point: nothing missed, nothing repeated, on any instance. If the stream
was trimmed past that entry (older than ``XINFO STREAM``'s first entry), the SUB is
refused with ``ERR trimmed``: what was trimmed cannot be sent, and is not passed over
in silence.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable
from typing import Any

from redis.asyncio.connection import Connection

from aiotcp.broker.contract import KEY_PREFIX, TEXT_FIELD
from aiotcp.broker.fanout import Fanout
from aiotcp.broker.link import (
    COMMAND_TIMEOUT,
    CommandPipe,
    Settings,
    endpoint,
    keep_reading,
    reason,
)

log = logging.getLogger("aiotcp.broker")

# XREAD blocks this long when nothing arrives, so the reader notices a silent link within
# it plus the broker timeout (the heartbeat makes the instance not ready sooner, within
# the timeout); a new topic normally joins at once (CLIENT UNBLOCK).
BLOCK_MS = 2000
# Entries per XREAD: bounds one read's memory and the time one loop turn delivers.
READ_COUNT = 1000
# With no topic to read, check the link this often (readiness follows it).
IDLE_PING = 2.0
# On shutdown: final non-blocking reads to deliver what Redis holds, at most this many.
DRAIN_READS = 10
DRAIN_TIMEOUT = 2.0
NO_ENTRY = b"0-0"
# A replay pushes into a subscriber that may be far behind: while its output is over the
# push backlog, look again this often (it is reading, or the write timeout closes it).
REPLAY_POLL = 0.01


def id_key(entry_id: bytes) -> tuple[int, int]:
    ms, _, seq = entry_id.partition(b"-")
    return int(ms), int(seq or 0)


class StreamsBroker:
    """See the module doc."""

    def __init__(
        self, settings: Settings, fanout: Fanout, maxlen: int, message_ids: bool,
        timeout: float = COMMAND_TIMEOUT,
    ) -> None:
        self._settings = settings
        self._fanout = fanout
        self._stats = fanout.stats
        self._maxlen = maxlen
        self._message_ids = message_ids
        self._timeout = timeout
        self._pipe = CommandPipe(settings, timeout)
        self._last: dict[str, bytes] = {}  # topic -> last entry ID delivered (or seen at SUB)
        self._locating: dict[str, asyncio.Future[None]] = {}
        self._topics_changed = asyncio.Event()
        self._reader_id: int | None = None  # CLIENT ID of the reading connection
        self._connected = False
        self._outage_since: float | None = None
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        self._reader_conn: Connection | None = None
        self._kicked = False  # the pipe went down: the reader's session must end
        self._kicks: set[asyncio.Task[None]] = set()
        fanout.position = self._position
        # Redis stopped answering the pipe: the reader's link is as suspect (it may
        # be idle, or blocked in XREAD for seconds): make it reconnect now, so that
        # readiness, when it returns, is a reader that reads again.
        self._pipe.on_down = self._kick_reader

    resumable = True

    def _position(self, topic: str) -> str | None:
        """The entry up to which this instance delivered ``topic``."""
        last = self._last.get(topic)
        return last.decode() if last is not None else None

    @property
    def ready(self) -> bool:
        """The reader reaches Redis and Redis answered the heartbeat within the timeout."""
        return self._connected and self._pipe.up

    async def start(self) -> None:
        """Check that Redis answers (raise BrokerUnavailable if not); start the tasks."""
        self._pipe.start()
        await self._pipe.call("PING")
        self._connected = True
        self._task = asyncio.get_running_loop().create_task(
            self._read_forever(), name="aiotcp-streams-reader"
        )

    def publish(self, topic: str, text: str) -> Awaitable[None]:
        reply = self._pipe.submit(
            "XADD", KEY_PREFIX + topic, "MAXLEN", "~", self._maxlen, "*", TEXT_FIELD, text
        )
        return self._published(reply)

    async def _published(self, reply: Awaitable[Any]) -> None:
        await reply
        self._stats.pubsub_published += 1

    async def subscribe(self, topic: str) -> None:
        if topic in self._last:
            return
        pending = self._locating.get(topic)
        if pending is not None:
            await asyncio.shield(pending)
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._locating[topic] = fut
        try:
            newest = await self._pipe.call("XREVRANGE", KEY_PREFIX + topic, "+", "-", "COUNT", 1)
            self._last[topic] = newest[0][0] if newest else NO_ENTRY
            fut.set_result(None)
        except BaseException as e:
            fut.set_exception(e)
            fut.exception()  # retrieved: other waiters re-raise it
            raise
        finally:
            self._locating.pop(topic, None)
        self._wake_reader()

    async def replay(self, topic: str, after: str, conn: Any) -> None:
        """See the module doc and the Broker contract."""
        key = KEY_PREFIX + topic
        cursor = after.encode() if b"-" in after.encode() else after.encode() + b"-0"
        first = await self._trimmed_after(key, cursor)
        if first is not None:
            raise ValueError(
                f"{topic} no longer holds every entry after {after} (its first is "
                f"{first.decode()}; --stream-maxlen trims); SUB {topic} without FROM "
                f"starts from now"
            )
        while True:
            upto = self._last.get(topic)
            if upto is None:  # unsubscribed meanwhile (the connection left)
                return
            if id_key(cursor) >= id_key(upto):
                break
            entries = await self._pipe.call(
                "XRANGE", key, b"(" + cursor, upto, "COUNT", READ_COUNT)
            if not entries:
                cursor = upto
                break
            lines, ids = self._lines(topic, entries, id_key(cursor))
            for i in range(0, len(lines), 100):
                while not conn.send(*lines[i:i + 100]):
                    if conn.closing:
                        return
                    await asyncio.sleep(REPLAY_POLL)
            cursor = ids[-1].encode()
        if not conn.closing:  # synchronously after the check: the reader goes on from upto
            self._fanout.add(topic, conn, after=cursor.decode())

    async def _trimmed_after(self, key: str, cursor: bytes) -> bytes | None:
        """The stream's first entry if entries after ``cursor`` may have been trimmed
        away, else None. Trimming removes the oldest entries: if some were removed and
        ``cursor`` is older than the first one kept, what followed it may be gone
        (Redis 7 counts entries-added; without it, assume so)."""
        if not await self._pipe.call("EXISTS", key):
            return None
        info = await self._pipe.call("XINFO", "STREAM", key)
        fields = dict(zip(info[::2], info[1::2], strict=False))
        first = fields.get(b"first-entry")
        removed = int(fields.get(b"entries-added", 1)) > int(fields.get(b"length", 0))
        if first and removed and id_key(cursor) < id_key(first[0]):
            return bytes(first[0])
        return None

    async def _check_trimmed(self) -> None:
        """After an outage: tell the subscribers of each topic whose stream was trimmed
        past what this instance had read (``GAP <topic> ?`` before the next message).
        Raises BrokerUnavailable if Redis cannot tell: the reader reconnects and asks
        again before reading on."""
        for topic, last in list(self._last.items()):
            first = await self._trimmed_after(KEY_PREFIX + topic, last)
            if first is not None and self._last.get(topic) == last:
                log.warning("broker: %s was trimmed past what this instance had read "
                            "(%s; first kept %s): its subscribers are told (GAP)",
                            topic, last.decode(), first.decode())
                self._fanout.lost_unknown(topic)

    def unsubscribe(self, topic: str) -> None:
        self._last.pop(topic, None)

    def _kick_reader(self) -> None:
        conn = self._reader_conn
        if conn is None or self._stopping:
            return
        # Idle, it ends at its next turn (woken now); blocked in XREAD, its read fails
        # when the socket closes. (A reconnect that redis-py would make by itself on the
        # next command must not pass for the old link.)
        self._kicked = True
        self._topics_changed.set()
        task = asyncio.get_running_loop().create_task(conn.disconnect(nowait=True))
        self._kicks.add(task)
        task.add_done_callback(self._kicks.discard)

    def _wake_reader(self) -> None:
        """Make the reader start a new XREAD now (a topic joined, or shutdown began)."""
        self._topics_changed.set()
        if self._reader_id is not None:
            unblock = self._pipe.submit("CLIENT", "UNBLOCK", self._reader_id)
            unblock.add_done_callback(lambda f: f.exception())  # a lost link is the reader's news

    # ---- the reader ------------------------------------------------------------------

    async def _read_forever(self) -> None:
        await keep_reading(
            self._settings, BLOCK_MS / 1000 + self._timeout, self._session, self._down,
            lambda: self._stopping, self._timeout,
        )

    async def _session(self, conn: Connection) -> None:
        """Read and deliver until shutdown; then read what is left without blocking."""
        self._reader_conn = conn
        try:
            await conn.send_command("CLIENT", "ID")
            self._reader_id = int(await conn.read_response())
            if self._outage_since is not None:  # before the first XREAD: what it
                await self._check_trimmed()  # reads next then comes after the GAP
            self._up()
            while not self._stopping:
                await self._read_once(conn, block=True)
            for _ in range(DRAIN_READS):
                if not await self._read_once(conn, block=False):
                    break
        finally:
            self._reader_id = None
            self._reader_conn = None

    async def _read_once(self, conn: Connection, *, block: bool) -> int:
        """One XREAD over the topics; delivers and returns the number of entries."""
        if self._kicked:
            self._kicked = False
            raise ConnectionError(self._pipe.why_down())
        if not self._last:
            if not block:
                return 0
            self._topics_changed.clear()
            try:
                async with asyncio.timeout(IDLE_PING):
                    await self._topics_changed.wait()
            except TimeoutError:
                await conn.send_command("PING")
                await conn.read_response()
            return 0
        self._topics_changed.clear()
        topics = list(self._last)
        args: list[Any] = ["XREAD", "COUNT", READ_COUNT]
        if block:
            args += ["BLOCK", BLOCK_MS]
        args += ["STREAMS", *(KEY_PREFIX + t for t in topics), *(self._last[t] for t in topics)]
        await conn.send_command(*args)
        reply = await conn.read_response()
        if not reply:
            return 0
        n = 0
        for key, entries in reply:
            n += len(entries)
            self._deliver(key.decode("utf-8", "replace")[len(KEY_PREFIX) :], entries)
        return n

    def _deliver(self, topic: str, entries: list[Any]) -> None:
        last = self._last.get(topic)
        if last is None:
            return  # unsubscribed meanwhile
        # Resubscribed meanwhile (a newer start ID): skip what precedes it.
        lines, ids = self._lines(topic, entries, id_key(last))
        if not ids:
            return
        self._fanout.deliver_entries(topic, lines, ids)
        self._last[topic] = ids[-1].encode()

    def _lines(
        self, topic: str, entries: list[Any], floor: tuple[int, int]
    ) -> tuple[list[str], list[str]]:
        """The MSG lines of the entries after ``floor``, and their entry IDs."""
        with_ids = self._message_ids
        field = TEXT_FIELD.encode()
        lines: list[str] = []
        ids: list[str] = []
        for entry_id, fields in entries:
            if id_key(entry_id) <= floor:
                continue
            text = b""
            for i in range(0, len(fields) - 1, 2):
                if fields[i] == field:
                    text = fields[i + 1]
                    break
            body = text.decode("utf-8", "replace")
            eid = entry_id.decode()
            if with_ids:
                lines.append(f"MSG {topic} {eid} {body}")
            else:
                lines.append(f"MSG {topic} {body}")
            ids.append(eid)
        return lines, ids

    def _up(self) -> None:
        self._connected = True
        since, self._outage_since = self._outage_since, None
        if since is not None:
            self._stats.broker_reconnects += 1
            log.warning(
                "broker: reconnected to Redis at %s after %.1fs; delivering what was "
                "published meanwhile to %d topic(s)",
                endpoint(self._settings), time.monotonic() - since, len(self._last),
            )

    def _down(self, exc: BaseException) -> None:
        was_connected = self._connected
        self._connected = False
        self._pipe.reset()
        if self._outage_since is None:
            self._outage_since = time.monotonic()
        if was_connected and not self._stopping:
            log.error("broker: lost Redis at %s (%s); not ready until it is back",
                      endpoint(self._settings), reason(exc))

    # ---- shutdown --------------------------------------------------------------------

    async def drain(self) -> None:
        """Stop blocking; the reader delivers what Redis holds for its topics, then stops."""
        self._stopping = True
        task = self._task
        if task is None or task.done():
            return
        if not self._connected:
            task.cancel()
        self._wake_reader()
        with contextlib.suppress(asyncio.CancelledError, TimeoutError):
            async with asyncio.timeout(DRAIN_TIMEOUT):
                await asyncio.shield(task)

    async def close(self) -> None:
        self._stopping = True
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._connected = False
        await self._pipe.close()
