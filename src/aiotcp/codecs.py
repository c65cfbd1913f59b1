"""Sans-I/O framing: ``feed(bytes) -> frames`` and ``encode(replies) -> bytes``.

No asyncio, no sockets, no clocks here: a codec is tested with bytes alone.

``feed`` returns the complete frames in the data so far, decoded to ``str``. A frame
that cannot be decoded is returned in its place as a :class:`FrameError` (its
``fatal`` flag says whether the stream can go on). After ``feed`` the attribute
``clean`` is True when every item it returned is a ``str``, so the caller checks one
flag per read instead of one type per frame. After a fatal error the codec discards
everything it is fed.
"""

from __future__ import annotations

import codecs as _stdlib_codecs
import struct
from typing import Protocol, Union

LENGTH_HEADER = struct.Struct(">I")


class FrameError:
    """A frame the codec could not turn into a message; becomes one ``ERR`` reply."""

    __slots__ = ("code", "text", "fatal")

    def __init__(self, code: str, text: str, fatal: bool) -> None:
        self.code = code
        self.text = text
        self.fatal = fatal

    def __repr__(self) -> str:
        return f"FrameError({self.code!r}, {self.text!r}, fatal={self.fatal})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, FrameError) and (self.code, self.text, self.fatal) == (
            other.code,
            other.text,
            other.fatal,
        )

    def __hash__(self) -> int:
        return hash((self.code, self.text, self.fatal))


Frame = Union[str, FrameError]


def too_long(limit: int) -> FrameError:
    return FrameError("too-long", f"frame exceeds {limit} bytes", fatal=True)


INVALID_UTF8 = FrameError("invalid-utf8", "message is not valid UTF-8", fatal=False)


def error_text(code: str, text: str) -> str:
    """The body of an error reply: ``ERR <code> <text>``."""
    return f"ERR {code} {text}"


class Codec(Protocol):
    """What the connection needs of a framing."""

    clean: bool
    max_frame: int

    def feed(self, data: bytes) -> list[Frame]:
        """Add received bytes; return the frames they complete, in order."""
        ...

    def encode(self, replies: list[str]) -> bytes:
        """Frame replies (already in order) into the bytes of one write."""
        ...

    def error_reply(self, code: str, text: str) -> str:
        """The reply string that carries an error in this framing (goes through encode)."""
        ...

    def pending(self) -> int:
        """Bytes buffered towards an incomplete frame (dropped at EOF)."""
        ...

    def prefix_frames(self, data: bytes, prefix: bytes) -> tuple[bytes, int] | None:
        """Fast path for replies that are ``prefix + message``, done on bytes.

        Returns the encoded replies to every frame ``data`` completes and how many
        frames that is, having consumed ``data``; or None, having consumed nothing,
        when the frames need the general path (``feed`` then ``encode``): an error,
        a frame that is not plain, or a framing without a fast path.
        """
        ...


class LineCodec:
    """UTF-8 lines ending in ``\\n``; a trailing ``\\r`` is stripped. Replies end in ``\\n``.

    A reply holding a line break would be read as several replies: :meth:`encode`
    refuses it (ValueError), and the connection answers that message with the internal
    error instead, so the client never loses its place in the reply order.
    """

    __slots__ = ("_buf", "max_frame", "clean", "_dead")

    def __init__(self, max_frame: int) -> None:
        # A partial line waits here; a bytearray, so a long line trickled in small reads
        # is appended to, never copied whole per read.
        self._buf = bytearray()
        self.max_frame = max_frame
        self.clean = True
        self._dead = False

    def feed(self, data: bytes) -> list[Frame]:
        # The common read: whole lines, nothing buffered, too short to hold a long line.
        if data[-1:] == b"\n" and not self._buf and len(data) <= self.max_frame + 1:
            if self._dead:
                return []
            try:
                text = data.decode()
            except UnicodeDecodeError:
                return self._slow(data, b"")
            lines = text.split("\n")
            lines.pop()  # the empty string after the final "\n"
            if "\r" in text:
                lines = [s[:-1] if s.endswith("\r") else s for s in lines]
            self.clean = True
            return lines  # type: ignore[return-value]
        self.clean = True
        if self._dead:
            return []
        buf = self._buf
        end = data.rfind(b"\n")
        if end < 0:
            # No frame ends here: buffer, unless the partial frame is already too long.
            if len(buf) + len(data) > self.max_frame + 1:  # + 1: room for the "\r" of "\r\n"
                return self._fail([])
            buf += data
            return []
        if buf:
            buf += data[: end + 1]
            head: bytes = bytes(buf)
        else:
            head = data[: end + 1] if end + 1 < len(data) else data
        rest = data[end + 1 :]
        self._buf = bytearray(rest)
        # A complete chunk no longer than limit + "\n" cannot hold a frame over the limit.
        if len(head) <= self.max_frame + 1:
            try:
                text = head.decode()
            except UnicodeDecodeError:
                return self._slow(head, rest)
            lines = text.split("\n")
            lines.pop()  # the empty string after the final "\n"
            if "\r" in text:
                lines = [s[:-1] if s.endswith("\r") else s for s in lines]
            if len(rest) > self.max_frame + 1:
                return self._fail(lines)  # type: ignore[arg-type]
            return lines  # type: ignore[return-value]
        return self._slow(head, rest)

    def prefix_frames(self, data: bytes, prefix: bytes) -> tuple[bytes, int] | None:
        # The common read: whole frames, plain ASCII, under the limit, nothing buffered.
        if (
            data[-1:] == b"\n"
            and not self._buf
            and len(data) <= self.max_frame
            and data.isascii()
            and b"\r" not in data
            and not self._dead
        ):
            n = data.count(b"\n")
            # Every newline but the last is followed by the prefix of the next reply.
            return prefix + data.replace(b"\n", b"\n" + prefix, n - 1), n
        return self._prefix_frames_general(data, prefix)

    def _prefix_frames_general(self, data: bytes, prefix: bytes) -> tuple[bytes, int] | None:
        end = data.rfind(b"\n") + 1
        # No frame ends here (feed buffers it, without copying what is buffered), frames
        # with "\r", frames that may be too long, or bytes that may not be UTF-8 take the
        # general path, which has an answer for each.
        if not end or self._dead:
            return None
        buf = self._buf
        head = bytes(buf) + data[:end] if buf else data[:end]
        rest = data[end:]
        if len(head) > self.max_frame + 1 or len(rest) > self.max_frame + 1 or b"\r" in head:
            return None
        if not head.isascii():
            try:
                head.decode()
            except UnicodeDecodeError:
                return None
        self._buf = bytearray(rest)
        return prefix + head[:-1].replace(b"\n", b"\n" + prefix) + b"\n", head.count(b"\n")

    def _slow(self, head: bytes, rest: bytes) -> list[Frame]:
        """Frame by frame: some frame may be invalid UTF-8 or over the limit."""
        out: list[Frame] = []
        parts = head.split(b"\n")
        parts.pop()
        for raw in parts:
            if raw.endswith(b"\r"):
                raw = raw[:-1]
            if len(raw) > self.max_frame:
                return self._fail(out)
            try:
                out.append(raw.decode())
            except UnicodeDecodeError:
                out.append(INVALID_UTF8)
                self.clean = False
        if len(rest) > self.max_frame + 1:
            return self._fail(out)
        return out

    def _fail(self, out: list[Frame]) -> list[Frame]:
        self._dead = True
        self._buf = bytearray()
        self.clean = False
        out.append(too_long(self.max_frame))
        return out

    def encode(self, replies: list[str]) -> bytes:
        """Raises ValueError if a reply holds a line break, TypeError if one is not a str."""
        out = "\n".join(replies).encode() + b"\n"
        # One C loop over the bytes (cheaper than testing each reply from Python).
        if out.count(b"\n") != len(replies):
            raise ValueError("a reply holds a line break")
        return out

    def error_reply(self, code: str, text: str) -> str:
        return error_text(code, text)

    def pending(self) -> int:
        return len(self._buf)


