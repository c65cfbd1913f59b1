"""Connections to Redis (redis.asyncio), and the in-order command pipe.

The brokers use redis-py's single ``Connection`` rather than its client: each broker
owns its few connections and their reconnection, so nothing retries, resubscribes or
pools behind its back. A connection error becomes BrokerUnavailable with one line.

:class:`CommandPipe` sends commands on one connection in the order they were
submitted; everything submitted while a round trip is in flight goes out in the next
write (group commit, as the ingest app does for its store). Its queue is bounded by
what waits for it: each connection has at most ``--max-pipeline`` unanswered messages.

The pipe is also the broker's heartbeat (``--broker-timeout`` T): it PINGs Redis every
T/3, a round trip that takes longer than T fails (with what was queued behind it), and
:attr:`CommandPipe.up` is False once Redis has answered nothing for T seconds or the
last round trip failed. So a silent partition makes the instance not ready within T,
and every command sent meanwhile gets BrokerUnavailable within T of its submission
(never a socket timeout later); the heartbeat keeps probing and the pipe is up again
with the first answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from redis.asyncio.connection import Connection, parse_url
from redis.exceptions import RedisError, ResponseError

from aiotcp.broker.contract import BrokerUnavailable

# A command Redis has not answered in this long means Redis is gone or wedged: fail it
# (ERR unavailable) rather than hold the client. Redis answers in well under 1 ms. The
# brokers use ``--broker-timeout`` (Config.broker_timeout); this is the default of a
# connection made without one.
COMMAND_TIMEOUT = 5.0
# Heartbeat PINGs per timeout: two may be lost to a hiccup before the link is down
# (Redis probes its keepalive every idle/3 seconds for the same reason).
BEATS_PER_TIMEOUT = 3
# Connecting to a Redis that is down fails at once (refused); to an unreachable host it
# takes until this timeout, during which publishes wait.
CONNECT_TIMEOUT = 2.0
# Commands per round trip: enough to amortise it, small enough to bound one write.
MAX_BATCH = 1000
# Reconnect backoff of the reader tasks: first retry soon, then double up to the cap.
RECONNECT_FIRST = 0.05
RECONNECT_MAX = 2.0

Settings = dict[str, Any]

log = logging.getLogger("aiotcp.broker")


def connection_settings(url: str) -> Settings:
    """redis-py connection keywords for ``url``; ValueError (one line) if it is not a Redis URL."""
    try:
        return dict(parse_url(url))
    except ValueError as e:
        raise ValueError(f"--broker {url!r}: {e}") from None


def new_connection(
    settings: Settings,
    read_timeout: float | None = COMMAND_TIMEOUT,
    connect_timeout: float = CONNECT_TIMEOUT,
) -> Connection:
    """A redis-py connection (not yet connected) with our timeouts and no retries."""
    kwargs = dict(settings)
    cls = kwargs.pop("connection_class", Connection)
    # RESP2: the brokers parse raw replies (pub/sub pushes, XREAD arrays) themselves.
    kwargs["protocol"] = 2
    conn: Connection = cls(
        **kwargs, socket_timeout=read_timeout,
        socket_connect_timeout=min(connect_timeout, CONNECT_TIMEOUT),
    )
    return conn


def reason(exc: BaseException) -> str:
    """One line saying why Redis could not be used."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return f"redis: {text}"


def endpoint(settings: Settings) -> str:
    if "path" in settings:
        return str(settings["path"])
    return f"{settings.get('host', 'localhost')}:{settings.get('port', 6379)}"


# What a lost or failing Redis raises: redis-py wraps most as RedisError, but a
# connection reset mid-write can surface as a bare OSError.
LINK_ERRORS = (RedisError, OSError, asyncio.TimeoutError)


