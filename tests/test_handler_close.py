"""``conn.close()`` from a sync handler: the replies of the read, then close; nothing later."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from aiotcp.config import Config
from aiotcp.server import Server

ACK = "已收到: "


class Transport:
    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.closed = False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 5) if name == "peername" else default

    def set_write_buffer_limits(self, high: int = 0, low: int = 0) -> None:
        pass

    def write(self, data: bytes) -> None:
        assert not self.closed, "a reply written after close is lost"
        self.written.append(data)

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed


class Closer:
    def __init__(self) -> None:
        self.handled: list[str] = []

    def __call__(self, message: str, conn: Any) -> str:
        self.handled.append(message)
        if message == "bye":
            conn.close()
        return ACK + message


@pytest.mark.parametrize("invalid_first", [False, True])
def test_close_sends_the_replies_of_the_read_then_closes(invalid_first: bool) -> None:
    """Also when the read holds an invalid frame (the per-frame path)."""
    handler = Closer()
    first = b"\xff\n" if invalid_first else b""

    async def main() -> tuple[list[str], bool, list[str]]:
        server = Server(handler, Config(access_log=False))
        conn = server.connection_class()
        t = Transport()
        conn.connection_made(t)  # type: ignore[arg-type]
        conn.data_received(first + "a\nbye\nlater\n".encode())
        conn.data_received(b"even-later\n")
        closed_before_turn = t.closed
        await asyncio.sleep(0)
        assert closed_before_turn is False  # closes after this read's write, not before
        return b"".join(t.written).decode().splitlines(), t.closed, handler.handled

    lines, closed, handled = asyncio.run(main())
    if invalid_first:
        assert lines.pop(0).startswith("ERR invalid-utf8 ")
    assert lines == [ACK + "a", ACK + "bye"]
    assert closed
    assert handled == ["a", "bye"]  # no message after the closing one was handled
