"""The ``gateway`` app: each message becomes one call to a gRPC or HTTP upstream.

``aiotcp serve --app gateway --upstream URL``, URL one of ``grpc://HOST:PORT/package.
Service/Method`` (``grpcs://`` with TLS), ``http://...`` or ``https://...`` (a POST).
The upstream's answer is the reply; otherwise (one line each, the connection stays):

``ERR timeout handler took over Ns``   the call's deadline (``--handler-timeout``) passed
``ERR unavailable <reason>``           the upstream could not be reached
``ERR upstream <status> <why>``        it answered with an error status
``ERR upstream-bad-reply <why>``       it answered with what cannot be a reply: over
                                       ``--max-line`` bytes, not UTF-8, or (line framing)
                                       a line break inside it

Deadlines: ``--handler-timeout`` is the call's own deadline (the gRPC deadline, the HTTP
request timeout), counted from the message's turn, queueing for a place included; a
client that hangs up cancels its calls, and the upstream sees them cancelled.
Concurrency: at most ``--upstream-concurrency`` calls per process at the upstream; the
others wait for a place, their connections' queues fill to ``--max-pipeline`` and the
server stops reading from those clients. Retries (``--upstream-retries``): only for calls
that never reached the upstream, with backoff and gRPC's retry throttling
(:mod:`aiotcp.upstream.retry`); a call keeps its place while it waits to retry.
Readiness follows the upstream's health, probed in the background every
``--upstream-health-interval`` seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator
from typing import TYPE_CHECKING, Any

from aiotcp.app import App, AppError, State
from aiotcp.observe.stats import Stats
from aiotcp.upstream import (
    BadReply,
    DeadlineExceeded,
    Settings,
    Unavailable,
    Upstream,
    UpstreamError,
    UpstreamURLError,
    parse_upstream,
    upstream_for,
)
from aiotcp.upstream.retry import RetryThrottle, backoff

if TYPE_CHECKING:
    from aiotcp.config import Config

log = logging.getLogger("aiotcp.gateway")

FRAMINGS = ("line", "length")
# A health probe that takes longer than this counts as a failed one (HAProxy's
# ``timeout check`` is commonly 1-2 s): readiness must follow an upstream that hangs.
PROBE_TIMEOUT = 2.0


class Gateway:
    """The handler: one message, one call (see the module doc)."""

    def __init__(self, upstream: Upstream, config: Config) -> None:
        self.upstream = upstream
        self.timeout = config.handler_timeout or None
        self.retries = config.upstream_retries
        self.concurrency = config.upstream_concurrency
        self.max_reply = config.max_line
        self.line_framing = config.framing == "line"
        self.throttle = RetryThrottle()
        self.stats = Stats()  # replaced by the server's counters at startup
        self.places: asyncio.Semaphore | None = None

    async def __call__(self, message: Any, conn: Any) -> Any:
        loop = asyncio.get_running_loop()
        deadline = None if self.timeout is None else loop.time() + self.timeout
        places = self.places
        if places is None:
            return self._error(conn, "unavailable", "the gateway is not running")
        try:
            async with places:
                reply = await self._call(message, deadline, loop)
        except DeadlineExceeded:
            # The same line as the server's own handler timeout gives: whichever of the
            # two fires first, the client sees one answer.
            return self._error(conn, "timeout", f"handler took over {self.timeout:g}s")
        except Unavailable as e:
            return self._error(conn, "unavailable", str(e))
        except UpstreamError as e:
            return self._error(conn, "upstream", str(e))
        except BadReply as e:
            return self._error(conn, "upstream-bad-reply", str(e))
        return self._checked(reply, conn)

    async def _call(
        self, message: Any, deadline: float | None, loop: asyncio.AbstractEventLoop
    ) -> Any:
        """The call, retried while it never reached the upstream and retries are left."""
        retry = 0
        while True:
            left = None if deadline is None else deadline - loop.time()
            if left is not None and left <= 0:
                raise DeadlineExceeded()
            try:
                reply = await self.upstream.call(message, left)
            except Unavailable as e:
                self.throttle.failed()
                if e.sent or retry >= self.retries:
                    raise
                if not self.throttle.allows_retry():
                    self.stats.upstream_retries_throttled += 1
                    raise
                retry += 1
                pause = backoff(retry)
                if deadline is not None and loop.time() + pause >= deadline:
                    raise  # the retry could not finish in time: say why now
                self.stats.upstream_retries += 1
                await asyncio.sleep(pause)
                continue
            except (UpstreamError, BadReply):
                self.throttle.answered()
                raise
            self.throttle.answered()
            return reply

    def _checked(self, reply: Any, conn: Any) -> Any:
        """The upstream's answer as a reply (str, or bytes with --binary): in line
        framing one trailing line end goes (the framing adds its own) and a line break
        inside it is no reply."""
        nl, crlf = ("\n", "\r\n") if isinstance(reply, str) else (b"\n", b"\r\n")
        if self.line_framing:
            if reply.endswith(nl):
                reply = reply[:-2] if reply.endswith(crlf) else reply[:-1]
            if nl in reply:
                return self._error(conn, "upstream-bad-reply", "reply has a line break")
        size = len(reply.encode()) if isinstance(reply, str) else len(reply)
        if len(reply) > self.max_reply // 4 and size > self.max_reply:
            return self._error(conn, "upstream-bad-reply", f"reply over {self.max_reply} bytes")
        return reply

    def _error(self, conn: Any, code: str, why: str) -> Any:
        """The protocol's error reply, from the client's own connection's codec."""
        self.stats.error(code)
        return conn.codec.error_reply(code, why)


