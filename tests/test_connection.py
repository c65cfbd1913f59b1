"""The connection layer with a fake transport: what reaches the wire, and how often."""

from __future__ import annotations

from typing import Any

from aiotcp.apps import Ack
from aiotcp.config import Config
from aiotcp.server import Server


class FakeTransport:
    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False
        self.aborted = False
        self.reading = True
        self.pauses = 0
        self.resumes = 0

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.aborted = True
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def pause_reading(self) -> None:
        self.pauses += 1
        self.reading = False

    def resume_reading(self) -> None:
        self.resumes += 1
        self.reading = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 40000) if name == "peername" else default

    def set_write_buffer_limits(self, high: int, low: int) -> None:
        pass


def connect(handler: Any = None, **settings: Any) -> tuple[Connection, FakeTransport]:
    server = Server(handler if handler is not None else Ack(), Config(**settings))
    conn = server.connection_class()
    transport = FakeTransport()
    conn.connection_made(transport)  # type: ignore[arg-type]
    return conn, transport


def test_all_replies_of_one_read_leave_in_one_write() -> None:
    conn, t = connect()
    conn.data_received(b"a\nb\nc\n")
    assert t.writes == ["已收到: a\n已收到: b\n已收到: c\n".encode()]


def test_generic_sync_handler_also_writes_once_per_read() -> None:
    conn, t = connect(lambda m, c: m.upper())
    conn.data_received(b"a\nb\n")
    assert t.writes == [b"A\nB\n"]


def test_no_write_for_a_partial_frame() -> None:
    conn, t = connect()
    conn.data_received(b"abc")
    assert t.writes == []
    conn.data_received(b"\n")
    assert t.writes == ["已收到: abc\n".encode()]


def test_errors_and_replies_share_one_write_in_order() -> None:
    conn, t = connect()
    conn.data_received(b"a\n\xff\nb\n")
    assert t.writes == ["已收到: a\nERR invalid-utf8 message is not valid UTF-8\n已收到: b\n".encode()]
    assert not t.closed


def test_data_received_never_raises_and_counts() -> None:
    def handle(m: str, c: object) -> str:
        raise KeyError(m)

    conn, t = connect(handle)
    conn.data_received(b"x\ny\n")
    assert t.writes == [b"ERR internal handler failed\nERR internal handler failed\n"]
    assert conn._stats.errors == {"internal": 2}


def test_batch_that_raises_falls_back_to_one_by_one() -> None:
    class Flaky(Ack):
        def batch(self, messages: list[str], conn: object) -> list[str]:
            raise RuntimeError("no batch today")

    conn, t = connect(Flaky("p "))
    conn.data_received(b"a\nb\n")
    assert t.writes == [b"p a\np b\n"]


def test_flow_control_pauses_high_and_resumes_low_idempotently() -> None:
    conn, t = connect()
    conn.pause_writing()
    conn.pause_writing()
    assert (t.pauses, t.reading) == (1, False)
    conn.resume_writing()
    conn.resume_writing()
    assert (t.resumes, t.reading) == (1, True)


def test_connection_over_the_cap_is_refused_busy() -> None:
    server = Server(Ack(), Config(max_connections=1))
    first, second = server.connection_class(), server.connection_class()
    t1, t2 = FakeTransport(), FakeTransport()
    first.connection_made(t1)  # type: ignore[arg-type]
    second.connection_made(t2)  # type: ignore[arg-type]
    assert not t1.closed
    assert t2.closed and t2.writes == [b"ERR busy too many connections (limit 1)\n"]
    second.data_received(b"ignored\n")
    assert len(t2.writes) == 1
    assert server.stats.connections == 1 and server.stats.connections_refused == {"busy": 1}
