"""Waiting for an event with a deadline that only guards against a hang.

A test waits for what it expects (a log line, a reply, a closed socket) and fails with a
message if it never comes; it never asserts how long the wait took. The deadline is long
because the machine is shared: a loaded 2-core box may take seconds for what is
normally milliseconds, and a failure should say "never happened", not "was slow".
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")

# How long to wait for an event that normally comes within a second. Well under pytest's
# per-test timeout (60 s) so that a missing event fails with its own message.
HANG_GUARD = 30.0

# Polling period: short enough not to slow a test down, long enough not to spin a core.
POLL_INTERVAL = 0.02


def wait_until(
    predicate: Callable[[], T | None],
    timeout: float = HANG_GUARD,
    what: str = "the condition",
    interval: float = POLL_INTERVAL,
) -> T:
    """Poll ``predicate`` until it returns something truthy, and return that.

    Raises AssertionError naming ``what`` if ``timeout`` seconds pass first.
    """
    deadline = time.monotonic() + timeout
    while (value := _poll(predicate, deadline, timeout, what)) is None:
        time.sleep(interval)
    return value


async def wait_until_async(
    predicate: Callable[[], T | None],
    timeout: float = HANG_GUARD,
    what: str = "the condition",
    interval: float = POLL_INTERVAL,
) -> T:
    """:func:`wait_until` for a coroutine: the loop keeps running between polls."""
    deadline = time.monotonic() + timeout
    while (value := _poll(predicate, deadline, timeout, what)) is None:
        await asyncio.sleep(interval)
    return value


def _poll(
    predicate: Callable[[], T | None], deadline: float, timeout: float, what: str
) -> T | None:
    """The predicate's value if truthy; None to poll again; AssertionError past ``deadline``."""
    value = predicate()
    if value:
        return value
    if time.monotonic() > deadline:
        raise AssertionError(f"{what} did not happen within {timeout:g}s")
    return None


def run_within(main: Callable[[], Any], seconds: float = 90.0) -> None:
    """``asyncio.run(main())`` under a deadline of ``seconds`` that only guards against
    a hang (tests of processes and outages, whose pytest timeout is raised to match)."""

    async def bounded() -> None:
        async with asyncio.timeout(seconds):
            await main()

    asyncio.run(bounded())
