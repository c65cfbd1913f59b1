"""Length-prefixed framing: a length, then that many bytes.

``length``: a 4-byte big-endian length (Netty's ``LengthFieldBasedFrameDecoder`` with a
4-byte field, tokio-util's ``LengthDelimitedCodec`` default). ``varint``: protobuf's
delimited format, a base-128 varint length (``writeDelimitedTo`` /
``parseDelimitedFrom``). Either way the length is checked against ``max_frame`` from
the header, before a byte of the payload is buffered, and a varint longer than 10 bytes
is a violation (a 64-bit length never needs more).

Text codecs decode the payload as UTF-8 (``ERR invalid-utf8`` for one that is not; the
connection goes on); the ``Bytes`` ones (``--binary``) deliver it as it is.
"""

from __future__ import annotations

import struct
from typing import Any

from aiotcp.codecs.contract import (
    INVALID_UTF8,
    Codec,
    FrameError,
    ProtocolError,
    error_text,
    too_long,
)

LENGTH_HEADER = struct.Struct(">I")

# A varint of a 64-bit value takes at most 10 bytes (7 bits each).
VARINT_MAX_BYTES = 10


def varint(n: int) -> bytes:
    """``n`` as a base-128 varint (little-endian groups of 7 bits, high bit: more)."""
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


class _Prefixed(Codec[Any]):
    """A length header, then the payload; ``_header`` reads one."""

    __slots__ = ("_buf", "max_frame", "clean")

    text = True  # decode payloads as UTF-8

    def __init__(self, max_frame: int) -> None:
        self._buf = bytearray()
        self.max_frame = max_frame
        self.clean = True

    def _header(self, buf: bytearray, pos: int, n: int) -> tuple[int, int] | None:
        """(payload size, header size) of the frame at ``pos``, or None if incomplete."""
        raise NotImplementedError

    def _frame(self, size: int) -> bytes:
        raise NotImplementedError

    def feed(self, data: bytes) -> list[Any]:
        self.clean = True
        buf = self._buf
        buf += data
        out: list[Any] = []
        pos = 0
        n = len(buf)
        text = self.text
        try:
            while n - pos:
                header = self._header(buf, pos, n)
                if header is None:
                    break
                size, hlen = header
                if size > self.max_frame:
                    # Refused on the header, before a byte of the payload is buffered.
                    raise too_long(self.max_frame)
                if n - pos - hlen < size:
                    break
                start = pos + hlen
                payload = bytes(buf[start : start + size])
                pos = start + size
                if text:
                    try:
                        out.append(payload.decode())
                    except UnicodeDecodeError:
                        out.append(INVALID_UTF8)
                        self.clean = False
                else:
                    out.append(payload)
        except ProtocolError as e:
            self._buf = bytearray()
            if not e.messages:
                e.messages = out  # the frames before the violation are answered
            raise
        if pos:
            del buf[:pos]
        return out

    def encode(self, replies: list[Any]) -> bytes:
        """Raises TypeError (or AttributeError) for a reply of the wrong type."""
        chunks = []
        frame = self._frame
        text = self.text
        for r in replies:
            # memoryview: bytes-like only (bytes(5) would be five zero bytes).
            b = r.encode() if text else r if type(r) is bytes else bytes(memoryview(r))
            chunks.append(frame(len(b)))
            chunks.append(b)
        return b"".join(chunks)

    def error_reply(self, code: str, text: str) -> Any:
        body = error_text(code, text)
        return body if self.text else body.encode()

    def pending(self) -> int:
        return len(self._buf)


class LengthCodec(_Prefixed):
    """4-byte big-endian length, then UTF-8."""

    __slots__ = ()

    def _header(self, buf: bytearray, pos: int, n: int) -> tuple[int, int] | None:
        if n - pos < 4:
            return None
        return LENGTH_HEADER.unpack_from(buf, pos)[0], 4

    _frame = staticmethod(LENGTH_HEADER.pack)  # type: ignore[assignment]


class BytesLengthCodec(LengthCodec):
    """4-byte big-endian length, then bytes."""

    __slots__ = ()
    text = False


class VarintCodec(_Prefixed):
    """Base-128 varint length (protobuf delimited), then UTF-8."""

    __slots__ = ()

    def _header(self, buf: bytearray, pos: int, n: int) -> tuple[int, int] | None:
        size = 0
        shift = 0
        i = pos
        while i < n:
            b = buf[i]
            size |= (b & 0x7F) << shift
            i += 1
            if not b & 0x80:
                return size, i - pos
            shift += 7
            if i - pos >= VARINT_MAX_BYTES:
                raise ProtocolError("bad-length", "varint length over 10 bytes")
            if size > self.max_frame:  # already over the limit: no need to read on
                raise too_long(self.max_frame)
        if i - pos >= VARINT_MAX_BYTES:
            raise ProtocolError("bad-length", "varint length over 10 bytes")
        return None

    _frame = staticmethod(varint)  # type: ignore[assignment]


class BytesVarintCodec(VarintCodec):
    """Base-128 varint length, then bytes."""

    __slots__ = ()
    text = False


__all__ = [
    "BytesLengthCodec", "BytesVarintCodec", "LENGTH_HEADER", "LengthCodec", "VarintCodec",
    "FrameError", "varint",
]
