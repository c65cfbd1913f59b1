"""A raw RESP client for the tests: bytes on a socket, whole replies back, as bytes.

``RawResp`` sends requests as they are (so a test can send what no client library
would: hostile lengths, inline commands, half a command) and reads back whole replies
as their exact bytes, so the same request to the redis app and to a real redis-server
can be compared byte for byte. ``command()`` encodes one command as clients do.
``RespClient`` is the client's side of RESP as a codec, for ``aiotcp.testing.Client``.
"""

from __future__ import annotations

import socket
from types import TracebackType
from typing import Any, Self

from .waiting import HANG_GUARD


def command(*args: bytes | str | int) -> bytes:
    """One multibulk command, as every client library writes it."""
    parts = [b"*%d\r\n" % len(args)]
    for a in args:
        b = a if isinstance(a, bytes) else str(a).encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(b), b))
    return b"".join(parts)


def reply_end(buf: bytes, pos: int = 0) -> int:
    """The index after the whole reply at ``pos`` in ``buf``; -1 if it is not all there."""
    nl = buf.find(b"\r\n", pos)
    if nl < 0:
        return -1
    kind, head = buf[pos : pos + 1], buf[pos + 1 : nl]
    end = nl + 2
    if kind in (b"+", b"-", b":", b"_", b",", b"#", b"("):
        return end
    if kind in (b"$", b"=", b"!"):
        n = int(head)
        if n < 0:
            return end
        return end + n + 2 if len(buf) >= end + n + 2 else -1
    if kind in (b"*", b"~", b">", b"%", b"|"):
        n = int(head)
        if n < 0:
            return end
        items = n * 2 if kind in (b"%", b"|") else n
        for _ in range(items):
            end = reply_end(buf, end)
            if end < 0:
                return -1
        return end
    raise AssertionError(f"not a RESP reply: {buf[pos:pos + 40]!r}")


class RespClient:
    """The client's side of RESP as an ``aiotcp.testing.Client`` codec: it sends each
    message (a list of arguments) as a multibulk command and decodes the simple, bulk
    and error replies the server sends (bytes; an error's text without its ``-``), so a
    table of codec tests can run RESP through the same rows as the framings."""

    def __init__(self) -> None:
        self.buf = b""

    def encode(self, messages: list[list[bytes]]) -> bytes:
        return b"".join(command(*m) for m in messages)

    def feed(self, data: bytes) -> list[Any]:
        self.buf += data
        out: list[Any] = []
        while (end := reply_end(self.buf)) >= 0:
            one, self.buf = self.buf[:end], self.buf[end:]
            kind, body = one[:1], one[1:-2]
            if kind == b"$":
                out.append(body.split(b"\r\n", 1)[1])
            elif kind in (b"+", b"-"):
                out.append(body)
            elif kind == b":":
                out.append(int(body))
            else:
                raise AssertionError(f"a reply this client does not decode: {one!r}")
        return out


class RawResp:
    """A blocking socket speaking raw RESP; every read bounded by the hang guard."""

    def __init__(self, port: int, host: str = "127.0.0.1", timeout: float = HANG_GUARD) -> None:
        self.sock = socket.create_connection((host, port), timeout)
        self.buf = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def reply(self) -> bytes:
        """The next whole reply's bytes. Raises EOFError if the server closes first."""
        while (end := reply_end(self.buf)) < 0:
            chunk = self._recv()
            if not chunk:
                raise EOFError(f"the server closed; unread: {self.buf!r}")
            self.buf += chunk
        out, self.buf = self.buf[:end], self.buf[end:]
        return out

    def ask(self, *args: bytes | str | int) -> bytes:
        self.send(command(*args))
        return self.reply()

    def closed(self) -> bool:
        """True once the server has closed (after any replies still unread)."""
        while True:
            chunk = self._recv()
            if not chunk:
                return True
            self.buf += chunk

    def _recv(self) -> bytes:
        try:
            return self.sock.recv(65536)
        except ConnectionResetError:
            return b""

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
