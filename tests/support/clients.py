"""Line-protocol clients over real loopback sockets.

``LineClient`` is blocking (for tests that drive a server process from the test thread);
``AsyncLineClient`` uses asyncio streams (for in-process servers on the test's loop).
Every read is bounded by a hang-guard timeout.
"""

from __future__ import annotations

import asyncio
import select
import socket
import struct
from typing import Self

from .waiting import HANG_GUARD

# The default app's reply prefix.
ACK = "已收到: "

# A probe that a server answers is quick; a short timeout lets a poll loop try again.
PROBE_TIMEOUT = 2.0


class LineClient:
    """A blocking line client; ``None`` from :meth:`line` means the server closed."""

    def __init__(
        self,
        port: int = 0,
        timeout: float = HANG_GUARD,
        source: str | None = None,
        *,
        host: str = "127.0.0.1",
        unix: str | None = None,
    ) -> None:
        """Connect to ``host:port`` (IPv4 or IPv6), or to the Unix socket ``unix``."""
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(socket.AF_UNIX if unix else family, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        if source is not None:
            self.sock.bind((source, 0))
        try:
            self.sock.connect(unix if unix else (host, port))
        except OSError:
            self.sock.close()
            raise
        self._buf = b""

    def send(self, data: str | bytes) -> None:
        """Send ``data`` as it is (add the ``\\n`` yourself, or use :meth:`ask`)."""
        self.sock.sendall(data.encode() if isinstance(data, str) else data)

    def line(self) -> str | None:
        """The next line without its newline; the rest at EOF; None at EOF or reset."""
        while b"\n" not in self._buf:
            try:
                chunk = self.sock.recv(65536)
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                if self._buf:
                    rest, self._buf = self._buf, b""
                    return rest.decode()
                return None
            self._buf += chunk
        raw, self._buf = self._buf.split(b"\n", 1)
        return raw.decode()

    def lines(self, n: int) -> list[str | None]:
        return [self.line() for _ in range(n)]

    def ask(self, message: str) -> str | None:
        """Send one message and return the reply line."""
        self.send(message + "\n")
        return self.line()

    def eof(self) -> bool:
        """True if the peer has closed (EOF or reset) with nothing more to read."""
        try:
            chunk = self.sock.recv(65536)
        except ConnectionResetError:
            return True
        self._buf += chunk
        return not chunk

    def pending(self) -> bool:
        """Without blocking: True if a line, an EOF or a reset is waiting to be read."""
        return b"\n" in self._buf or bool(select.select([self.sock], [], [], 0)[0])

    def reset(self) -> None:
        """Close abruptly: SO_LINGER 0 makes close() send RST instead of FIN."""
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.sock.close()

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def closed_by_peer(sock: socket.socket) -> bool:
    """Without blocking: True if the peer of ``sock`` has closed (FIN or RST), no data left."""
    try:
        return sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
    except BlockingIOError:
        return False
    except ConnectionError:
        return True


def served(port: int, timeout: float = PROBE_TIMEOUT) -> bool:
    """True if a new client gets the default ack for one message (not ERR busy, not closed)."""
    try:
        with LineClient(port, timeout=timeout) as c:
            return c.ask("ping") == ACK + "ping"
    except OSError:
        return False


class AsyncLineClient:
    """A line client over asyncio streams, for servers running on the test's own loop."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def connect(cls, port: int) -> AsyncLineClient:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        return cls(reader, writer)

    async def send(self, data: bytes | str) -> None:
        self.writer.write(data.encode() if isinstance(data, str) else data)
        await self.writer.drain()

    async def line(self, timeout: float = HANG_GUARD) -> str:
        """The next reply line without its newline; '' at EOF."""
        async with asyncio.timeout(timeout):
            raw = await self.reader.readline()
        return raw.decode().removesuffix("\n")

    async def lines(self, n: int, timeout: float = HANG_GUARD) -> list[str]:
        return [await self.line(timeout) for _ in range(n)]

    async def exactly(self, n: int, timeout: float = HANG_GUARD) -> bytes:
        async with asyncio.timeout(timeout):
            return await self.reader.readexactly(n)

    async def until_eof(self, timeout: float = HANG_GUARD) -> bytes:
        async with asyncio.timeout(timeout):
            return await self.reader.read()

    def reset(self) -> None:
        """Close abruptly, as a client that dies does: SO_LINGER 0 makes it an RST."""
        sock = self.writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.writer.transport.abort()

    async def close(self) -> None:
        self.writer.close()
        try:
            await self.writer.wait_closed()
        except ConnectionError:
            pass
