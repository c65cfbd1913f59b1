"""Event-loop lag sampler: how late a short sleep wakes up.

A task sleeps ``LAG_INTERVAL`` seconds and stores the oversleep in
``Stats.loop_lag_seconds``. A healthy loop wakes within a millisecond or so; a loop
running too many callbacks, or blocked, wakes late by that much. One timer per
interval; nothing per message.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Protocol

# Four samples a second: fine enough to see bursts on a dashboard, cheap enough to ignore.
LAG_INTERVAL = 0.25


class _LagGauge(Protocol):
    loop_lag_seconds: float


class LagSampler:
    """Runs on the current loop until ``aclose()``; writes ``stats.loop_lag_seconds``."""

    def __init__(self, stats: _LagGauge, interval: float = LAG_INTERVAL) -> None:
        self._stats = stats
        self._interval = interval
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start sampling (call from a running loop)."""
        self._task = asyncio.get_running_loop().create_task(self._run(), name="aiotcp-loop-lag")

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            await asyncio.sleep(self._interval)
            self._stats.loop_lag_seconds = max(0.0, loop.time() - started - self._interval)

    async def aclose(self) -> None:
        """Stop sampling. Idempotent."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
