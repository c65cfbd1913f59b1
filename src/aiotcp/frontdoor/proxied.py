"""The transport a plain-TCP connection gets after its PROXY header: the socket's own
transport with one change, ``peername`` is the client's address from the header.

Writes go straight to the real transport's (C) ``write``: ``write`` is a slot holding
the real transport's bound method, so the hot path has no Python frame in between.
Reads do not pass through here at all: the real transport is handed to the inner
protocol with ``set_protocol``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any


class ProxiedTransport(asyncio.Transport):
    """``transport`` as seen from behind a proxy: ``peername`` reports ``peer``."""

    __slots__ = ("_peer", "_t", "write")

    def __init__(self, transport: asyncio.Transport, peer: tuple[str, int]) -> None:
        super().__init__()
        self._t = transport
        self._peer = peer
        self.write = transport.write  # type: ignore[method-assign]

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == "peername":
            return self._peer
        return self._t.get_extra_info(name, default)

    def writelines(self, list_of_data: Iterable[bytes | bytearray | memoryview]) -> None:
        self._t.writelines(list_of_data)

    def close(self) -> None:
        self._t.close()

    def abort(self) -> None:
        self._t.abort()

    def is_closing(self) -> bool:
        return self._t.is_closing()

    def pause_reading(self) -> None:
        self._t.pause_reading()

    def resume_reading(self) -> None:
        self._t.resume_reading()

    def is_reading(self) -> bool:
        return self._t.is_reading()

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self._t.set_write_buffer_limits(high, low)

    def get_write_buffer_size(self) -> int:
        return self._t.get_write_buffer_size()

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return self._t.get_write_buffer_limits()

    def can_write_eof(self) -> bool:
        return self._t.can_write_eof()

    def write_eof(self) -> None:
        self._t.write_eof()

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._t.set_protocol(protocol)

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._t.get_protocol()