class Health:
    """The upstream's health, probed in the background; ``ready`` is the last answer."""

    def __init__(self, upstream: Upstream, interval: float) -> None:
        self.upstream = upstream
        self.interval = interval
        self.ready = False
        self.why = "not probed yet"

    async def watch(self) -> None:
        """Probe every ``interval`` seconds until cancelled; log the first answer and
        each change."""
        first = True
        while True:
            try:
                ready, why = await self.upstream.probe(PROBE_TIMEOUT)
            except Exception as e:  # noqa: BLE001 (a probe must never end the watch)
                ready, why = False, f"health probe failed: {type(e).__name__}: {e}"
            if ready != self.ready or first:
                first = False
                level = logging.INFO if ready else logging.WARNING
                state = "ready" if ready else "not ready"
                log.log(level, "upstream %s is %s (%s)", self.upstream.url.shown, state, why)
            self.ready, self.why = ready, why
            await asyncio.sleep(self.interval)


def make_app(config: Config) -> App:
    """The gateway app for ``config.upstream``. Raises AppError (one line) for a URL or
    setting it cannot serve, or when the upstream's library is not installed."""
    if not config.upstream:
        raise AppError("the gateway app needs --upstream URL (grpc://HOST:PORT/package."
                       "Service/Method, grpcs://..., http://... or https://...)")
    if config.framing not in FRAMINGS:
        raise AppError("the gateway app speaks line or length framing (--framing line|length)")
    settings = Settings(
        ca=config.upstream_ca,
        max_reply=config.max_line,
        connections=config.upstream_concurrency,
        health_url=config.upstream_health,
        binary=config.binary,
    )
    try:
        url = parse_upstream(config.upstream)
        upstream = upstream_for(url, settings)
    except UpstreamURLError as e:
        raise AppError(str(e)) from None
    except ImportError as e:
        raise AppError(
            f"app 'gateway' needs {e.name or e} (pip install 'aiotcp[gateway]')"
        ) from None
    handler = Gateway(upstream, config)
    health = Health(upstream, config.upstream_health_interval)
    app = App(handler)

    @app.lifespan
    async def gateway_upstream(state: State) -> AsyncGenerator[None, None]:
        if app.stats is not None:
            handler.stats = app.stats
        await upstream.open()
        handler.places = asyncio.Semaphore(config.upstream_concurrency)
        watcher = asyncio.create_task(health.watch(), name="aiotcp-gateway-health")
        try:
            yield
        finally:
            handler.places = None
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
            await upstream.close()

    gateway_upstream.__qualname__ = "gateway upstream"  # how a startup failure names it

    @app.readiness
    def upstream_ready() -> bool:
        return health.ready

    return app
