"""Handler kinds, calls with timeouts, and rate-limited tracebacks.

The server classifies its handler once (:func:`kind_of`); the connection class for that
kind is chosen once (``aiotcp.connection.connection_class``), so no read re-checks a
setting that is fixed for the whole server.

Kinds, fastest first:

``prefix``  the reply is always ``prefix + message``: answered on bytes
``batch``   a sync ``batch(messages, conn)``: one call per read
``inline``  a sync handler: called per message, in a tight loop, per read
``queued``  an ``async def`` or ``@blocking`` handler (or an ``async def batch``):
            run by up to ``handler_concurrency`` workers per connection, replies in
            message order, at most ``max_pipeline`` messages unanswered
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import sys
import time
import traceback
from collections.abc import Awaitable, Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

from aiotcp.app import is_async, is_blocking
from aiotcp.config import Config
from aiotcp.observe.snapshots import ENV_TIMED
from aiotcp.observe.stats import Stats

log = logging.getLogger("aiotcp")

KIND_PREFIX = "prefix"
KIND_BATCH = "batch"
KIND_INLINE = "inline"
KIND_QUEUED = "queued"

# At most this many handler tracebacks are logged per interval; the rest are counted
# and summed up in one line, so a handler failing on every message cannot flood the log.
TRACEBACKS_PER_INTERVAL = 5
LOG_INTERVAL = 10.0

# Python 3.12's Task can start eagerly (the first step runs inside create, with the
# task current): handler work that never suspends costs no loop turn.
EAGER_START = sys.version_info >= (3, 12)

# A @blocking call past its timeout keeps its thread (threads cannot be cancelled). Once
# as many calls are stuck as the pool has threads, new calls go to a fresh pool and the
# old one ends as its calls return; beyond this many stuck calls in all, new blocking
# calls are refused with ERR unavailable rather than queued behind threads that may
# never return.
STUCK_CALLS_LIMIT = 64


class ErrorReplies(Protocol):
    """What dispatch needs of a connection's codec: the protocol's error reply."""

    def error_reply(self, code: str, text: str) -> Any: ...


class Conn(Protocol):
    """What dispatch needs of a connection."""

    @property
    def codec(self) -> ErrorReplies: ...


def kind_of(handler: Any) -> str:
    """The kind of ``handler`` (see the module doc)."""
    batch = getattr(handler, "batch", None)
    if is_async(handler) or is_blocking(handler) or (batch is not None and is_async(batch)):
        return KIND_QUEUED
    if isinstance(getattr(handler, "reply_prefix", None), str):
        return KIND_PREFIX
    if batch is not None:
        return KIND_BATCH
    return KIND_INLINE


class Dispatch:
    """Calls one handler for every connection of a server, as its kind requires."""

    def __init__(self, handler: Any, config: Config, stats: Stats) -> None:
        self.handler = handler
        self.stats = stats
        self.kind = kind_of(handler)
        self.blocking = is_blocking(handler)
        batch = getattr(handler, "batch", None)
        self.batch = batch
        self.async_batch = batch if batch is not None and is_async(batch) else None
        prefix = getattr(handler, "reply_prefix", None)
        self.reply_prefix = prefix.encode() if isinstance(prefix, str) else None
        self.timeout = config.handler_timeout or None
        self.concurrency = config.handler_concurrency
        self.max_pipeline = config.max_pipeline
        # Ack latency costs two clock reads per read (or per queued message), so it is
        # measured only where it is exported: with a metrics port, or in a worker whose
        # supervisor serves metrics.
        self.timed = config.metrics_port > 0 or os.environ.get(ENV_TIMED) == "1"
        self._threads = config.threads or min(32, (os.cpu_count() or 1) + 4)  # Python's default
        self._executor: ThreadPoolExecutor | None = None
        self._stuck = 0  # calls past their timeout still running in the current pool
        self._stuck_elsewhere = 0  # ... in pools already replaced
        self.running: set[asyncio.Task[None]] = set()  # handler tasks, for a forced stop
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tracebacks = Throttle("handler error(s)")
        self._violations = Throttle("protocol error(s)")
        # One message through the handler (see _call_full); chosen once: the timeout
        # context costs as much as a handler that returns at once.
        self.direct = self.timeout is None and not self.timed and not self.blocking
        self.call: Callable[[Any, Any], Awaitable[Any]] = (
            self._call_direct if self.direct else self._call_full
        )

    def start(self) -> None:
        """Run handler work on the running loop; make the thread pool."""
        self._loop = asyncio.get_running_loop()
        if self.blocking and self._executor is None:
            self._executor = self._new_pool()

    def call_in_loop(self, fn: Callable[[], object]) -> None:
        """Run ``fn`` on the server's loop (from a @blocking handler's thread), before
        the handler's own result reaches the loop."""
        assert self._loop is not None
        self._loop.call_soon_threadsafe(fn)

    def _new_pool(self) -> ThreadPoolExecutor:
        return ThreadPoolExecutor(max_workers=self._threads, thread_name_prefix="aiotcp-blocking")

    def stop(self) -> None:
        """Drop the thread pool (threads cannot be cancelled: running calls finish alone)."""
        executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=False, cancel_futures=True)

    def cancel_all(self) -> None:
        """Cancel every handler task still running (a forced stop)."""
        for task in list(self.running):
            task.cancel()

    def spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        """Run ``coro`` as a task; a failure is logged, never fatal.

        On Python 3.12+ the task starts eagerly (unless the loop has a task factory:
        then the factory makes it, as it makes every task): it runs inside this call up to its
        first suspension, so work that never suspends (an async handler that returns at
        once) costs no loop turn and leaves nothing scheduled. It is a real Task all the
        same: ``current_task()``, ``asyncio.timeout()``, context variables and
        cancellation inside the handler behave as in any task. Tasks still running are
        kept in ``running`` (for shutdown and a forced stop) and drop out as they end.
        """
        loop = self._loop
        if loop is None:
            coro.close()
            raise RuntimeError("the server has not started")
        task: asyncio.Task[None]
        if EAGER_START and loop.get_task_factory() is None:
            task = asyncio.Task(  # type: ignore[call-arg, unused-ignore]
                self._guard(coro), loop=loop, eager_start=True
            )
        else:  # the app's own task factory, if it set one, makes every task (and decides)
            task = loop.create_task(self._guard(coro))
        if not task.done():
            self.running.add(task)
        return task

    async def _guard(self, coro: Coroutine[Any, Any, None]) -> None:
        try:
            await coro
        except Exception as e:  # a bug in one connection must not stop the others
            self.failed(e)
        finally:
            self.running.discard(asyncio.current_task())

    async def wait(self) -> None:
        """Until every handler task has ended (shutdown, after the drain)."""
        while self.running:
            await asyncio.gather(*list(self.running), return_exceptions=True)

    async def _call_direct(self, conn: Conn, message: Any) -> Any:
        """:meth:`_call_full` for an async handler with no timeout and no timing."""
        try:
            reply = await self.handler(message, conn)
        except Exception as e:
            return self.internal_error(e, conn.codec)
        return reply

    async def _call_full(self, conn: Conn, message: Any) -> Any:
        """One message through an async or blocking handler, with the handler timeout.

        Returns the reply, None (no reply), or the protocol's ``timeout``/``internal``
        error reply; never raises but for cancellation of the caller. A TimeoutError is
        the server's own only if its own deadline expired: one the handler raised (a
        driver's, ``socket.timeout``) is the handler failing.
        """
        started = time.perf_counter() if self.timed else 0.0
        deadline = asyncio.timeout(self.timeout)
        try:
            async with deadline:
                if self.blocking:
                    reply = await self._run_blocking(message, conn)
                else:
                    reply = await self.handler(message, conn)
        except TimeoutError as e:
            if deadline.expired():
                return self.timed_out(conn.codec)
            return self.internal_error(e, conn.codec)
        except StuckCalls as e:
            self.stats.error("unavailable")
            return conn.codec.error_reply("unavailable", str(e))
        except Exception as e:
            return self.internal_error(e, conn.codec)
        if self.timed:
            self.stats.ack_latency.observe(time.perf_counter() - started)
        return reply

    async def _run_blocking(self, message: Any, conn: Conn) -> Any:
        """Run the handler in the pool; a call that outlives its timeout is counted stuck."""
        executor = self._executor
        assert executor is not None
        if self._stuck >= self._threads:  # every thread may be stuck: a fresh pool
            if self._stuck + self._stuck_elsewhere >= STUCK_CALLS_LIMIT:
                raise StuckCalls(f"{STUCK_CALLS_LIMIT} blocking calls stuck past their timeout")
            log.warning(
                "%d blocking handler call(s) stuck past their timeout: new calls go to a new "
                "thread pool", self._stuck,
            )
            executor.shutdown(wait=False)  # its threads end as their calls return
            self._stuck_elsewhere += self._stuck
            self._stuck = 0
            executor = self._executor = self._new_pool()
        future = executor.submit(self.handler, message, conn)
        try:
            return await asyncio.wrap_future(future)
        except asyncio.CancelledError:
            if not future.cancel():  # running: its thread is stuck until the call returns
                self._count_stuck(future, executor)
            raise

    def _count_stuck(self, future: concurrent.futures.Future[Any], pool: ThreadPoolExecutor) -> None:
        loop = asyncio.get_running_loop()
        if pool is self._executor:
            self._stuck += 1
        else:
            self._stuck_elsewhere += 1

        def returned(_: object) -> None:
            loop.call_soon_threadsafe(self._unstuck, pool)

        future.add_done_callback(returned)

    def _unstuck(self, pool: ThreadPoolExecutor) -> None:
        if pool is self._executor and self._stuck:
            self._stuck -= 1
        elif self._stuck_elsewhere:
            self._stuck_elsewhere -= 1

    def timed_out(self, codec: ErrorReplies) -> Any:
        self.stats.error("timeout")
        return codec.error_reply("timeout", f"handler took over {self.timeout:g}s")

    async def call_batch(self, conn: Conn, messages: list[Any]) -> list[Any]:
        """Messages through an ``async def batch``, with the handler timeout (per batch)."""
        assert self.async_batch is not None
        n = len(messages)
        started = time.perf_counter() if self.timed else 0.0
        deadline = asyncio.timeout(self.timeout)
        try:
            async with deadline:
                replies = await self.async_batch(messages, conn)
        except TimeoutError as e:
            if deadline.expired():
                return [self.timed_out(conn.codec)] * n
            return [self.internal_error(e, conn.codec)] * n
        except Exception as e:
            return [self.internal_error(e, conn.codec)] * n
        if self.timed:
            self.stats.ack_latency.observe(time.perf_counter() - started, n)
        return self.checked(replies, n, conn.codec)

    def run_batch(self, conn: Conn, messages: list[Any]) -> list[Any]:
        """Messages through a sync ``batch``: its replies, or the internal error for each."""
        assert self.batch is not None
        n = len(messages)
        try:
            replies = self.batch(messages, conn)
        except Exception as e:
            return [self.internal_error(e, conn.codec)] * n
        return self.checked(replies, n, conn.codec)

    def checked(self, replies: Any, n: int, codec: ErrorReplies) -> list[Any]:
        """A batch's replies if they are a list of ``n``; else the internal error for each.

        Each reply is checked when it is encoded (what the protocol can carry)."""
        if type(replies) is not list or len(replies) != n:
            got = f"{type(replies).__name__} of {len(replies)}" if isinstance(
                replies, list
            ) else type(replies).__name__
            error = TypeError(f"batch returned {got} for {n} messages")
            return [self.internal_error(error, codec)] * n
        return replies

    def bad_reply(self, reply: object, exc: BaseException, codec: ErrorReplies) -> Any:
        """A reply the protocol cannot carry (not a str; a line break in a line): logged,
        counted, and replaced by the protocol's internal error."""
        return self.internal_error(
            TypeError(f"handler returned a reply the protocol cannot carry "
                      f"({type(reply).__name__}: {exc})"),
            codec,
        )

    def internal_error(self, exc: BaseException, codec: ErrorReplies) -> Any:
        """Log ``exc`` (rate-limited), count it, and return the protocol's internal error."""
        self.failed(exc)
        self.stats.error("internal")
        return codec.error_reply("internal", "handler failed")

    def failed(self, exc: BaseException) -> None:
        """Log a traceback, at most TRACEBACKS_PER_INTERVAL per LOG_INTERVAL."""
        if self._tracebacks.allow():
            log.error(
                "handler raised %s\n%s",
                type(exc).__name__,
                "".join(traceback.format_exception(exc)).rstrip(),
            )

    def violation(self, peer: Any, e: Any) -> None:
        """A client broke the protocol (a codec's ProtocolError): one line, rate-limited;
        counted by the connection with the error reply it gets."""
        if self._violations.allow():
            log.warning("protocol error from %s: %s %s", _show(peer), e.code, e.text)

    def codec_failed(self, exc: BaseException) -> None:
        """A codec raised something other than ProtocolError: a bug in the codec."""
        self.stats.error("codec")
        if self._tracebacks.allow():
            log.error(
                "codec raised %s (the connection is closed)\n%s",
                type(exc).__name__,
                "".join(traceback.format_exception(exc)).rstrip(),
            )


class Throttle:
    """At most ``per_interval`` log lines per ``interval`` seconds; the rest are counted
    and summed up in one line when the next interval opens."""

    __slots__ = ("what", "per_interval", "interval", "_logged", "_window")

    def __init__(self, what: str, per_interval: int = TRACEBACKS_PER_INTERVAL,
                 interval: float = LOG_INTERVAL) -> None:
        self.what = what
        self.per_interval = per_interval
        self.interval = interval
        self._logged = 0
        self._window = -interval

    def allow(self) -> bool:
        now = time.monotonic()
        if now - self._window > self.interval:
            if self._logged > self.per_interval:
                log.error("%d more %s not logged", self._logged - self.per_interval, self.what)
            self._window = now
            self._logged = 0
        self._logged += 1
        return self._logged <= self.per_interval


def _show(peer: Any) -> str:
    if isinstance(peer, tuple) and len(peer) >= 2:
        return f"{peer[0]}:{peer[1]}"
    return str(peer)


class StuckCalls(Exception):
    """Too many @blocking calls are stuck past their timeout to start another."""