class CommandPipe:
    """Commands to Redis on one connection, in submission order, batched per round trip."""

    def __init__(self, settings: Settings, timeout: float = COMMAND_TIMEOUT) -> None:
        self._settings = settings
        self.timeout = timeout
        self._conn: Connection | None = None
        self._queue: deque[tuple[tuple[Any, ...], asyncio.Future[Any]]] = deque()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._beat: asyncio.Task[None] | None = None
        self._closed = False
        self._stale = False
        self._last_answer = -math.inf  # monotonic time of Redis's last reply
        self._failure: str | None = "redis: not connected yet"  # why the last round trip failed
        self.first_beat: asyncio.Future[None] | None = None  # the first PING's outcome
        self._down_since: float | None = None  # monotonic time the pipe went down
        # Called when the pipe goes down (the broker drops its reader's link too).
        self.on_down: Callable[[], None] | None = None

    def start(self) -> None:
        """Start sending, and the heartbeat (its first PING goes now)."""
        loop = asyncio.get_running_loop()
        self._task = loop.create_task(self._run(), name="aiotcp-redis-pipe")
        self.first_beat = loop.create_future()
        self._beat = loop.create_task(self._heartbeat(), name="aiotcp-redis-heartbeat")

    @property
    def up(self) -> bool:
        """True while Redis answered within the timeout and the last round trip worked."""
        return self._failure is None and time.monotonic() - self._last_answer <= self.timeout

    def why_down(self) -> str:
        """One line: why :attr:`up` is False."""
        if self._failure is not None:
            return self._failure
        return self._silent()

    def _answered(self) -> None:
        self._last_answer = time.monotonic()
        if self._failure is not None:
            self._failure = None
            since, self._down_since = self._down_since, None
            if since is not None:
                log.warning("broker: Redis at %s answers again after %.1fs",
                            endpoint(self._settings), self._last_answer - since)

    def _silent(self) -> str:
        return f"redis: no answer from {endpoint(self._settings)} in {self.timeout:g}s"

    async def _heartbeat(self) -> None:
        """PING every timeout/BEATS_PER_TIMEOUT, answered or not: the answers keep
        :attr:`up` true; while down, each PING is the probe that finds Redis back."""
        interval = self.timeout / BEATS_PER_TIMEOUT
        first = True
        while True:
            ping = self.submit("PING")
            with contextlib.suppress(Exception):
                await ping
            if first:
                first = False
                if self.first_beat is not None and not self.first_beat.done():
                    self.first_beat.set_result(None)
            await asyncio.sleep(interval)

    def submit(self, *args: Any) -> asyncio.Future[Any]:
        """Queue one command now; the future gets its reply, or BrokerUnavailable /
        ResponseError. Never raises itself."""
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        if self._closed:
            fut.set_exception(BrokerUnavailable("redis: the broker is closed"))
            return fut
        self._queue.append((args, fut))
        self._wake.set()
        return fut

    def reset(self) -> None:
        """The link to Redis was lost (a reader saw it): the next round trip starts on a
        new connection, so no command is sent on a socket the old Redis closed."""
        self._stale = True

    async def call(self, *args: Any) -> Any:
        """Submit a command and await its reply (raises BrokerUnavailable, ResponseError)."""
        return await self.submit(*args)

    async def _run(self) -> None:
        queue = self._queue
        while True:
            await self._wake.wait()
            self._wake.clear()
            while queue:
                n = min(len(queue), MAX_BATCH)
                batch = [queue.popleft() for _ in range(n)]
                await self._round_trip(batch)

    async def _round_trip(self, batch: list[tuple[tuple[Any, ...], asyncio.Future[Any]]]) -> None:
        conn = self._conn
        if self._stale:
            self._stale = False
            self._conn = None
            if conn is not None:
                with contextlib.suppress(Exception):
                    await conn.disconnect(nowait=True)
                conn = None
        done = 0
        try:
            # The whole round trip (connect included) within the timeout: a silent link
            # fails here, not after a socket timeout of its own.
            async with asyncio.timeout(self.timeout):
                if conn is None:
                    conn = self._conn = new_connection(self._settings, self.timeout, self.timeout)
                await conn.send_packed_command(conn.pack_commands([args for args, _ in batch]))
                for _, fut in batch:
                    try:
                        reply: Any = await conn.read_response()
                    except ResponseError as e:  # this command failed; the stream is in sync
                        reply = e
                    self._answered()
                    done += 1
                    if not fut.done():
                        if isinstance(reply, ResponseError):
                            fut.set_exception(reply)
                        else:
                            fut.set_result(reply)
        except Exception as e:  # a lost link (LINK_ERRORS), or anything else: fail the batch
            self._conn = None
            if conn is not None:
                with contextlib.suppress(Exception):
                    await conn.disconnect(nowait=True)
            why = self._silent() if isinstance(e, TimeoutError) else reason(e)
            if self._failure is None and not self._closed:
                self._down_since = time.monotonic()
                log.error("broker: %s; not ready until Redis answers again", why)
                if self.on_down is not None:
                    self.on_down()
            self._failure = why
            failure = BrokerUnavailable(why)
            # What was queued behind it fails too: it would wait for another timeout on
            # a link just found dead (the heartbeat finds Redis back).
            queued = list(self._queue)
            self._queue.clear()
            for _, fut in batch[done:] + queued:
                if not fut.done():
                    fut.set_exception(failure)

    async def close(self) -> None:
        """Fail what is queued, stop the task, close the connection. Idempotent."""
        self._closed = True
        for task in (self._beat, self._task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._beat = self._task = None
        failure = BrokerUnavailable("redis: the broker is closed")
        while self._queue:
            _, fut = self._queue.popleft()
            if not fut.done():
                fut.set_exception(failure)
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.disconnect(nowait=True)


async def keep_reading(
    settings: Settings,
    read_timeout: float | None,
    session: Callable[[Connection], Awaitable[None]],
    lost: Callable[[BaseException], None],
    stopping: Callable[[], bool],
    connect_timeout: float = CONNECT_TIMEOUT,
) -> None:
    """Run ``session(conn)`` on a new connection until it returns (a clean end) or
    ``stopping()``; after a failure call ``lost(exc)`` and reconnect with backoff.

    The backoff doubles from RECONNECT_FIRST to RECONNECT_MAX while Redis refuses, and
    starts over when a session had begun (Redis was there a moment ago).
    """
    backoff = RECONNECT_FIRST
    while not stopping():
        conn = new_connection(settings, read_timeout, connect_timeout)
        began = False
        try:
            await conn.connect()  # type: ignore[no-untyped-call]
            began = True
            await session(conn)
            return
        except asyncio.CancelledError:
            raise
        except Exception as e:  # a lost link (LINK_ERRORS) or a bad reply: reconnect
            lost(e)
        finally:
            with contextlib.suppress(Exception):
                await conn.disconnect(nowait=True)
        if stopping():
            return
        if began:
            backoff = RECONNECT_FIRST
        await asyncio.sleep(backoff)
        backoff = min(backoff * 2, RECONNECT_MAX)
