"""Idle timeout (idle and trickling clients) and handler timeout / handler errors, over loopback."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from robust_support import (  # noqa: F401 (the *_fixture names register fixtures)
    ACK,
    LineClient,
    loop_fixture,
    spawn_server_fixture,
)

IDLE = 1.0
# The sweep runs every IDLE/8; allow it two periods plus scheduling noise on a busy machine.
IDLE_LATEST = IDLE * 1.5 + 0.5


def _closed_for_idleness(c: LineClient, t0: float) -> float:
    """Wait for ``ERR idle-timeout`` then EOF; return the seconds since ``t0``."""
    line = c.line()
    elapsed = time.monotonic() - t0
    assert line is not None and line.startswith("ERR idle-timeout "), line
    assert c.eof()
    return elapsed


def test_idle_client_is_closed(loop: str, spawn_server: Any) -> None:
    server = spawn_server(loop, ["--idle-timeout", str(IDLE)])
    t0 = time.monotonic()
    c = LineClient(server.port, timeout=IDLE * 5)
    elapsed = _closed_for_idleness(c, t0)
    assert IDLE * 0.95 <= elapsed <= IDLE_LATEST, elapsed


def test_idle_counts_from_the_last_complete_message(loop: str, spawn_server: Any) -> None:
    server = spawn_server(loop, ["--idle-timeout", str(IDLE)])
    c = LineClient(server.port, timeout=IDLE * 5)
    assert c.ask("one") == ACK + "one"
    t0 = time.monotonic()
    elapsed = _closed_for_idleness(c, t0)
    assert IDLE * 0.95 <= elapsed <= IDLE_LATEST, elapsed


def test_trickling_client_is_closed(loop: str, spawn_server: Any) -> None:
    """One byte every 0.1 s, never a newline: bytes arrive, but no message completes."""
    server = spawn_server(loop, ["--idle-timeout", str(IDLE)])
    c = LineClient(server.port, timeout=IDLE * 5)
    t0 = time.monotonic()
    stop = threading.Event()

    def trickle() -> None:
        while not stop.wait(0.1):
            try:
                c.send(b"x")
            except OSError:
                return

    sender = threading.Thread(target=trickle, daemon=True)
    sender.start()
    try:
        elapsed = _closed_for_idleness(c, t0)
    finally:
        stop.set()
        sender.join(5)
    assert IDLE * 0.95 <= elapsed <= IDLE_LATEST, elapsed


def test_active_client_is_not_closed(loop: str, spawn_server: Any) -> None:
    server = spawn_server(loop, ["--idle-timeout", str(IDLE)])
    c = LineClient(server.port, timeout=IDLE * 5)
    idle_client = LineClient(server.port, timeout=IDLE * 5)
    t0 = time.monotonic()
    i = 0
    while time.monotonic() - t0 < IDLE * 2.5:
        assert c.ask(f"m{i}") == f"{ACK}m{i}"
        i += 1
        time.sleep(IDLE / 5)  # pacing the client, not waiting for the server
    # The idle timeout was live all along: the silent client was closed meanwhile.
    assert idle_client.line() is not None and idle_client.eof()
    assert c.ask("last") == ACK + "last"


HANDLER_TIMEOUT = 0.3


@pytest.fixture
def slow_server(loop: str, spawn_server: Any) -> Any:
    return spawn_server(
        loop, ["--app", "robust_apps:slow", "--handler-timeout", str(HANDLER_TIMEOUT)]
    )


def test_slow_handler_times_out_and_connection_continues(slow_server: Any) -> None:
    c = LineClient(slow_server.port)
    t0 = time.monotonic()
    line = c.ask("sleep:3")
    elapsed = time.monotonic() - t0
    assert line is not None and line.startswith("ERR timeout "), line
    assert HANDLER_TIMEOUT * 0.9 <= elapsed < 3, elapsed
    assert c.ask("next") == ACK + "next"
    # Pipelined: the timed-out message and the ones behind it, replies in order.
    c.send("sleep:3\nafter\nsleep:0.01\n")
    replies = [c.line() for _ in range(3)]
    assert replies[0] is not None and replies[0].startswith("ERR timeout "), replies
    assert replies[1:] == [ACK + "after", ACK + "sleep:0.01"]
    assert slow_server.stop() == 0
    assert "Traceback" not in slow_server.log, slow_server.log


@pytest.mark.parametrize("app", ["robust_apps:slow", "robust_apps:sync_boom"])
def test_raising_handler_gets_err_internal_and_one_traceback(
    loop: str, app: str, spawn_server: Any
) -> None:
    server = spawn_server(loop, ["--app", app])
    c = LineClient(server.port)
    line = c.ask("boom")
    assert line is not None and line.startswith("ERR internal "), line
    assert c.ask("next") == ACK + "next"
    c.send("boom\nafter\n")
    line = c.line()
    assert line is not None and line.startswith("ERR internal "), line
    assert c.line() == ACK + "after"
    c.close()
    assert server.stop() == 0
    log = server.log
    # Two failures, two tracebacks: exactly one per failure, none doubled.
    assert log.count("Traceback (most recent call last)") == 2, log
    assert log.count("RobustAppError: boom on purpose") == 2, log
