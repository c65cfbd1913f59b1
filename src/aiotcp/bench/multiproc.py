"""Split a load run across client processes and merge their HDR histograms.

One Python process saturates one core long before a fast server does, and one process can
hold only as many sockets as its fd limit allows; ``run_load_processes`` starts
``cfg.processes`` spawned children, each with its share of connections and rate. They all
connect, meet at a barrier (the parent is a party too, so its progress bar starts with the
measured window), run for the same duration and send back their raw results.
"""

from __future__ import annotations

import multiprocessing
import queue
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

from aiotcp.bench.loadgen import LoadConfig, run_load, run_load_sync
from aiotcp.bench.results import LoadResult, add_error, merge

#: Seconds a child may take to start, import and connect before the run is abandoned.
STARTUP_TIMEOUT = 120.0


def _child(cfg_dict: dict[str, Any], barrier: Any, out: Any) -> None:
    """Child entry point: run the share, put the (unfinished) result dict on ``out``."""
    import asyncio

    cfg = LoadConfig(**cfg_dict)

    async def at_barrier() -> None:
        await asyncio.get_running_loop().run_in_executor(None, barrier.wait, STARTUP_TIMEOUT)

    try:
        try:
            import uvloop

            result = uvloop.run(run_load(cfg, ready=at_barrier))
        except ImportError:
            result = asyncio.run(run_load(cfg, ready=at_barrier))
        out.put(asdict(result))
    except BaseException as exc:  # report, never hang the parent
        failed = LoadResult(connections=cfg.connections)
        add_error(failed.errors, failed.error_samples, "client", repr(exc))
        out.put(asdict(failed))


def run_load_processes(
    cfg: LoadConfig, progress: Callable[[float, int], None] | None = None
) -> LoadResult:
    """Run ``cfg`` over ``cfg.processes`` processes (1 = in this process); merged, finished result.

    ``progress(elapsed, acked)`` is called with ``acked = -1`` (children do not report live).
    """
    parts = max(1, min(cfg.processes, cfg.connections))
    if parts == 1:
        return run_load_sync(cfg, progress)
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(parts + 1)
    out = ctx.Queue()
    procs = [
        ctx.Process(target=_child, args=(asdict(cfg.share(i, parts)), barrier, out), daemon=True)
        for i in range(parts)
    ]
    for proc in procs:
        proc.start()
    results: list[LoadResult] = []
    try:
        barrier.wait(STARTUP_TIMEOUT)
        if progress is not None:
            import time

            t0 = time.monotonic()
            while (elapsed := time.monotonic() - t0) < cfg.duration:
                progress(elapsed, -1)
                time.sleep(min(0.25, cfg.duration - elapsed))
            progress(cfg.duration, -1)
    except Exception:  # a broken barrier: a child died; collect what arrives
        pass
    deadline = cfg.duration + cfg.drain_timeout + STARTUP_TIMEOUT
    for _ in procs:
        try:
            results.append(LoadResult(**out.get(timeout=deadline)))
        except queue.Empty:
            break
    for proc in procs:
        proc.join(timeout=5)
        if proc.is_alive():
            proc.kill()
    merged = merge(results, cfg.connections, asdict(cfg))
    if len(results) < parts:
        add_error(
            merged.errors,
            merged.error_samples,
            "client",
            f"{parts - len(results)} client processes gave no result",
        )
    return merged
