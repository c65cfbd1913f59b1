"""The connection layer with a fake transport and a fake clock: no loop, no sockets.

The server is constructed but never started: a connection only needs its registry,
limits, codec factory, coarse clock and error reporting. What reaches the wire, how
often, and what the connection asks of its transport (flow control, close, half-close).
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from aiotcp.apps import Ack
from aiotcp.config import Config
from aiotcp.connection import WRITE_HIGH_WATER, WRITE_LOW_WATER
from aiotcp.server import Server
from support.clients import ACK
from support.fakes import FakeClock, FakeTransport


class Errors:
    """A generic sync handler: raises on ``boom``, acks anything else."""

    def __call__(self, message: str, conn: object) -> str:
        if message == "boom":
            raise RuntimeError("boom")
        return ACK + message


def connect(
    handler: Any = None, clock: FakeClock | None = None, **settings: Any
) -> tuple[Server, Any, FakeTransport]:
    """A server (default: the Ack app) and one connection made on a fake transport; with
    ``clock``, the server's coarse clock starts at its time (as ``start`` sets it)."""
    server = Server(handler if handler is not None else Ack(), Config(**settings))
    if clock is not None:
        server.registry.sweep(clock.now)
    conn = server.connection_class()
    transport = FakeTransport()
    transport.connect(conn)
    return server, conn, transport


# ---- what reaches the wire -------------------------------------------------------------


def test_all_replies_of_one_read_leave_in_one_write() -> None:
    _, conn, t = connect()
    conn.data_received(b"a\nb\nc\n")
    assert t.writes == ["已收到: a\n已收到: b\n已收到: c\n".encode()]


def test_generic_sync_handler_also_writes_once_per_read() -> None:
    _, conn, t = connect(lambda m, c: m.upper())
    conn.data_received(b"a\nb\n")
    assert t.writes == [b"A\nB\n"]


def test_no_write_for_a_partial_frame() -> None:
    _, conn, t = connect()
    conn.data_received(b"abc")
    assert t.writes == []
    conn.data_received(b"\n")
    assert t.writes == ["已收到: abc\n".encode()]


def test_errors_and_replies_share_one_write_in_order() -> None:
    _, conn, t = connect()
    conn.data_received(b"a\n\xff\nb\n")
    assert t.writes == [
        "已收到: a\nERR invalid-utf8 message is not valid UTF-8\n已收到: b\n".encode()
    ]
    assert not t.closing


def test_data_received_never_raises_when_the_handler_raises() -> None:
    server, conn, t = connect(Errors())
    conn.data_received(b"a\nboom\nb\n")
    conn.data_received(b"c\n")
    assert len(t.writes) == 2  # still one write per read
    assert t.lines() == [ACK + "a", "ERR internal handler failed", ACK + "b", ACK + "c"]
    assert not t.closing  # ERR internal keeps the connection open
    assert server.stats.errors == {"internal": 1}


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
    _, conn, t = connect(handler)
    conn.data_received(b"a\nboom\nb\n")
    conn.data_received(b"c\n")
    lines = t.lines()
    assert [line.split(" ", 2)[:2] for line in lines[:3]] == [["ERR", "internal"]] * 3
    assert lines[3] == ACK + "c"
    assert handler.seen == ["a", "boom", "b", "c"]  # each side effect ran once
    assert "handler raised RuntimeError" in caplog.text
    assert not t.closing


def test_data_received_after_a_fatal_frame_error_is_ignored() -> None:
    _, conn, t = connect(Errors(), max_line=8)
    conn.data_received(b"ok\n" + b"x" * 20 + b"\n")
    assert t.lines() == [ACK + "ok", "ERR too-long frame exceeds 8 bytes"]
    assert t.closing and not t.aborted
    n = len(t.writes)
    conn.data_received(b"more\n")  # bytes still in flight after the close
    assert len(t.writes) == n


# ---- flow control ------------------------------------------------------------------------


