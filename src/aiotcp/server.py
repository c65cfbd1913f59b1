"""Server lifecycle: startup -> serve -> shutdown.

Startup binds the listeners. Serving owns the connection registry, the limits, one
coarse timer sweep for every connection's deadlines, and a TaskGroup holding every task
the server starts. Shutdown, in a fixed order: close the listeners, ask every connection
to finish (ack what arrived, ``ERR shutdown``, close), wait up to ``shutdown_timeout``,
then abort what is left. A second request aborts at once.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import time
import traceback
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from aiotcp import apps
from aiotcp.codecs import Codec, make_codec
from aiotcp.config import Config
from aiotcp.connection import MODE_INLINE, MODE_QUEUED, Connection, connection_type
from aiotcp.frontdoor import FrontDoorWrapper, front_door  # front door wiring (frontdoor branch)
from aiotcp.observe.logs import log_access
from aiotcp.observe.snapshots import ENV_DIR as WORKER_STATS_ENV
from aiotcp.observe.stats import Stats
from aiotcp.streams import StreamsConnection

log = logging.getLogger("aiotcp")

# Deadlines are checked by one sweep over the registry, SWEEP_DIVISIONS times per the
# shortest timeout, so a deadline fires at most 1/SWEEP_DIVISIONS late and ten thousand
# idle connections cost no timer churn.
SWEEP_DIVISIONS = 8
SWEEP_MIN = 0.01
SWEEP_MAX = 1.0

# Listen backlog: a storm of a thousand connects must not overflow the accept queue
# (the kernel caps it at net.core.somaxconn).
LISTEN_BACKLOG = 4096

# On shutdown, how long a half-closed connection waits for the client's EOF.
SHUTDOWN_LINGER = 1.0

# Connection open times (for the access log) are kept to this many seconds.
OPENED_PRECISION = 0.01

# At most this many handler tracebacks are logged per interval; the rest are counted.
TRACEBACKS_PER_INTERVAL = 5
LOG_INTERVAL = 10.0

# fds kept back from the connection cap for listeners, logs, the metrics server, threads.
def default_max_connections(nofile: int) -> int:
    """The connection cap derived from the fd limit ``nofile``."""
    reserve = 32 if nofile > 256 else 16
    return max(1, nofile - reserve)


class Server:
    """An aiotcp server for one handler (or a streams ``handle_client``) and one Config.

    Use as ``async with Server(handler, config) as server: await server.serve_until_stopped()``
    or call :meth:`start` and :meth:`shutdown` from the same task.
    """

    def __init__(self, handler: Any, config: Config, stats: Stats | None = None) -> None:
        self.config = config.validate()
        self.stats = stats if stats is not None else Stats()
        self.stats.live = self.live_totals
        self.handler = handler
        self.streams = config.api == "streams"
        queued = apps.is_async(handler) or apps.is_blocking(handler)
        self.mode = MODE_QUEUED if queued else MODE_INLINE
        self.batch = None if queued else getattr(handler, "batch", None)
        # A handler whose reply is always prefix + message is answered on bytes.
        prefix = None if queued else getattr(handler, "reply_prefix", None)
        self.reply_prefix = prefix.encode() if isinstance(prefix, str) else None
        # Ack latency is measured only where it is exported (two clock reads per read):
        # with a metrics port, or in a worker whose supervisor exports it.
        self.timed = config.metrics_port > 0 or WORKER_STATS_ENV in os.environ
        self.blocking = apps.is_blocking(handler)
        self.clock = 0.0
        self.shutting_down = False
        self.addresses: list[tuple[str, int]] = []
        # A list with each connection's index in its ``slot``: O(1) add and remove at
        # 16 bytes a connection, where a set costs ~50.
        self.registry: list[Any] = []
        self._per_ip: dict[str, int] = {}
        self._max_connections = config.max_connections or default_max_connections(_nofile())
        self._listeners: list[asyncio.AbstractServer] = []
        self._tg: asyncio.TaskGroup | None = None
        self._stop = asyncio.Event()
        self._stop_requests = 0
        self._drained = asyncio.Event()
        self._executor: ThreadPoolExecutor | None = None
        self._tracebacks_logged = 0
        self._tracebacks_window = 0.0
        self._emfile_logged_at = -LOG_INTERVAL
        self._sweep_interval = _sweep_interval(config)
        self._sweeper: asyncio.Task[None] | None = None
        self.connection_class = connection_type(self)
        self._opened_clock = 0.0
        self.front_door: FrontDoorWrapper | None = None  # front door wiring (frontdoor branch)

    @property
    def ready(self) -> bool:
        """True while serving; False before start and once shutdown began."""
        return bool(self._listeners) and not self.shutting_down

    # ---- lifecycle ---------------------------------------------------------------

    async def __aenter__(self) -> Server:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.shutdown()

    async def start(self) -> None:
        """Bind the listeners and start serving. Raises OSError if the address is taken."""
        loop = asyncio.get_running_loop()
        # front door wiring (frontdoor branch): TLS / PROXY header before the connection.
        # Raises TLSSetupError (a ValueError) if the certificate cannot be loaded.
        self.front_door = front_door(self.config, self.stats)
        factory: Any = self._streams_factory if self.streams else self._connection_factory
        if self.front_door is not None:
            factory = self.front_door(factory)
        self.clock = loop.time()
        self._tg = asyncio.TaskGroup()
        await self._tg.__aenter__()
        self._install_accept_error_handler(loop)
        if self.blocking:
            self._executor = ThreadPoolExecutor(
                max_workers=self.config.threads or None, thread_name_prefix="aiotcp-blocking"
            )
        listener = await loop.create_server(
            factory,
            self.config.host,
            self.config.port,
            backlog=LISTEN_BACKLOG,
            reuse_port=self.config.reuse_port or None,
        )
        self._listeners.append(listener)
        # The address is always announced, whatever the level: scripts and tests that
        # bind port 0 read it (like uvicorn's "running on" line).
        level = max(logging.INFO, log.getEffectiveLevel())
        for sock in listener.sockets:
            host, port = sock.getsockname()[:2]
            self.addresses.append((host, port))
            log.log(level, "aiotcp listening on %s:%d", host, port)
        self._sweeper = self._tg.create_task(self._sweep())

    def _connection_factory(self) -> Connection:
        return self.connection_class()

    def _streams_factory(self) -> StreamsConnection:
        return StreamsConnection(self)

    async def serve_until_stopped(self) -> None:
        """Serve until :meth:`request_shutdown` is called."""
        await self._stop.wait()

    def request_shutdown(self) -> None:
        """First call: graceful shutdown. Second call: abort every connection now."""
        self._stop_requests += 1
        self._stop.set()
        if self._stop_requests > 1:
            log.warning("second stop request: aborting %d connection(s)", len(self.registry))
            for conn in list(self.registry):
                conn.abort()

    async def shutdown(self) -> None:
        """Close listeners, drain connections up to ``shutdown_timeout``, abort the rest."""
        if self._tg is None:
            return
        self.shutting_down = True
        self._stop.set()
        for listener in self._listeners:
            listener.close()
        if self.front_door is not None:  # front door wiring (frontdoor branch)
            self.front_door.close()
        n = len(self.registry)
        if n:
            log.info("shutting down: draining %d connection(s)", n)
        for conn in list(self.registry):
            conn.shut_down()
        if self.registry:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + self.config.shutdown_timeout
            # Half-closed connections wait a moment for the client's EOF (so that no
            # unread input turns the close into a RST), then close anyway.
            try:
                async with asyncio.timeout(min(SHUTDOWN_LINGER, self.config.shutdown_timeout)):
                    await self._drained.wait()
            except TimeoutError:
                for conn in list(self.registry):
                    conn.end_linger()
            try:
                async with asyncio.timeout_at(deadline):
                    await self._drained.wait()
            except TimeoutError:
                log.warning(
                    "shutdown deadline passed: aborting %d connection(s)", len(self.registry)
                )
                for conn in list(self.registry):
                    conn.abort()
        # Give aborted transports their connection_lost before the group closes.
        while self.registry:
            await asyncio.sleep(0)
            await self._drained.wait()
        for listener in self._listeners:
            await listener.wait_closed()
        if self._sweeper is not None:
            self._sweeper.cancel()
        tg, self._tg = self._tg, None
        await tg.__aexit__(None, None, None)
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
        log.info("server stopped")

    # ---- registry and limits -----------------------------------------------------

    def new_codec(self) -> Codec:
        return make_codec(self.config.framing, self.config.max_line)

    def admit(self, conn: Any, transport: asyncio.BaseTransport) -> str | None:
        """Register a new connection, or return why it is refused (it is then closed)."""
        stats = self.stats
        if self.shutting_down:
            stats.refused("shutdown")
            return "server is shutting down"
        if len(self.registry) >= self._max_connections:
            stats.refused("busy")
            return f"too many connections (limit {self._max_connections})"
        per_ip = self.config.max_connections_per_ip
        if per_ip:
            peer = transport.get_extra_info("peername")
            ip = peer[0] if isinstance(peer, tuple) else str(peer)
            count = self._per_ip.get(ip, 0)
            if count >= per_ip:
                stats.refused("busy-ip")
                return f"too many connections from {ip} (limit {per_ip})"
            self._per_ip[ip] = count + 1
            conn.ip = ip
        # For the access log's duration, to OPENED_PRECISION: connections opened within
        # it share one float rather than each holding its own.
        now = time.monotonic()
        if now - self._opened_clock > OPENED_PRECISION:
            self._opened_clock = now
        conn.opened = self._opened_clock
        conn.slot = len(self.registry)
        self.registry.append(conn)
        self._drained.clear()
        stats.connections += 1
        stats.connections_accepted += 1
        return None

    def forget(self, conn: Any) -> None:
        """Called once per connection when it is lost, registered or not."""
        i = conn.slot
        if i < 0:
            return
        conn.slot = -1
        last = self.registry.pop()
        if last is not conn:
            self.registry[i] = last
            last.slot = i
        self.stats.connections -= 1
        ip = conn.ip
        if ip is not None:
            left = self._per_ip[ip] - 1
            if left:
                self._per_ip[ip] = left
            else:
                del self._per_ip[ip]
        if not self.registry:
            self._drained.set()
        stats = self.stats
        stats.messages_received += conn.messages
        stats.messages_acked += conn.acked
        stats.bytes_received += conn.bytes_in
        stats.bytes_sent += conn.bytes_out
        if self.config.access_log:
            log_access(
                conn.peer,
                time.monotonic() - conn.opened,
                conn.messages,
                conn.bytes_in,
                conn.bytes_out,
                conn.close_reason,
            )

    def live_totals(self) -> tuple[int, int, int, int]:
        """Messages received, acked, bytes in, out of the open connections.

        Closed connections are already folded into ``stats``.
        """
        conns = list(self.registry)
        return (
            sum(c.messages for c in conns),
            sum(c.acked for c in conns),
            sum(c.bytes_in for c in conns),
            sum(c.bytes_out for c in conns),
        )

    # ---- tasks and handlers ------------------------------------------------------

    def spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        """Run ``coro`` in the server's TaskGroup; its failure is logged, never fatal."""
        assert self._tg is not None, "server not started"
        return self._tg.create_task(self._guard(coro))

    async def _guard(self, coro: Coroutine[Any, Any, None]) -> None:
        try:
            await coro
        except Exception as e:  # a bug in one connection must not stop the others
            self.handler_failed(e)

    async def call_handler(self, conn: Connection, message: str) -> str | None:
        """Run an async or blocking handler on one message, with the handler timeout.

        Returns the reply, or an ``ERR timeout``/``ERR internal`` reply; never raises
        (but for cancellation of the connection's worker).
        """
        timeout = self.config.handler_timeout or None
        started = time.perf_counter() if self.timed else 0.0
        try:
            async with asyncio.timeout(timeout):
                if self.blocking:
                    loop = asyncio.get_running_loop()
                    reply = await loop.run_in_executor(self._executor, self.handler, message, conn)
                else:
                    reply = await self.handler(message, conn)
        except TimeoutError:
            self.stats.error("timeout")
            return conn.codec.error_reply("timeout", f"handler took over {timeout}s")
        except Exception as e:
            return conn._internal_error(e)
        if self.timed:
            self.stats.ack_latency.observe(time.perf_counter() - started)
        if reply is not None and type(reply) is not str:
            return conn._internal_error(TypeError(f"handler returned {type(reply).__name__}"))
        return reply

    def handler_failed(self, exc: BaseException) -> None:
        """Log a handler's traceback, at most TRACEBACKS_PER_INTERVAL per interval."""
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

    # ---- timers ------------------------------------------------------------------

    async def _sweep(self) -> None:
        """Advance the coarse clock and close connections past their deadlines."""
        loop = asyncio.get_running_loop()
        interval = self._sweep_interval
        idle = self.config.idle_timeout
        write = self.config.write_timeout
        while not self.shutting_down:
            await asyncio.sleep(interval)
            now = self.clock = loop.time()
            # A connection's last_message is a clock reading up to one interval old.
            idle_before = now - idle - interval
            # paused_since is also a clock reading up to one interval old.
            write_before = now - write - interval
            for conn in list(self.registry):
                paused = conn.paused_since
                if paused is not None:
                    if write and paused <= write_before:
                        conn.expire("write-timeout", "client is not reading its replies")
                elif idle and conn.last_message <= idle_before and not conn.busy:
                    conn.expire("idle-timeout", f"no complete message for {idle:g}s")

    # ---- fd exhaustion -------------------------------------------------------------

    def _install_accept_error_handler(self, loop: asyncio.AbstractEventLoop) -> None:
        """Log running out of fds once per interval, not per failed accept.

        Both loops keep existing connections and retry accepting by themselves.
        """
        previous = loop.get_exception_handler()

        def handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
            exc = context.get("exception")
            if isinstance(exc, OSError) and exc.errno in (errno.EMFILE, errno.ENFILE):
                self.stats.refused("emfile")
                now = time.monotonic()
                if now - self._emfile_logged_at >= LOG_INTERVAL:
                    self._emfile_logged_at = now
                    log.warning(
                        "out of file descriptors (%s): serving open connections, "
                        "accepting again as descriptors free up",
                        exc.strerror,
                    )
                return
            if previous is not None:
                previous(loop, context)
            else:
                loop.default_exception_handler(context)

        loop.set_exception_handler(handler)


def _sweep_interval(config: Config) -> float:
    timeouts = [t for t in (config.idle_timeout, config.write_timeout) if t > 0]
    if not timeouts:
        return SWEEP_MAX
    return min(SWEEP_MAX, max(SWEEP_MIN, min(timeouts) / SWEEP_DIVISIONS))


def _nofile() -> int:
    import resource

    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]
