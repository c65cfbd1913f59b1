"""A protocol of a user's own, as the README shows it: ``--codec codec_apps:Netstring``.

``Netstring``: D. J. Bernstein's netstrings (``5:hello,``), the framing Twisted's
``NetstringReceiver`` speaks: bytes in, bytes out. ``handle`` acks a message
(``ack:<message>``), sleeps on ``sleep:S``, raises on ``boom``, closes on ``bye``.
``app``: the same as an App carrying its codec. ``Tail``: lines, where the last line
needs no newline (it is complete at EOF: the codec's ``eof``). ``Broken``: a codec with
a bug (it raises KeyError on ``boom``).
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiotcp

# A netstring's length has at most this many digits (a length over 10 digits would be
# over 9 GB: refused as a bad length before its payload is buffered).
MAX_DIGITS = 10


class Netstring(aiotcp.Codec[bytes]):
    """``<length>:<payload>,`` both ways."""

    def __init__(self, max_frame: int) -> None:
        self.max_frame = max_frame
        self.buf = bytearray()

    def feed(self, data: bytes) -> list[bytes]:  # type: ignore[override]
        buf = self.buf
        buf += data
        out: list[bytes] = []
        while buf:
            colon = buf.find(b":", 0, MAX_DIGITS + 1)
            digits = buf[:colon] if colon >= 0 else buf[:MAX_DIGITS + 1]
            if not digits.isdigit() or (colon < 0 and len(digits) > MAX_DIGITS):
                raise aiotcp.ProtocolError("bad-length", "not a netstring length", out)
            if colon < 0:
                break  # the length is still arriving
            size = int(digits)
            if size > self.max_frame:
                raise aiotcp.ProtocolError("too-long", f"frame exceeds {self.max_frame} bytes", out)
            end = colon + 1 + size
            if len(buf) <= end:
                break  # the payload or its comma is still arriving
            if buf[end] != ord(","):
                raise aiotcp.ProtocolError("bad-frame", "a netstring ends in ','", out)
            out.append(bytes(buf[colon + 1 : end]))
            del buf[: end + 1]
        return out

    def encode(self, replies: list[Any]) -> bytes:
        return b"".join(b"%d:%s," % (len(r), r) for r in replies)

    def error_reply(self, code: str, text: str) -> bytes:
        return f"ERR {code} {text}".encode()


async def handle(message: bytes, conn: Any) -> bytes:
    if message.startswith(b"sleep:"):
        await asyncio.sleep(float(message[6:]))
    elif message == b"boom":
        raise RuntimeError("boom on purpose")
    elif message == b"bye":
        conn.close()
    return b"ack:" + message


def sync_handle(message: bytes, conn: Any) -> bytes:
    return b"ack:" + message


app = aiotcp.App(handle, codec=Netstring)


class Tail:
    """Lines of bytes, the last of which may end at EOF (duck-typed: no aiotcp.Codec)."""

    def __init__(self, max_frame: int) -> None:
        self.buf = b""

    def feed(self, data: bytes) -> list[bytes]:
        *lines, self.buf = (self.buf + data).split(b"\n")
        return lines

    def eof(self) -> list[bytes]:
        return [self.buf] if self.buf else []

    def encode(self, replies: list[bytes]) -> bytes:
        return b"".join(r + b"\n" for r in replies)


class Broken(Netstring):
    """A codec with a bug: feeding it ``boom`` raises KeyError."""

    def feed(self, data: bytes) -> list[bytes]:  # type: ignore[override]
        if b"boom" in data:
            raise KeyError("a bug in the codec")
        return super().feed(data)
