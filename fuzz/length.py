"""Length framing (``aiotcp.codecs.length``: 4-byte big-endian length), str and bytes.

Asserts, for any bytes: the same frames and the same violation whatever the chunking;
only ProtocolError ``too-long`` escapes, refused on the header (nothing past the header
and ``max_frame`` is ever buffered); no frame passes the limit; the str codec's frames
are the bytes codec's decoded (``ERR invalid-utf8`` in the place of each that is not
UTF-8); ``encode`` of the frames is exactly the bytes they came from; the compiled twin
agrees. ``prefixed`` is the same check for the varint framing (fuzz/varint.py).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aiotcp.codecs.contract import INVALID_UTF8, FrameError
from fuzz.runner import chunkings, compiled_twin, feed_all, pure, same_for_every_chunking

length = pure("aiotcp.codecs.length")
MAX_FRAME = 64


def prefixed(text_name: str, bytes_name: str, header_max: int, errors: tuple[str, ...],
             canonical: bool) -> Callable[[bytes], None]:
    """The check of a length-prefixed codec pair of ``aiotcp.codecs.length``:
    ``header_max`` is its longest header, ``errors`` the violations it may raise;
    ``canonical``: a frame has one encoding, so encode gives back the input's bytes."""
    text_codec = getattr(length, text_name)
    bytes_codec = getattr(length, bytes_name)

    def bounded(codec: Any) -> None:
        assert codec.pending() < header_max + MAX_FRAME, f"{codec.pending()} bytes buffered"

    def check(data: bytes) -> None:
        text_frames, text_error = same_for_every_chunking(
            lambda: text_codec(MAX_FRAME), data, bounded)
        raw_frames, raw_error = same_for_every_chunking(
            lambda: bytes_codec(MAX_FRAME), data, bounded)
        assert text_error in (None, *errors) and raw_error == text_error, text_error
        decoded: list[Any] = []
        for f in raw_frames:
            assert type(f) is bytes and len(f) <= MAX_FRAME, f
            try:
                decoded.append(f.decode())
            except UnicodeDecodeError:
                decoded.append(INVALID_UTF8)
        assert text_frames == decoded, (text_frames, decoded)
        encoded = bytes_codec(MAX_FRAME).encode(raw_frames)
        assert bytes_codec(MAX_FRAME).feed(encoded) == raw_frames
        if canonical and raw_error is None:
            assert data.startswith(encoded), (encoded, data)
        texts = [f for f in text_frames if not isinstance(f, FrameError)]
        assert text_codec(MAX_FRAME).feed(text_codec(MAX_FRAME).encode(texts)) == texts
        twin = compiled_twin("aiotcp.codecs.length")
        if twin is not None:
            for chunks in chunkings(data):
                assert feed_all(getattr(twin, text_name)(MAX_FRAME), chunks) == (
                    text_frames, text_error)
                assert feed_all(getattr(twin, bytes_name)(MAX_FRAME), chunks) == (
                    raw_frames, raw_error)

    return check


check = prefixed("LengthCodec", "BytesLengthCodec", length.LENGTH_HEADER.size, ("too-long",),
                 canonical=True)
