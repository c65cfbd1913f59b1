"""Fakes for unit tests of one layer: a transport and a clock the test controls.

``FakeTransport`` keeps asyncio's transport contract where a connection depends on it:
written bytes sit in a write buffer until the test lets the peer read them
(:meth:`FakeTransport.peer_reads`); going over the high-water mark calls the protocol's
``pause_writing`` once, draining to the low-water mark calls ``resume_writing`` once (as
``asyncio.selector_events`` does); ``write_eof`` half-closes; ``close`` stops reading;
``abort`` drops the buffer. Writing after ``close``, ``abort`` or ``write_eof`` fails
the test: a real transport would drop or refuse those bytes.
"""

from __future__ import annotations

import asyncio
from typing import Any

# asyncio's default write-buffer marks, until the protocol sets its own.
DEFAULT_HIGH_WATER = 64 * 1024
DEFAULT_LOW_WATER = 16 * 1024


class FakeTransport:
    """Records what a protocol asks of its transport; see the module docstring."""

    def __init__(self, peer: tuple[str, int] = ("127.0.0.1", 50000)) -> None:
        self.peer = peer
        self.protocol: asyncio.BaseProtocol | None = None
        self.writes: list[bytes] = []  # every write, in order, whether read yet or not
        self.buffer = bytearray()  # written, not yet read by the peer
        self.high = DEFAULT_HIGH_WATER
        self.low = DEFAULT_LOW_WATER
        self.limits_set: dict[str, int] | None = None
        self.protocol_paused = False
        self.reading = True
        self.pauses = 0
        self.resumes = 0
        self.closing = False
        self.aborted = False
        self.eof_written = False
        self.lost = False

    # ---- the test's side ---------------------------------------------------------

    def connect(self, protocol: asyncio.BaseProtocol) -> None:
        """Hand this transport to ``protocol`` as the loop would on accept."""
        self.protocol = protocol
        protocol.connection_made(self)  # type: ignore[arg-type]

    @property
    def data(self) -> bytes:
        return b"".join(self.writes)

    def lines(self) -> list[str]:
        """Everything written, decoded and split into lines."""
        return self.data.decode().splitlines()

    def peer_reads(self, n: int | None = None) -> bytes:
        """The client reads ``n`` bytes (all if None) of the write buffer."""
        n = len(self.buffer) if n is None else n
        taken = bytes(self.buffer[:n])
        del self.buffer[:n]
        if self.protocol_paused and len(self.buffer) <= self.low:
            self.protocol_paused = False
            assert self.protocol is not None
            self.protocol.resume_writing()
        return taken

    def lose(self, exc: Exception | None = None) -> None:
        """The loop's ``connection_lost`` after a close, abort or reset; once only."""
        if not self.lost:
            self.lost = True
            assert self.protocol is not None
            self.protocol.connection_lost(exc)

    # ---- what the protocol calls -------------------------------------------------

    def write(self, data: bytes | bytearray | memoryview) -> None:
        assert not self.closing, "write after close or abort"
        assert not self.eof_written, "write after write_eof"
        data = bytes(data)
        self.writes.append(data)
        self.buffer += data
        if not self.protocol_paused and len(self.buffer) > self.high:
            self.protocol_paused = True
            assert self.protocol is not None
            self.protocol.pause_writing()

    def get_write_buffer_size(self) -> int:
        return len(self.buffer)

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self.high = DEFAULT_HIGH_WATER if high is None else high
        self.low = self.high // 4 if low is None else low
        self.limits_set = {"high": self.high, "low": self.low}

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        self.eof_written = True

    def pause_reading(self) -> None:
        self.pauses += 1
        self.reading = False

    def resume_reading(self) -> None:
        self.resumes += 1
        self.reading = True

    def is_reading(self) -> bool:
        return self.reading and not self.closing

    def close(self) -> None:
        self.closing = True
        self.reading = False

    def abort(self) -> None:
        self.closing = True
        self.aborted = True
        self.reading = False
        self.buffer.clear()

    def is_closing(self) -> bool:
        return self.closing

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self.peer if name == "peername" else default


class FakeClock:
    """Monotonic seconds that move only when the test calls :meth:`advance`."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def time(self) -> float:
        """The same reading, under the name ``loop.time`` has."""
        return self.now

    def advance(self, seconds: float) -> float:
        assert seconds >= 0, "a monotonic clock never goes back"
        self.now += seconds
        return self.now
