"""The one call the runner makes to start every observer of a serving process.

``aiotcp.runner.serve_async`` calls ``await hooks.start(config, server)`` after
``Server.start()`` (the listeners are bound) and, after ``Server.shutdown()`` has
drained, ``await obs.close()`` on each returned object in reverse order. What starts:

- the loop-lag sampler (always; one timer every 0.25 s);
- in a supervised worker: the snapshot mirror the supervisor reads for ``/metrics``
  (its first write tells the supervisor the worker is serving);
- the ``/metrics`` ``/healthz`` ``/readyz`` endpoints if ``config.metrics_port`` and
  this is not a worker (the supervisor serves them for all workers);
- the blocked-loop watchdog if ``config.block_threshold > 0``.

Started after ``start()`` and closed after the drain, so ``/readyz`` answers 503 while
connections drain and the final snapshot includes them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiotcp.observe.lag import LagSampler
from aiotcp.observe.snapshots import SnapshotMirror
from aiotcp.observe.watchdog import start_watchdog

log = logging.getLogger("aiotcp.observe")


class Observer:
    """One started observer; ``await close()`` stops it (idempotent, never raises)."""

    def __init__(self, name: str, closer: Callable[[], Awaitable[None]]) -> None:
        self.name = name
        self._closer: Callable[[], Awaitable[None]] | None = closer

    async def close(self) -> None:
        closer, self._closer = self._closer, None
        if closer is None:
            return
        try:
            await closer()
        except Exception:
            log.exception("closing observer %s failed", self.name)


async def start(config: Any, server: Any) -> list[Observer]:
    """Start the observers ``config`` asks for on the running loop; see the module doc.

    ``server`` needs ``.stats`` (a Stats) and ``.ready`` (bool). Raises OSError if the
    metrics port cannot be bound (after closing whatever it had started).
    """
    stats = server.stats
    started: list[Observer] = []
    try:
        mirror = SnapshotMirror.from_environment(stats, lambda: bool(server.ready))
        if mirror is not None:
            mirror.start()
            started.append(Observer("stats-mirror", mirror.aclose))
        lag = LagSampler(stats)
        lag.start()
        started.append(Observer("loop-lag", lag.aclose))
        if config.metrics_port and mirror is None:
            from aiotcp.observe.endpoints import start_metrics_server

            try:
                metrics = await start_metrics_server(config, stats, lambda: bool(server.ready))
            except OSError as e:
                log.error(
                    "cannot serve metrics on %s:%d: %s",
                    config.metrics_host,
                    config.metrics_port,
                    e.strerror or e,
                )
                raise
            started.append(Observer("metrics", metrics.aclose))
        # Last: importing aiohttp above takes a while in this very thread, which the
        # watchdog would rightly report as a blocked loop.
        if config.block_threshold > 0:
            watchdog = start_watchdog(
                asyncio.get_running_loop(), stats, config.block_threshold
            )

            async def stop_watchdog() -> None:
                watchdog.stop()

            started.append(Observer("watchdog", stop_watchdog))
    except BaseException:
        for obs in reversed(started):
            await obs.close()
        raise
    return started