class LengthCodec:
    """A 4-byte big-endian length, then that many bytes of UTF-8. Replies framed alike."""

    __slots__ = ("_buf", "max_frame", "clean", "_dead")

    def __init__(self, max_frame: int) -> None:
        self._buf = bytearray()
        self.max_frame = max_frame
        self.clean = True
        self._dead = False

    def feed(self, data: bytes) -> list[Frame]:
        self.clean = True
        if self._dead:
            return []
        buf = self._buf
        buf += data
        out: list[Frame] = []
        pos = 0
        n = len(buf)
        while n - pos >= 4:
            (size,) = LENGTH_HEADER.unpack_from(buf, pos)
            if size > self.max_frame:
                # Rejected on the header, before a byte of the payload is buffered.
                self._dead = True
                self.clean = False
                buf.clear()
                out.append(too_long(self.max_frame))
                return out
            if n - pos - 4 < size:
                break
            payload = bytes(buf[pos + 4 : pos + 4 + size])
            pos += 4 + size
            try:
                out.append(payload.decode())
            except UnicodeDecodeError:
                out.append(INVALID_UTF8)
                self.clean = False
        if pos:
            del buf[:pos]
        return out

    def prefix_frames(self, data: bytes, prefix: bytes) -> tuple[bytes, int] | None:
        return None

    def encode(self, replies: list[str]) -> bytes:
        pack = LENGTH_HEADER.pack
        chunks = []
        for r in replies:
            b = r.encode()
            chunks.append(pack(len(b)))
            chunks.append(b)
        return b"".join(chunks)

    def error_reply(self, code: str, text: str) -> str:
        return error_text(code, text)

    def pending(self) -> int:
        return len(self._buf)


class RawCodec:
    """Whatever one read returns is one message (the seed's behaviour).

    UTF-8 is decoded incrementally, so a character split across reads is never broken:
    its first bytes wait for the next read. Replies carry no terminator.
    """

    __slots__ = ("_decoder", "max_frame", "clean", "_dead")

    def __init__(self, max_frame: int) -> None:
        self._decoder = _stdlib_codecs.getincrementaldecoder("utf-8")()
        self.max_frame = max_frame
        self.clean = True
        self._dead = False

    def feed(self, data: bytes) -> list[Frame]:
        self.clean = True
        if self._dead:
            return []
        if len(data) > self.max_frame:
            self._dead = True
            self.clean = False
            return [too_long(self.max_frame)]
        try:
            text = self._decoder.decode(data)
        except UnicodeDecodeError:
            self._decoder.reset()
            self.clean = False
            return [INVALID_UTF8]
        return [text] if text else []

    def prefix_frames(self, data: bytes, prefix: bytes) -> tuple[bytes, int] | None:
        return None

    def encode(self, replies: list[str]) -> bytes:
        return "".join(replies).encode()

    def error_reply(self, code: str, text: str) -> str:
        return error_text(code, text) + "\n"

    def pending(self) -> int:
        return len(self._decoder.getstate()[0])


def make_codec(framing: str, max_frame: int) -> Codec:
    """A fresh codec for one connection. Raises ValueError for an unknown framing."""
    if framing == "line":
        return LineCodec(max_frame)
    if framing == "length":
        return LengthCodec(max_frame)
    if framing == "raw":
        return RawCodec(max_frame)
    raise ValueError(f"unknown framing {framing!r}")