def test_connection_made_sets_the_write_buffer_marks() -> None:
    _, _, t = connect()
    assert t.limits_set == {"high": WRITE_HIGH_WATER, "low": WRITE_LOW_WATER}


def test_pause_writing_pauses_reading_once_and_resume_once() -> None:
    _, conn, t = connect()
    conn.pause_writing()
    conn.pause_writing()  # idempotent: asyncio may call it again
    assert (t.pauses, t.reading) == (1, False)
    assert conn.reading_paused
    conn.resume_writing()
    conn.resume_writing()
    assert (t.resumes, t.reading) == (1, True)
    assert not conn.reading_paused
    conn.resume_writing()  # a resume without a pause does nothing
    assert t.resumes == 1
    conn.pause_writing()
    assert t.pauses == 2


def test_a_client_not_reading_its_replies_is_not_read_until_it_drains() -> None:
    _, conn, t = connect()
    line = b"m" * 99 + b"\n"
    reads = 0
    while t.reading:  # the client sends; its replies pile up in the write buffer
        conn.data_received(line * 10)
        reads += 1
        assert reads < 1000, "never paused"
    assert t.get_write_buffer_size() > WRITE_HIGH_WATER
    assert t.pauses == 1
    t.peer_reads(t.get_write_buffer_size() - WRITE_LOW_WATER - 1)
    assert not t.reading  # above the low-water mark: still paused
    t.peer_reads(2)
    assert t.reading and t.resumes == 1
    # Every message read before the pause was answered, in order.
    assert t.lines()[-1] == ACK + "m" * 99
    assert len(t.lines()) == reads * 10


def test_pause_writing_on_a_closing_transport_does_not_touch_reading() -> None:
    _, conn, t = connect()
    t.close()
    conn.pause_writing()
    conn.resume_writing()
    assert t.pauses == 0 and t.resumes == 0


# ---- deadlines: the registry's sweep, driven by a fake clock ---------------------------------

IDLE = 10.0
WRITE = 5.0


def sweep(server: Server, clock: FakeClock, seconds: float) -> None:
    """Let ``seconds`` pass and run the server's deadline sweep at the new time."""
    server.registry.sweep(clock.advance(seconds))


def test_idle_deadline_counts_complete_messages_only(clock: FakeClock) -> None:
    server, conn, t = connect(clock=clock, idle_timeout=IDLE)
    step = server.registry.interval  # a deadline may fire up to one sweep late
    conn.data_received(b"one\n")
    sweep(server, clock, IDLE)
    assert not t.closing  # exactly IDLE since the message: not yet
    conn.data_received(b"trickle, no newline")  # bytes, but no complete message
    sweep(server, clock, step)
    assert t.lines() == [ACK + "one", f"ERR idle-timeout no complete message for {IDLE:g}s"]
    assert t.closing and conn.close_reason == "idle-timeout"


def test_idle_deadline_moves_with_every_message(clock: FakeClock) -> None:
    server, conn, t = connect(clock=clock, idle_timeout=IDLE, write_timeout=0)
    step = server.registry.interval
    for i in range(5):
        sweep(server, clock, IDLE)
        assert not t.closing, i
        conn.data_received(b"m\n")
    sweep(server, clock, IDLE + step / 2)
    assert not t.closing
    sweep(server, clock, step / 2)
    assert t.closing and t.lines()[-1].startswith("ERR idle-timeout ")


def test_write_deadline_counts_from_unflushed_output_and_aborts(clock: FakeClock) -> None:
    server, conn, t = connect(clock=clock, write_timeout=WRITE, idle_timeout=0)
    step = server.registry.interval
    sweep(server, clock, 3)
    conn.data_received(b"a\n")  # a reply the client does not take
    sweep(server, clock, 3)  # the sweep sees it unflushed: the write clock starts
    sweep(server, clock, WRITE)
    assert not t.closing
    sweep(server, clock, step)
    assert t.aborted and t.buffer == b""  # a client not reading is not written to
    assert server.stats.errors == {"write-timeout": 1}


