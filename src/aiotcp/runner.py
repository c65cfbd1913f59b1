"""Run a server as a process: logging, fd limit, event loop, signals, observers.

``run(config)`` is what ``aiotcp serve`` calls (and each worker process). It returns
the process exit code: 0 after a clean drain; 1 if the app cannot be loaded, its
lifespan's startup raised, or the address cannot be bound; 2 if a setting needs an
extra that is not installed. Each failure is one log line, never a traceback.
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
import logging
import resource
import signal
from collections.abc import Callable
from typing import Any

from aiotcp.app import AppError, LifespanError
from aiotcp.apps import app_name, load_app
from aiotcp.codecs import CodecError
from aiotcp.config import Config
from aiotcp.core import CORE
from aiotcp.frontdoor import TLSSetupError
from aiotcp.listeners import ListenerError, remove_socket_files
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


# What a setting needs installed: (module, the extra that brings it).
METRICS_NEEDS = (("aiohttp", "metrics"), ("prometheus_client", "metrics"))


def missing_extra(config: Config) -> str | None:
    """One line naming the install command if a setting needs a library that is missing."""
    if config.reload and importlib.util.find_spec("watchfiles") is None:
        return "--reload needs watchfiles: pip install 'aiotcp[reload]'"
    if config.metrics_port:
        for module, extra in METRICS_NEEDS:
            try:
                importlib.import_module(module)
            except ImportError:
                return (
                    f"--metrics-port needs {module}: pip install 'aiotcp[{extra}]'"
                )
    return None


def run(config: Config, handler: Any = None, shared: bool = False) -> int:
    """Serve ``handler`` (default: the app ``config`` names) until SIGINT/SIGTERM.

    ``shared``: a worker, whose listening sockets other workers accept from too."""
    configure_logging(config)
    missing = missing_extra(config)
    if missing is not None:
        log.error("%s", missing)
        return 2
    raise_nofile_limit()
    try:
        app = handler if handler is not None else load_app(config)
    except AppError as e:
        log.error("%s", e)
        return 1
    name = config.app if handler is None else app_name(handler)
    try:
        with asyncio.Runner(loop_factory=loop_factory(config)) as runner:
            return runner.run(serve_async(config, app, name, shared))
    finally:
        remove_socket_files()  # a --uds file this process made


async def serve_async(
    config: Config, handler: Any, name: str | None = None, shared: bool = False
) -> int:
    """Start, serve until a signal, drain. Returns the exit code. ``name`` is what the
    log calls the app (default: ``config.app``); ``shared`` as for :func:`run`."""
    loop = asyncio.get_running_loop()
    try:
        server = Server(handler, config, shared=shared)
    except (CodecError, AppError) as e:
        log.error("%s", e)
        return 1
    observers: list[Any] = []
    try:
        await server.start()
    except TLSSetupError as e:
        log.error("%s", e)
        return 1
    except (LifespanError, AppError) as e:
        log.error("startup failed: %s", e)
        return 1
    except ListenerError as e:
        log.error("%s", e)
        return 1
    except OSError as e:
        log.error("cannot listen on %s:%d: %s", config.host, config.port, e.strerror or e)
        return 1
    except Exception as e:
        log.error("startup failed: %s: %s", type(e).__name__, e)
        return 1
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, server.request_shutdown)
    # SIGHUP: new certificate and key for new connections; open ones keep theirs.
    # Without TLS there is nothing to reload, but SIGHUP must not end the process.
    loop.add_signal_handler(signal.SIGHUP, reloader(server))
    try:
        try:
            observers = await start_observers(config, server)
        except OSError:
            return 1  # already logged (e.g. the metrics port is taken); the drain follows
        log.info(
            "serving app %r (%s framing) on %s, %s core",
            name or config.app, config.framing, type(loop).__module__, CORE,
        )
        await server.serve_until_stopped()
    finally:
        await server.shutdown()
        for obs in reversed(observers):
            await obs.close()
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            loop.remove_signal_handler(sig)
    return 0


def reloader(server: Server) -> Callable[[], None]:
    """What SIGHUP does: reload the TLS certificate, if the server has one."""

    def reload() -> None:
        if server.front_door is not None:
            server.front_door.reload()
        else:
            log.info("SIGHUP: no TLS certificate to reload")

    return reload


async def start_observers(config: Config, server: Server) -> list[Any]:
    """Metrics server, loop-lag sampler and blocked-loop watchdog, as configured."""
    from aiotcp.observe import hooks

    return list(await hooks.start(config, server))
