"""Raw framing (the article's): whatever one read returns is one message.

``RawCodec`` decodes UTF-8 incrementally, so a character split across reads is never
broken (its first bytes wait for the next read); ``BytesRawCodec`` (``--binary``)
delivers each read's bytes. Replies carry no terminator; the server's errors end in a
newline so that a person at a terminal sees them.
"""

from __future__ import annotations

import codecs as _stdlib_codecs
from typing import Any

from aiotcp.codecs.contract import INVALID_UTF8, Codec, FrameError, error_text, too_long


class RawCodec(Codec[Any]):
    """Each read is one UTF-8 message."""

    __slots__ = ("_decoder", "max_frame", "clean")

    def __init__(self, max_frame: int) -> None:
        self._decoder = _stdlib_codecs.getincrementaldecoder("utf-8")()
        self.max_frame = max_frame
        self.clean = True

    def feed(self, data: bytes) -> list[str | FrameError]:
        self.clean = True
        if len(data) > self.max_frame:
            raise too_long(self.max_frame)
        try:
            text = self._decoder.decode(data)
        except UnicodeDecodeError:
            self._decoder.reset()
            self.clean = False
            return [INVALID_UTF8]
        return [text] if text else []

    def encode(self, replies: list[str]) -> bytes:
        return "".join(replies).encode()

    def error_reply(self, code: str, text: str) -> str:
        return error_text(code, text) + "\n"

    def pending(self) -> int:
        return len(self._decoder.getstate()[0])


class BytesRawCodec(Codec[Any]):
    """Each read is one message of bytes."""

    __slots__ = ("max_frame",)

    def __init__(self, max_frame: int) -> None:
        self.max_frame = max_frame

    def feed(self, data: bytes) -> list[bytes]:  # type: ignore[override]
        if len(data) > self.max_frame:
            raise too_long(self.max_frame)
        return [data]

    def encode(self, replies: list[Any]) -> bytes:
        return b"".join(replies)

    def error_reply(self, code: str, text: str) -> bytes:
        return (error_text(code, text) + "\n").encode()
