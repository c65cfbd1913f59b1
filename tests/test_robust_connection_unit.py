"""The connection layer driven by a fake transport: flow control and never raising.

The server is constructed but never started (no loop, no sockets): the connection only
needs its registry, limits, codec factory and error reporting.
"""

from __future__ import annotations

from typing import Any

import pytest

from aiotcp.config import Config
from aiotcp.connection import WRITE_HIGH_WATER, WRITE_LOW_WATER
from aiotcp.server import Server

ACK = "已收到: "


class FakeTransport:
    """Records what the connection asks of its transport."""

    def __init__(self, peer: tuple[str, int] = ("127.0.0.1", 50000)) -> None:
        self.peer = peer
        self.written: list[bytes] = []
        self.closing = False
        self.aborted = False
        self.pauses = 0
        self.resumes = 0
        self.limits: dict[str, int] = {}

    def write(self, data: bytes) -> None:
        assert not self.closing, "write after close"
        self.written.append(bytes(data))

    def close(self) -> None:
        self.closing = True

    def abort(self) -> None:
        self.closing = True
        self.aborted = True

    def pause_reading(self) -> None:
        self.pauses += 1

    def resume_reading(self) -> None:
        self.resumes += 1

    def is_closing(self) -> bool:
        return self.closing

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self.peer if name == "peername" else default

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self.limits = {"high": high or 0, "low": low or 0}

    def lines(self) -> list[str]:
        return b"".join(self.written).decode().splitlines()


class Errors:
    """A handler that raises on ``boom`` and acks anything else."""

    def __call__(self, message: str, conn: object) -> str:
        if message == "boom":
            raise RuntimeError("boom")
        return ACK + message


def make(handler: Any = None, **settings: Any) -> tuple[Server, Any, FakeTransport]:
    server = Server(handler if handler is not None else Errors(), Config(port=0, **settings))
    conn = server.connection_class()
    transport = FakeTransport()
    conn.connection_made(transport)
    return server, conn, transport


def test_connection_made_sets_the_write_buffer_marks() -> None:
    _, _, transport = make()
    assert transport.limits == {"high": WRITE_HIGH_WATER, "low": WRITE_LOW_WATER}


def test_pause_writing_pauses_reading_once_and_resume_once() -> None:
    _, conn, transport = make()
    conn.pause_writing()
    conn.pause_writing()  # idempotent: asyncio may call it again
    assert transport.pauses == 1
    assert conn.paused_since is not None
    conn.resume_writing()
    conn.resume_writing()
    assert transport.resumes == 1
    assert conn.paused_since is None
    conn.resume_writing()  # a resume without a pause does nothing
    assert transport.resumes == 1
    conn.pause_writing()
    assert transport.pauses == 2


def test_pause_writing_on_a_closing_transport_does_not_touch_reading() -> None:
    _, conn, transport = make()
    transport.close()
    conn.pause_writing()
    conn.resume_writing()
    assert transport.pauses == 0 and transport.resumes == 0


def test_data_received_never_raises_when_the_handler_raises() -> None:
    server, conn, transport = make(Errors())
    conn.data_received(b"a\nboom\nb\n")
    conn.data_received(b"c\n")
    lines = transport.lines()
    assert lines[0] == ACK + "a"
    assert lines[1].startswith("ERR internal ")
    assert lines[2:] == [ACK + "b", ACK + "c"]
    assert not transport.closing  # ERR internal keeps the connection open
    assert server.stats.errors.get("internal") == 1


class CountingBatch:
    """A batch handler that counts how often each message's side effect ran."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    def __call__(self, message: str, conn: object) -> str:
        return ACK + message

    def batch(self, messages: list[str], conn: object) -> list[str]:
        self.seen.extend(messages)
        if "boom" in messages:
            raise RuntimeError("boom")
        return [ACK + m for m in messages]


def test_a_batch_that_raises_is_logged_and_never_rerun(caplog: pytest.LogCaptureFixture) -> None:
    handler = CountingBatch()
    server, conn, transport = make(handler)
    conn.data_received(b"a\nboom\nb\n")
    conn.data_received(b"c\n")
    lines = transport.lines()
    assert [line.split(" ", 2)[:2] for line in lines[:3]] == [["ERR", "internal"]] * 3
    assert lines[3] == ACK + "c"
    assert handler.seen == ["a", "boom", "b", "c"]  # each side effect ran once
    assert "handler raised RuntimeError" in caplog.text
    assert not transport.closing


def test_data_received_after_a_fatal_frame_error_is_ignored() -> None:
    _, conn, transport = make(max_line=8)
    conn.data_received(b"ok\n" + b"x" * 20 + b"\n")
    assert transport.lines()[0] == ACK + "ok"
    assert transport.lines()[1].startswith("ERR too-long ")
    assert transport.closing
    n = len(transport.written)
    conn.data_received(b"more\n")  # bytes still in flight after the close
    assert len(transport.written) == n


def test_over_the_cap_connection_gets_err_busy_and_is_closed() -> None:
    server, first, _ = make(max_connections=1)
    second = server.connection_class()
    transport = FakeTransport()
    second.connection_made(transport)
    assert transport.lines()[0].startswith("ERR busy ")
    assert transport.closing
    second.data_received(b"hello\n")  # refused: nothing is handled
    assert len(transport.lines()) == 1
    second.connection_lost(None)  # a refused connection is not in the registry
    assert len(server.registry) == 1
    first.connection_lost(ConnectionResetError())
    assert len(server.registry) == 0
    assert first.close_reason == "reset"
