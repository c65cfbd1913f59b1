"""HTTP endpoints for operators: ``/metrics``, ``/healthz``, ``/readyz`` (aiohttp).

- ``/metrics``: Prometheus text format of the aiotcp counters.
- ``/healthz``: 200 while the process is alive and its loop answers.
- ``/readyz``: 200 while the server accepts connections, 503 once shutdown began (so a
  load balancer stops sending new clients while the server drains).

It runs on the loop it is started from: the server's own loop in single-process mode,
the supervisor's loop in worker mode. aiohttp and prometheus_client are imported only
here, and this module only when metrics are on.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.core import Metric

from aiotcp.observe.prometheus import Snapshot, exposition, make_registry

log = logging.getLogger("aiotcp.observe")


class MetricsServer:
    """A running endpoint server. ``addresses`` are the bound (host, port) pairs."""

    def __init__(self, runner: web.AppRunner) -> None:
        self._runner = runner
        self.addresses: list[tuple[str, int]] = [
            (str(a[0]), int(a[1])) for a in runner.addresses if isinstance(a, tuple)
        ]

    async def aclose(self) -> None:
        """Stop serving and close the listening socket. Idempotent."""
        await self._runner.cleanup()


async def serve_endpoints(
    host: str,
    port: int,
    source: Callable[[], Snapshot],
    ready: Callable[[], bool],
    extra: Callable[[], Iterator[Metric]] | None = None,
) -> MetricsServer:
    """Serve the endpoints on ``host:port`` (0 picks a free port) from the running loop.

    ``source`` returns the snapshot to expose; ``ready`` says what ``/readyz`` answers.
    Logs ``aiotcp metrics at http://HOST:PORT/metrics`` (deliberately not the words
    "listening on", which tests and tools parse for the TCP listener). Raises OSError if
    the port cannot be bound.
    """
    registry = make_registry(source, extra)

    async def metrics(_: web.Request) -> web.Response:
        return web.Response(body=exposition(registry), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def healthz(_: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def readyz(_: web.Request) -> web.Response:
        if ready():
            return web.Response(text="ready\n")
        return web.Response(status=503, text="not ready\n")

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    try:
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    server = MetricsServer(runner)
    for h, p in server.addresses:
        log.info("aiotcp metrics at http://%s:%d/metrics", f"[{h}]" if ":" in h else h, p)
    return server


async def start_metrics_server(
    config: Any, stats: Any, ready: Callable[[], bool]
) -> MetricsServer:
    """Serve ``stats`` (an ``aiotcp.observe.stats.Stats``) on config.metrics_host:metrics_port.

    For single-process mode, from the server's loop, after ``Server.start()``:
    ``ready`` is ``lambda: server.ready``. Close it with ``await m.aclose()`` after the
    drain so ``/readyz`` answers 503 during it.
    """
    return await serve_endpoints(config.metrics_host, config.metrics_port, stats.snapshot, ready)
