"""Outage: a dependency's ups and downs, logged once per change (a unit: a fake clock)."""

from __future__ import annotations

import logging

import pytest

from aiotcp.observe.outage import REMINDER_INTERVAL, Outage
from support.fakes import FakeClock

LOGGER = "aiotcp.test-outage"


def lines(caplog: pytest.LogCaptureFixture) -> list[tuple[str, str]]:
    out = [(r.levelname, r.getMessage()) for r in caplog.records if r.name == LOGGER]
    caplog.clear()
    return out


def test_down_is_one_line_a_reminder_per_interval_and_one_line_back(
    caplog: pytest.LogCaptureFixture, clock: FakeClock
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    health = Outage("redis redis://h:6379/0", "unreachable", logging.getLogger(LOGGER), clock)
    health.succeeded()
    assert health.up and lines(caplog) == []
    for _ in range(1000):  # a thousand clients failing at once
        health.failed("Connection refused")
    assert not health.up
    assert lines(caplog) == [("ERROR", "redis redis://h:6379/0 unreachable: Connection refused")]
    clock.advance(REMINDER_INTERVAL - 1)
    health.failed("Connection refused")
    assert lines(caplog) == []
    clock.advance(1)
    health.failed("Timeout")
    reminder = (
        f"redis redis://h:6379/0 still unreachable (1001 failed in the last "
        f"{REMINDER_INTERVAL:.0f}s, down {REMINDER_INTERVAL:.0f}s): Timeout"
    )
    assert lines(caplog) == [("ERROR", reminder)]
    clock.advance(2.5)
    health.succeeded()
    health.succeeded()
    assert health.up
    down_for = REMINDER_INTERVAL + 2.5
    back = f"redis redis://h:6379/0 recovered after {down_for:.1f}s down (1002 failed)"
    assert lines(caplog) == [("INFO", back)]
    health.failed("again")  # a new outage is a new first line
    assert lines(caplog) == [("ERROR", "redis redis://h:6379/0 unreachable: again")]
