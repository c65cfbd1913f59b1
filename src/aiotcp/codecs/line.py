"""Line framing: a message ends in ``\\n``; a trailing ``\\r`` is stripped.

``LineCodec`` delivers UTF-8 text (an invalid line is answered ``ERR invalid-utf8`` and
the connection goes on); ``BytesLineCodec`` (``--binary``) delivers the bytes as they
are. Replies end in ``\\n``. A reply holding a line break would be read as several
replies: ``encode`` refuses it (ValueError) and the connection answers that message with
the internal error instead, so the client never loses its place in the reply order.

A line over ``max_frame`` is refused before it is buffered (``ProtocolError``
``too-long``): a partial line is never kept past the limit.
"""

from __future__ import annotations

from typing import Any

from aiotcp.codecs.contract import INVALID_UTF8, Codec, FrameError, error_text, too_long


class _Lines(Codec[Any]):
    """What both line codecs share: the buffer of a partial line and the limit."""

    __slots__ = ("_buf", "max_frame", "clean")

    def __init__(self, max_frame: int) -> None:
        # A partial line waits here; a bytearray, so a long line trickled in small reads
        # is appended to, never copied whole per read.
        self._buf = bytearray()
        self.max_frame = max_frame
        self.clean = True

    def _split(self, data: bytes) -> tuple[bytes, bytes] | None:
        """Buffer ``data``; return (complete lines, the rest) or None if no line ends.

        Raises ProtocolError when the partial line would pass the limit.
        """
        buf = self._buf
        end = data.rfind(b"\n")
        if end < 0:
            if len(buf) + len(data) > self.max_frame + 1:  # + 1: room for the "\r" of "\r\n"
                self._buf = bytearray()
                raise too_long(self.max_frame)
            buf += data
            return None
        if buf:
            buf += data[: end + 1]
            head = bytes(buf)
        else:
            head = data[: end + 1] if end + 1 < len(data) else data
        rest = data[end + 1 :]
        self._buf = bytearray(rest)
        return head, rest

    def _check_rest(self, rest: bytes, done: list[Any]) -> None:
        if len(rest) > self.max_frame + 1:
            self._buf = bytearray()
            raise too_long(self.max_frame, done)

    def pending(self) -> int:
        return len(self._buf)

    def prefix_frames(self, data: bytes, prefix: bytes, sep: bytes) -> tuple[bytes, int] | None:
        # The common read: whole frames, plain ASCII, under the limit, nothing buffered.
        # (``13 not in data``, not ``b"\r" not in data``: with a bytes operand,
        # bytes.__contains__ first tries it as an int and makes and clears a TypeError.)
        if (
            data and data[-1] == 10
            and not self._buf
            and len(data) <= self.max_frame
            and data.isascii()
            and 13 not in data
        ):
            if not prefix:
                return data, data.count(10)
            # Every newline gets ``sep`` (newline + prefix); the prefix goes first and
            # the one after the last newline goes: the count comes from the lengths.
            body = data.replace(b"\n", sep)
            k = len(prefix)
            return prefix + body[:-k], (len(body) - len(data)) // k
        end = data.rfind(b"\n") + 1
        # No frame ends here (feed buffers it, without copying what is buffered), frames
        # with "\r", frames that may be too long, or bytes that may not be UTF-8 take the
        # general path, which has an answer for each.
        if not end:
            return None
        buf = self._buf
        head = bytes(buf) + data[:end] if buf else data[:end]
        rest = data[end:]
        if len(head) > self.max_frame + 1 or len(rest) > self.max_frame + 1 or 13 in head:
            return None
        if not head.isascii() and not self._plain(head):
            return None
        self._buf = bytearray(rest)
        return prefix + head[:-1].replace(b"\n", sep) + b"\n", head.count(10)

    def _plain(self, head: bytes) -> bool:
        """True if ``head`` (non-ASCII) can be answered on bytes."""
        return True


class LineCodec(_Lines):
    """UTF-8 lines."""

    __slots__ = ()

    def feed(self, data: bytes) -> list[str | FrameError]:
        # The common read: whole lines, nothing buffered, too short to hold a long line.
        if data and data[-1] == 10 and not self._buf and len(data) <= self.max_frame + 1:
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
        split = self._split(data)
        if split is None:
            return []
        head, rest = split
        # A complete chunk no longer than limit + "\n" cannot hold a frame over the limit.
        if len(head) > self.max_frame + 1:
            return self._slow(head, rest)
        try:
            text = head.decode()
        except UnicodeDecodeError:
            return self._slow(head, rest)
        lines = text.split("\n")
        lines.pop()
        if "\r" in text:
            lines = [s[:-1] if s.endswith("\r") else s for s in lines]
        self._check_rest(rest, lines)
        return lines  # type: ignore[return-value]

    def _slow(self, head: bytes, rest: bytes) -> list[str | FrameError]:
        """Frame by frame: some frame may be invalid UTF-8 or over the limit."""
        out: list[str | FrameError] = []
        parts = head.split(b"\n")
        parts.pop()
        for raw in parts:
            if raw.endswith(b"\r"):
                raw = raw[:-1]
            if len(raw) > self.max_frame:
                self._buf = bytearray()
                raise too_long(self.max_frame, out)
            try:
                out.append(raw.decode())
            except UnicodeDecodeError:
                out.append(INVALID_UTF8)
                self.clean = False
        self._check_rest(rest, out)
        return out

    def _plain(self, head: bytes) -> bool:
        try:
            head.decode()
        except UnicodeDecodeError:
            return False
        return True

    def encode(self, replies: list[str]) -> bytes:
        """Raises ValueError if a reply holds a line break, TypeError if one is not a str."""
        out = "\n".join(replies).encode() + b"\n"
        # One C loop over the bytes (cheaper than testing each reply from Python).
        if out.count(b"\n") != len(replies):
            raise ValueError("a reply holds a line break")
        return out

    def error_reply(self, code: str, text: str) -> str:
        return error_text(code, text)


class BytesLineCodec(_Lines):
    """Lines as bytes (``--binary``): no decoding; replies are any bytes-like objects."""

    __slots__ = ()

    def feed(self, data: bytes) -> list[bytes]:  # type: ignore[override]
        if data and data[-1] == 10 and not self._buf and len(data) <= self.max_frame + 1:
            lines = data.split(b"\n")
            lines.pop()
            if 13 in data:
                lines = [s[:-1] if s.endswith(b"\r") else s for s in lines]
            return lines
        split = self._split(data)
        if split is None:
            return []
        head, rest = split
        lines = head.split(b"\n")
        lines.pop()
        if 13 in head:
            lines = [s[:-1] if s.endswith(b"\r") else s for s in lines]
        if len(head) > self.max_frame + 1:  # a long pipelined read: some line may be too
            for i, line in enumerate(lines):
                if len(line) > self.max_frame:
                    self._buf = bytearray()
                    raise too_long(self.max_frame, lines[:i])
        self._check_rest(rest, lines)
        return lines

    def encode(self, replies: list[Any]) -> bytes:
        """Raises ValueError if a reply holds a line break, TypeError if one is not bytes-like."""
        out = b"\n".join(replies) + b"\n"
        if out.count(b"\n") != len(replies):
            raise ValueError("a reply holds a line break")
        return out

    def error_reply(self, code: str, text: str) -> bytes:
        return error_text(code, text).encode()