def test_taking_the_output_before_the_write_deadline_cancels_it(clock: FakeClock) -> None:
    server, conn, t = connect(clock=clock, write_timeout=WRITE, idle_timeout=0)
    conn.data_received(b"a\n")
    sweep(server, clock, WRITE)
    t.peer_reads()
    sweep(server, clock, 100 * WRITE)
    assert not t.closing


def test_a_zero_window_client_below_the_high_water_mark_loses_its_slot(clock: FakeClock) -> None:
    """The idle close waits for a flush that never comes; the write clock ends it."""
    server, conn, t = connect(clock=clock, write_timeout=WRITE, idle_timeout=IDLE)
    step = server.registry.interval
    conn.data_received(b"a\n")  # a few bytes the client never takes
    sweep(server, clock, IDLE + step)
    assert t.closing and not t.aborted and conn.close_reason == "idle-timeout"
    sweep(server, clock, WRITE + step)
    assert t.aborted
    assert server.stats.errors == {"idle-timeout": 1, "write-timeout": 1}


# ---- limits, timeouts, shutdown ------------------------------------------------------------


def test_connection_over_the_cap_is_refused_busy_and_not_registered() -> None:
    server, first, t1 = connect(Errors(), max_connections=1)
    second = server.connection_class()
    t2 = FakeTransport()
    t2.connect(second)
    assert not t1.closing
    assert t2.closing and t2.writes == [b"ERR busy too many connections (limit 1)\n"]
    second.data_received(b"ignored\n")  # refused: nothing is handled
    assert len(t2.writes) == 1
    assert server.stats.connections == 1 and server.stats.connections_refused == {"busy": 1}
    t2.lose()  # a refused connection is not in the registry
    assert len(server.registry) == 1
    t1.lose(ConnectionResetError())
    assert len(server.registry) == 0 and server.stats.connections == 0
    assert first.close_reason == "reset"


def test_idle_expiry_says_why_then_closes() -> None:
    _, conn, t = connect()
    conn.expire("idle-timeout", "no complete message for 5s")
    assert t.lines() == ["ERR idle-timeout no complete message for 5s"]
    assert t.closing and not t.aborted
    assert conn.close_reason == "idle-timeout"


def test_shutdown_says_err_shutdown_then_half_closes_until_the_client_eof() -> None:
    _, conn, t = connect()
    conn.data_received(b"a\n")
    conn.shut_down()
    assert t.lines() == [ACK + "a", "ERR shutdown server is shutting down"]
    assert t.eof_written and not t.closing  # FIN sent; still reading the client's rest
    conn.data_received(b"late\n")  # input after ERR shutdown is read and dropped
    assert len(t.lines()) == 2
    conn.eof_received()
    assert t.closing
    assert conn.close_reason == "shutdown"


class Closer:
    """Closes the connection from the handler on ``bye``."""

    def __init__(self) -> None:
        self.handled: list[str] = []

    def __call__(self, message: str, conn: Any) -> str:
        self.handled.append(message)
        if message == "bye":
            conn.close()
        return ACK + message


@pytest.mark.parametrize("invalid_first", [False, True])
def test_close_from_a_sync_handler_sends_the_replies_of_the_read_then_closes(
    invalid_first: bool,
) -> None:
    """Also when the read holds an invalid frame (the per-frame path)."""
    handler = Closer()
    first = b"\xff\n" if invalid_first else b""

    async def main() -> FakeTransport:
        _, conn, t = connect(handler, access_log=False)
        conn.data_received(first + b"a\nbye\nlater\n")
        conn.data_received(b"even-later\n")
        assert not t.closing  # closes after this read's write, not before
        await asyncio.sleep(0)
        return t

    t = asyncio.run(main())
    lines = t.lines()
    if invalid_first:
        assert lines.pop(0).startswith("ERR invalid-utf8 ")
    assert lines == [ACK + "a", ACK + "bye"]
    assert t.closing
    assert handler.handled == ["a", "bye"]  # no message after the closing one was handled
