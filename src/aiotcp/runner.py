"""Run a server as a process: logging, fd limit, event loop, signals, observers.

``run(config)`` is what ``aiotcp serve`` calls (and each worker process). It returns
the process exit code: 0 after a clean drain, 1 if the server could not start.
"""

from __future__ import annotations

import asyncio
import logging
import resource
import signal
from collections.abc import Callable
from typing import Any

from aiotcp.apps import AppError, load_app
from aiotcp.config import Config
from aiotcp.frontdoor import TLSSetupError  # front door wiring (frontdoor branch)
from aiotcp.server import Server

log = logging.getLogger("aiotcp")


def configure_logging(config: Config) -> None:
    """Logging to stderr at ``config.log_level`` in ``config.log_format``."""
    try:
        from aiotcp.observe.logs import configure_logging as configure
    except ImportError:
        logging.basicConfig(
            level=config.log_level.upper(),
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        )
        return
    configure(config.log_level, config.log_format, access_log=config.access_log)


def raise_nofile_limit() -> int:
    """Raise the soft RLIMIT_NOFILE to the hard limit; return the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    return soft


def loop_factory(config: Config) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's loop when asked for (or ``auto`` and installed); None means asyncio's."""
    if config.loop == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        if config.loop == "uvloop":
            raise
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


def run(config: Config, handler: Any = None) -> int:
    """Serve ``handler`` (default: the app ``config`` names) until SIGINT/SIGTERM."""
    configure_logging(config)
    raise_nofile_limit()
    try:
        app = handler if handler is not None else load_app(config)
    except AppError as e:
        log.error("%s", e)
        return 1
    with asyncio.Runner(loop_factory=loop_factory(config)) as runner:
        return runner.run(serve_async(config, app))


async def serve_async(config: Config, handler: Any) -> int:
    """Start, serve until a signal, drain. Returns the exit code."""
    loop = asyncio.get_running_loop()
    server = Server(handler, config)
    observers: list[Any] = []
    try:
        await server.start()
    except OSError as e:
        log.error("cannot listen on %s:%d: %s", config.host, config.port, e.strerror or e)
        return 1
    except TLSSetupError as e:  # front door wiring (frontdoor branch)
        log.error("%s", e)
        return 1
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, server.request_shutdown)
    if server.front_door is not None:  # front door wiring: SIGHUP reloads the certificate
        loop.add_signal_handler(signal.SIGHUP, server.front_door.reload)
    try:
        try:
            observers = await start_observers(config, server)
        except OSError:
            return 1  # already logged (e.g. the metrics port is taken); the drain follows
        log.info(
            "serving app %r (%s framing) on %s", config.app, config.framing, type(loop).__module__
        )
        await server.serve_until_stopped()
    finally:
        await server.shutdown()
        for obs in reversed(observers):
            await obs.close()
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            loop.remove_signal_handler(sig)
    return 0


async def start_observers(config: Config, server: Server) -> list[Any]:
    """Metrics server, loop-lag sampler and blocked-loop watchdog, as configured."""
    started: list[Any] = []
    try:
        from aiotcp.observe import hooks
    except ImportError:
        return started
    started.extend(await hooks.start(config, server))
    return started
