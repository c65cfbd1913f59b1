"""Server lifecycle, in named phases.

startup   run the app's lifespan (open its pools), start the TaskGroup and thread pool,
          then bind the listeners and start the deadline sweep. Nothing listens before
          the lifespan is up, so no client waits on an app that is not ready. A failure
          undoes whatever had started, in reverse, and raises.
serve     the registry admits connections; the connection class chosen once for the
          handler's kind serves each; the sweep expires idle and stuck clients.
shutdown  close the listeners -> ask every connection to finish (answer what arrived,
          ``ERR shutdown``, half-close) -> wait up to ``shutdown_timeout`` -> abort what
          is left -> stop the TaskGroup and thread pool -> exit the lifespan. A second
          request aborts at once; the lifespan still exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import time
from collections.abc import Callable
from typing import Any

from aiotcp.accepting import Acceptor, pause_points
from aiotcp.app import App, as_app
from aiotcp.codecs import AnyCodec, CodecError, builtin, checked_factory, imported
from aiotcp.config import Config
from aiotcp.core import connection as _connection
from aiotcp.core import dispatch as _dispatch
from aiotcp.core import queued as _queued

# The classes of the core that runs (aiotcp.core: compiled or pure).
Connection = _connection.Connection
Dispatch = _dispatch.Dispatch
KIND_PREFIX, KIND_BATCH = _dispatch.KIND_PREFIX, _dispatch.KIND_BATCH
KIND_INLINE, KIND_QUEUED = _dispatch.KIND_INLINE, _dispatch.KIND_QUEUED
from aiotcp.frontdoor import FrontDoorWrapper, front_door
from aiotcp.keepalive import set_keepalive
from aiotcp.limits import parse_rate
from aiotcp.listeners import ASYNCIO_ACCEPTS_PER_TURN, LISTEN_BACKLOG, open_listeners
from aiotcp.observe.stats import Stats
from aiotcp.registry import Registry, default_max_connections
from aiotcp.streams import StreamsConnection

log = logging.getLogger("aiotcp")

# On shutdown, how long a half-closed connection waits for the client's EOF, and how
# long one that has sent nothing yet (or is in its TLS handshake) is still served.
SHUTDOWN_LINGER = 1.0

# Loop turns after the listeners close for the connections they accepted to be made.
ACCEPTED_TURNS = 2

# Running out of fds is logged at most once per interval, not per failed accept.
EMFILE_LOG_INTERVAL = 10.0

ProtocolFactory = Callable[[], asyncio.Protocol]

# Every connection kind a server can serve with (``Server.kind``): each is one path
# through the lifecycle, and the lifecycle matrix test has a row for each.
KINDS = (
    "prefix",  # reply_prefix: answered on bytes
    "inline",  # a sync handler
    "batch",  # a sync batch(messages, conn)
    "sequential",  # an async handler, handler_concurrency 1
    "queued",  # an async handler, handler_concurrency > 1
    "async-batch",  # an async batch(messages, conn)
    "blocking",  # a @blocking handler in the thread pool
    "streams",  # api=streams: handle_client(reader, writer)
)


def connection_class(
    dispatch: Dispatch,
    registry: Registry,
    stats: Stats,
    new_codec: Callable[[], AnyCodec],
    limits: tuple[tuple[float, float] | None, float] | None = None,
) -> type[Connection]:
    """The connection class for ``dispatch``'s handler kind, bound to one server."""
    kinds: dict[str, type[Connection]] = {
        KIND_PREFIX: _connection.PrefixConnection,
        KIND_BATCH: _connection.BatchConnection,
        KIND_INLINE: _connection.InlineConnection,
        KIND_QUEUED: _queued.QueuedConnection,
    }
    base = kinds[dispatch.kind]
    if (
        base is _queued.QueuedConnection
        and dispatch.concurrency == 1
        and dispatch.async_batch is None
    ):
        base = _queued.SequentialConnection
    attrs = {
        "__slots__": (),
        "_registry": registry,
        "_dispatch": dispatch,
        "_stats": stats,
        # staticmethod: a plain function must not become a method of the connection.
        "_handle": staticmethod(dispatch.handler),
        "_prefix": dispatch.reply_prefix or b"",
        "_sep": b"\n" + (dispatch.reply_prefix or b""),
        "_new_codec": staticmethod(new_codec),
    }
    cls: type[Connection] = type(base.__name__, (base,), attrs)
    if dispatch.timed and dispatch.kind != KIND_QUEUED:
        cls = _connection.timed(cls, stats)  # queued handlers are timed per call by Dispatch
    if limits is not None and (limits[0] is not None or limits[1]):
        cls = _connection.rate_limited(cls, limits[0], limits[1])
    return cls


