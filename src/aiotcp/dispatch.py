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
import logging
import os
import time
import traceback
from collections.abc import Awaitable, Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from aiotcp.app import is_async, is_blocking
from aiotcp.codecs import make_codec
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
        self.error_reply = make_codec(config.framing, 1).error_reply
        self._threads = config.threads or None
        self._executor: ThreadPoolExecutor | None = None
        self._tasks: asyncio.TaskGroup | None = None
        self._tracebacks_logged = 0
        self._tracebacks_window = -LOG_INTERVAL
        # One message through the handler (see _call_full); chosen once: the timeout
        # context costs as much as a handler that returns at once.
        self.call: Callable[[Any, str], Awaitable[str | None]] = (
            self._call_direct
            if self.timeout is None and not self.timed and not self.blocking
            else self._call_full
        )

    def start(self, tasks: asyncio.TaskGroup) -> None:
        """Run handler work in ``tasks`` (the server's TaskGroup); make the thread pool."""
        self._tasks = tasks
        if self.blocking and self._executor is None:
            self._executor = ThreadPoolExecutor(
                max_workers=self._threads, thread_name_prefix="aiotcp-blocking"
            )

    def stop(self) -> None:
        """Drop the thread pool (threads cannot be cancelled: running calls finish alone)."""
        executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=False, cancel_futures=True)

    def spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        """Run ``coro`` in the server's TaskGroup; a failure is logged, never fatal."""
        if self._tasks is None:
            coro.close()
            raise RuntimeError("the server has not started")
        return self._tasks.create_task(self._guard(coro))

    async def _guard(self, coro: Coroutine[Any, Any, None]) -> None:
        try:
            await coro
        except Exception as e:  # a bug in one connection must not stop the others
            self.failed(e)

    async def _call_direct(self, conn: Any, message: str) -> str | None:
        """:meth:`_call_full` for an async handler with no timeout and no timing."""
        try:
            reply = await self.handler(message, conn)
        except Exception as e:
            return self.internal_error(e)
        if reply is not None and type(reply) is not str:
            return self.not_a_reply(reply)
        return reply

    async def _call_full(self, conn: Any, message: str) -> str | None:
        """One message through an async or blocking handler, with the handler timeout.

        Returns the reply, None (no reply), or an ``ERR timeout``/``ERR internal``
        reply; never raises but for cancellation of the caller.
        """
        started = time.perf_counter() if self.timed else 0.0
        try:
            async with asyncio.timeout(self.timeout):
                if self.blocking:
                    loop = asyncio.get_running_loop()
                    reply = await loop.run_in_executor(self._executor, self.handler, message, conn)
                else:
                    reply = await self.handler(message, conn)
        except TimeoutError:
            self.stats.error("timeout")
            return self.error_reply("timeout", f"handler took over {self.timeout:g}s")
        except Exception as e:
            return self.internal_error(e)
        if self.timed:
            self.stats.ack_latency.observe(time.perf_counter() - started)
        if reply is not None and type(reply) is not str:
            return self.not_a_reply(reply)
        return reply

    async def call_batch(self, conn: Any, messages: list[str]) -> list[str | None]:
        """Messages through an ``async def batch``, with the handler timeout (per batch)."""
        assert self.async_batch is not None
        n = len(messages)
        started = time.perf_counter() if self.timed else 0.0
        try:
            async with asyncio.timeout(self.timeout):
                replies = await self.async_batch(messages, conn)
        except TimeoutError:
            self.stats.error("timeout")
            return [self.error_reply("timeout", f"handler took over {self.timeout:g}s")] * n
        except Exception as e:
            return [self.internal_error(e)] * n
        if self.timed:
            self.stats.ack_latency.observe(time.perf_counter() - started, n)
        return self.checked(replies, n)

    def run_batch(self, conn: Any, messages: list[str]) -> list[str | None]:
        """Messages through a sync ``batch``: its replies, or ``ERR internal`` for each."""
        assert self.batch is not None
        n = len(messages)
        try:
            replies = self.batch(messages, conn)
        except Exception as e:
            return [self.internal_error(e)] * n
        return self.checked(replies, n)

    def checked(self, replies: Any, n: int) -> list[str | None]:
        """A batch's replies if they are a list of ``n`` str-or-None; else ERR internal."""
        if type(replies) is not list or len(replies) != n:
            got = f"{type(replies).__name__} of {len(replies)}" if isinstance(
                replies, list
            ) else type(replies).__name__
            return [self.internal_error(TypeError(f"batch returned {got} for {n} messages"))] * n
        for i, r in enumerate(replies):
            if r is not None and type(r) is not str:
                replies[i] = self.not_a_reply(r)
        return replies

    def not_a_reply(self, reply: object) -> str:
        return self.internal_error(TypeError(f"handler returned {type(reply).__name__}"))

    def internal_error(self, exc: BaseException) -> str:
        """Log ``exc`` (rate-limited), count it, and return the ``ERR internal`` reply."""
        self.failed(exc)
        self.stats.error("internal")
        return self.error_reply("internal", "handler failed")

    def failed(self, exc: BaseException) -> None:
        """Log a traceback, at most TRACEBACKS_PER_INTERVAL per LOG_INTERVAL."""
        now = time.monotonic()
        if now - self._tracebacks_window > LOG_INTERVAL:
            if self._tracebacks_logged > TRACEBACKS_PER_INTERVAL:
                log.error(
                    "%d more handler error(s) not logged",
                    self._tracebacks_logged - TRACEBACKS_PER_INTERVAL,
                )
            self._tracebacks_window = now
            self._tracebacks_logged = 0
        self._tracebacks_logged += 1
        if self._tracebacks_logged <= TRACEBACKS_PER_INTERVAL:
            log.error(
                "handler raised %s\n%s",
                type(exc).__name__,
                "".join(traceback.format_exception(exc)).rstrip(),
            )

