"""The blocked-loop watchdog and the loop-lag sampler: in-process, then a served process
on both loops whose handler blocks."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
import threading
import time
from pathlib import Path

import pytest

from aiotcp.config import Config
from aiotcp.observe.lag import LagSampler
from aiotcp.observe.stats import Stats
from aiotcp.observe.watchdog import BETWEEN_CALLBACKS, _describe, start_watchdog
from aiotcp.runner import loop_factory
from support.clients import LineClient
from support.metrics import http_get, scraped
from support.ports import free_port
from support.process import APPS, SpawnServer
from support.waiting import HANG_GUARD, wait_until, wait_until_async


def line_marked(path: Path, marker: str) -> int:
    """The number of the line of ``path`` ending in ``marker`` (found, not hard-coded)."""
    lines = path.read_text().splitlines()
    return next(i for i, text in enumerate(lines, 1) if text.endswith(marker))


# ---- in-process ----------------------------------------------------------------------------


def block_the_loop() -> None:
    time.sleep(0.3)  # WATCHDOG-TEST-LINE


def wait_in_the_standard_library() -> None:
    threading.Event().wait(0.3)  # WATCHDOG-STDLIB-LINE


# Half the blocks' 300 ms: a loop that is only slow to be scheduled (a loaded machine)
# is not reported before the block, and the block always is.
THRESHOLD_MS = 150

# A handler's own line is named, also when what blocks is a standard-library call
# written in Python (the innermost frame is then threading.py, not the user's).
BLOCKERS = {
    "time.sleep": (block_the_loop, "# WATCHDOG-TEST-LINE"),
    "threading.Event.wait": (wait_in_the_standard_library, "# WATCHDOG-STDLIB-LINE"),
}


@pytest.mark.parametrize("blocker", BLOCKERS)
def test_watchdog_reports_a_stall_once_with_the_blocking_line(
    caplog: pytest.LogCaptureFixture, loop: str, blocker: str
) -> None:
    stats = Stats()
    block, marker = BLOCKERS[blocker]
    line = line_marked(Path(__file__), marker)

    async def main() -> None:
        watchdog = start_watchdog(asyncio.get_running_loop(), stats, THRESHOLD_MS)
        try:
            await asyncio.sleep(0.1)  # the loop turning normally is no stall
            assert stats.loop_stalls == 0
            block()
            await asyncio.sleep(0.1)
        finally:
            watchdog.stop()
        assert not watchdog._thread.is_alive()

    with (
        caplog.at_level(logging.WARNING, logger="aiotcp.watchdog"),
        asyncio.Runner(loop_factory=loop_factory(Config(loop=loop))) as runner,
    ):
        runner.run(main())
    reports = [r for r in caplog.records if r.name == "aiotcp.watchdog"]
    assert len(reports) == 1
    assert f"at {__file__}:{line} in {block.__name__}\n" in reports[0].getMessage()
    assert stats.loop_stalls == 1


def test_a_loop_between_callbacks_is_not_blamed_on_where_it_was_entered(loop: str) -> None:
    """Overload: the stall is many short callbacks, and the loop thread, when looked at,
    is in the loop itself (polling), below the runner that entered it."""
    runner = asyncio.Runner(loop_factory=loop_factory(Config(loop=loop)))
    stop = threading.Event()

    async def idle() -> None:
        while not stop.is_set():
            await asyncio.sleep(0.01)

    thread = threading.Thread(target=runner.run, args=(idle(),))
    thread.start()
    try:
        wait_until(lambda: runner._loop is not None and runner._loop.is_running(), what="loop up")
        # Most of the time the loop waits for its next timer in epoll, between callbacks.
        wait_until(
            lambda: _describe(sys._current_frames()[thread.ident or 0])[0] == BETWEEN_CALLBACKS,
            what="the loop thread seen between callbacks",
        )
    finally:
        stop.set()
        thread.join(HANG_GUARD)
        runner.close()


def test_watchdog_rejects_a_zero_threshold() -> None:
    async def main() -> None:
        with pytest.raises(ValueError):
            start_watchdog(asyncio.get_running_loop(), Stats(), 0)

    asyncio.run(main())


def test_lag_sampler_sees_a_blocked_loop() -> None:
    stats = Stats()

    async def main() -> None:
        sampler = LagSampler(stats, interval=0.02)
        sampler.start()
        await asyncio.sleep(0)  # the sampler is now asleep
        time.sleep(0.2)  # noqa: ASYNC251 - blocking is the point: it wakes >= 0.18 s late
        await wait_until_async(lambda: stats.loop_lag_seconds >= 0.1, what="lag >= 0.1 s seen")
        await sampler.aclose()

    asyncio.run(main())


# ---- a served process ----------------------------------------------------------------------


def test_a_300ms_blocking_handler_is_reported_once_with_its_file_and_line(
    spawn_server: SpawnServer,
) -> None:
    metrics_port = free_port()
    server = spawn_server(
        [
            "--app",
            "probe_apps:sleepy",
            "--block-threshold",
            "100",
            "--metrics-port",
            str(metrics_port),
            "--no-access-log",
        ]
    )
    # Observers start after the listener; /readyz answering means the watchdog runs.
    wait_until(lambda: http_get(metrics_port, "/readyz")[0] == 200, what="/readyz 200")
    with LineClient(server.port) as client:
        assert client.ask("x") == "slept"
    wait_until(
        lambda: scraped(metrics_port, "aiotcp_loop_stalls_total") == 1,
        what="the stall counted on /metrics",
    )
    server.signal(signal.SIGTERM)
    assert server.wait() == 0
    reports = [line for line in server.lines if "event loop blocked" in line]
    assert len(reports) == 1, server.log
    line = line_marked(APPS / "probe_apps.py", "# BLOCKING-LINE")
    assert f"probe_apps.py:{line} in sleepy" in reports[0]