def codec_factory(config: Config, app: App) -> tuple[Callable[[int], Any], str]:
    """The codec factory (called with a frame limit) and its name: ``config.codec`` if
    set, else the app's own codec, else the built-in ``config.framing`` (bytes with
    ``config.binary``).

    Raises CodecError (one line) if the codec cannot be imported or is not callable.
    """
    if config.codec:
        return imported(config.codec), config.codec
    if app.codec is not None:
        factory = app.codec
        name = getattr(factory, "__qualname__", repr(factory))
    else:
        factory = builtin(config.framing, config.binary)
        name = config.framing
    if not callable(factory):
        raise CodecError(f"codec {name} is not a class or factory")
    return factory, name


class Server:
    """An aiotcp server for one app (a handler, or a streams ``handle_client``) and one Config.

    ``async with Server(app, config) as server: await server.serve_until_stopped()``, or
    :meth:`start` and :meth:`shutdown` from the same task. ``shared``: its listening
    sockets' queues are shared with other workers, so at its cap (or fd limit) it stops
    accepting rather than refusing (see :mod:`aiotcp.accepting`).
    """

    def __init__(
        self, app: Any, config: Config, stats: Stats | None = None, shared: bool = False
    ) -> None:
        self.config = config.validate()
        self.shared = shared
        self.stats = stats if stats is not None else Stats()
        self.app: App = as_app(app)
        self.app.stats = self.stats  # app hooks: apps count their own events
        self.streams = config.api == "streams"
        max_connections = config.max_connections or default_max_connections(_nofile())
        self.registry = Registry(config, self.stats, max_connections)
        if shared:
            cap = min(max_connections, default_max_connections(_nofile()))
            self.registry.pause_at, self.registry.resume_at = pause_points(cap)
        self.dispatch = Dispatch(self.app.target, config, self.stats)
        # What one connection's codec is made by (called with a frame limit; clients of
        # this server in tests make theirs with it too), then the server's own.
        self.codec_factory, codec_name = codec_factory(config, self.app)
        self.new_codec: Callable[[], AnyCodec] = checked_factory(
            self.codec_factory, config.max_line, codec_name
        )
        self.connection_class = connection_class(
            self.dispatch, self.registry, self.stats, self.new_codec,
            (parse_rate(config.rate_limit), config.byte_rate_limit),
        )
        self.addresses: list[tuple[str, int]] = []
        # TLS and the PROXY protocol, made at start (None for plain TCP).
        self.front_door: FrontDoorWrapper | None = None
        self._acceptor: Acceptor | None = None
        self._stack: contextlib.AsyncExitStack | None = None
        self._stop = asyncio.Event()
        self._stop_requests = 0
        self._drained = asyncio.Event()
        self.registry.on_empty = self._drained.set
        self._sweeper: asyncio.Task[None] | None = None
        self._emfile_logged_at = -EMFILE_LOG_INTERVAL

    @property
    def handler(self) -> Any:
        return self.dispatch.handler

    @property
    def kind(self) -> str:
        """Which of :data:`KINDS` serves this server's connections."""
        d = self.dispatch
        if self.streams:
            return "streams"
        if d.kind != KIND_QUEUED:
            return d.kind
        if d.async_batch is not None:
            return "async-batch"
        if d.blocking:
            return "blocking"
        return "sequential" if d.concurrency == 1 else "queued"

    @property
    def shutting_down(self) -> bool:
        return self.registry.shutting_down

    @property
    def ready(self) -> bool:
        """True while serving; False before start and once shutdown began."""
        # app readiness: e.g. a broker that cannot be reached.
        serving = self._acceptor is not None and self._acceptor.serving
        return serving and not self.registry.shutting_down and self.app.ready

    # ---- startup -------------------------------------------------------------------

    async def __aenter__(self) -> Server:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.shutdown()

    async def start(self) -> None:
        """Startup: TLS context, lifespan, TaskGroup and threads, listeners, sweep.

        Raises TLSSetupError for unloadable certificates, what the lifespan raised, or
        OSError if the address cannot be bound, after undoing whatever had started.
        """
        # Certificates first: a bad one fails before the app opens its pools.
        self.front_door = front_door(self.config, self.stats, self.registry)
        stack = contextlib.AsyncExitStack()
        await stack.__aenter__()
        try:
            await stack.enter_async_context(self.app.running())
            tasks = await stack.enter_async_context(asyncio.TaskGroup())
            loop = asyncio.get_running_loop()
            self.registry.clock = loop.time()
            previous = loop.get_exception_handler()
            loop.set_exception_handler(self._accept_error_handler(previous))
            stack.callback(loop.set_exception_handler, previous)
            self.dispatch.start()
            stack.callback(self.dispatch.stop)
            await self._listen(loop)
            self._sweeper = tasks.create_task(self._sweep())
        except BaseException:
            if self._acceptor is not None:
                self._acceptor.close()
            # Undone as a normal exit (a TaskGroup would wrap the error in a group); the
            # lifespan's code after its yield runs, closing what it opened.
            await stack.aclose()
            raise
        self._stack = stack

    async def _listen(self, loop: asyncio.AbstractEventLoop) -> None:
        factory: ProtocolFactory
        if self.streams:
            registry, dispatch, max_line = self.registry, self.dispatch, self.config.max_line

            def factory() -> asyncio.Protocol:
                return StreamsConnection(registry, dispatch, max_line)
        else:
            factory = self.connection_class
        if self.front_door is not None:
            factory = self.front_door(factory)
        uvloop = type(loop).__module__.startswith("uvloop")
        accepts = LISTEN_BACKLOG if uvloop else ASYNCIO_ACCEPTS_PER_TURN
        bound = open_listeners(self.config)
        socks = [b.sock for b in bound]
        acceptor = Acceptor(factory, socks, accepts, LISTEN_BACKLOG, self.shared)
        try:
            for sock in socks:
                set_keepalive(sock, self.config.tcp_keepalive)  # accepted sockets inherit it
            await acceptor.start()
        except BaseException:
            for sock in socks:
                sock.close()
            raise
        self._acceptor = acceptor
        self.registry.on_full, self.registry.on_room = acceptor.pause, acceptor.resume
        # The address is always announced, whatever the level: scripts and tests that
        # bind port 0 read it (like uvicorn's "running on" line).
        level = max(logging.INFO, log.getEffectiveLevel())
        for bound_listener in bound:
            if bound_listener.address is not None:  # TCP; a Unix socket has only its name
                self.addresses.append(bound_listener.address)
            log.log(level, "aiotcp listening on %s", bound_listener.name)

    # ---- serve ---------------------------------------------------------------------

    async def serve_until_stopped(self) -> None:
        """Serve until :meth:`request_shutdown` is called."""
        await self._stop.wait()

    def request_shutdown(self) -> None:
        """First call: graceful shutdown. Second call: abort every connection now."""
        self._stop_requests += 1
        self._stop.set()
        if self._stop_requests > 1:
            log.warning("second stop request: aborting %d connection(s)", len(self.registry))
            self._abort_all()

    def _abort_all(self) -> None:
        """Abort every connection and cancel every handler task still running."""
        for conn in list(self.registry.members):
            conn.abort()
        self.dispatch.cancel_all()

    async def _sweep(self) -> None:
        """Advance the coarse clock and expire connections past their deadlines.

        A failure inside one sweep is logged and the next sweep runs: the deadlines of
        every connection depend on this task.
        """
        loop = asyncio.get_running_loop()
        interval = self.registry.interval
        while True:  # also during shutdown: closing connections still have deadlines
            await asyncio.sleep(interval)
            try:
                self.registry.sweep(loop.time())
            except Exception:
                log.exception("deadline sweep failed; the next one runs in %gs", interval)

    # ---- shutdown ------------------------------------------------------------------

    async def shutdown(self) -> None:
        """Close listeners, drain up to ``shutdown_timeout``, abort the rest, exit the lifespan."""
        stack, self._stack = self._stack, None
        if stack is None:
            return
        registry = self.registry
        registry.shutting_down = True
        self._stop.set()
        acceptor = self._acceptor
        if acceptor is not None:
            acceptor.close()
        # Connections the listeners accepted before they closed are made on the next
        # turns (asyncio makes each in a task of its own): they are admitted and drained.
        for _ in range(ACCEPTED_TURNS):
            await asyncio.sleep(0)
        # app drain: the app delivers what it holds while clients listen.
        try:
            async with asyncio.timeout(self.config.shutdown_timeout):
                await self.app.drain()
        except TimeoutError:
            log.warning("app drain took over %gs; going on", self.config.shutdown_timeout)
        pending = self.front_door.gate.pending if self.front_door is not None else {}
        if registry.members or pending:
            log.info("shutting down: draining %d connection(s)", len(registry) + len(pending))
            self._drained.clear()
            for conn in list(registry.members):
                # One that has sent nothing yet may have its first message on the way (a
                # worker's drain begins as a client connects): the linger serves it.
                if conn.bytes_in:
                    conn.shut_down()
            await self._drain()
        if acceptor is not None:
            await acceptor.wait_closed()
        await self.dispatch.wait()  # handler tasks of connections now gone
        if self._sweeper is not None:
            self._sweeper.cancel()
        await stack.aclose()
        log.info("server stopped")

    async def _drain(self) -> None:
        registry = self.registry
        loop = asyncio.get_running_loop()
        timeout = self.config.shutdown_timeout
        deadline = loop.time() + timeout
        # Half-closed connections wait a moment for the client's EOF (so that no unread
        # input turns the close into a RST), then close anyway.
        if registry.members or (self.front_door is not None and self.front_door.gate.pending):
            try:
                async with asyncio.timeout(min(SHUTDOWN_LINGER, timeout)):
                    await self._drained.wait()
            except TimeoutError:
                pass
        # Handshakes still unfinished are aborted; connections settling from now on
        # close at once; those still open (sent nothing yet) are shut down.
        registry.linger_over = True
        if self.front_door is not None:
            self.front_door.close()
        for conn in list(registry.members):
            conn.end_linger()
        if registry.members:
            try:
                async with asyncio.timeout_at(deadline):
                    await self._drained.wait()
            except TimeoutError:
                log.warning("shutdown deadline passed: aborting %d connection(s)", len(registry))
                self._abort_all()
        # Aborted transports report connection_lost on a later turn.
        while registry.members:
            self._drained.clear()
            await self._drained.wait()

    # ---- fd exhaustion -------------------------------------------------------------

    def _accept_error_handler(
        self, previous: Callable[[asyncio.AbstractEventLoop, dict[str, Any]], object] | None
    ) -> Callable[[asyncio.AbstractEventLoop, dict[str, Any]], None]:
        """Log running out of fds once per interval, not per failed accept.

        Both loops keep existing connections and retry accepting by themselves.
        """

        def handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
            exc = context.get("exception")
            if isinstance(exc, OSError) and exc.errno in (errno.EMFILE, errno.ENFILE):
                self.stats.refused("emfile")
                now = time.monotonic()
                if now - self._emfile_logged_at >= EMFILE_LOG_INTERVAL:
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

        return handler


def _nofile() -> int:
    import resource

    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]
