"""Line framing (``aiotcp.codecs.line``), str and bytes messages.

Asserts, for any bytes: the same frames (and the same ``too-long`` violation) whatever
the chunking; only ProtocolError ``too-long`` escapes; nothing past ``max_frame + 1``
(the limit and a ``\\r``) is buffered; no frame holds a ``\\n`` or passes the limit; the
str codec's frames are the bytes codec's decoded (``ERR invalid-utf8`` in the place of
each that is not UTF-8) and ``clean`` is False exactly after a feed returning one;
``encode`` of the frames reads back as them; the ack fast path (``prefix_frames``)
writes the bytes the general path writes; the compiled twin agrees.
"""

from __future__ import annotations

from typing import Any

from aiotcp.codecs.contract import INVALID_UTF8, FrameError, ProtocolError
from fuzz.runner import chunkings, compiled_twin, feed_all, pure, same_for_every_chunking

line = pure("aiotcp.codecs.line")
MAX_FRAME = 64
PREFIX = "已收到: "


def _bounded(codec: Any) -> None:
    assert codec.pending() <= MAX_FRAME + 1, f"{codec.pending()} bytes buffered"


def _clean_tracks_errors(codec: Any, chunks: list[bytes]) -> None:
    for chunk in chunks:
        try:
            got = codec.feed(chunk)
        except ProtocolError:  # the chunking property asserted which
            return
        assert codec.clean == (INVALID_UTF8 not in got), (got, codec.clean)


def _acks(codec: Any, chunks: list[bytes], fast: bool) -> tuple[bytes, int] | None:
    """The ack app's output for ``chunks``: by ``prefix_frames`` where it answers (if
    ``fast``), else feed + encode. None once a frame is an error (answered otherwise)."""
    prefix = PREFIX.encode()
    out, count = [], 0
    for chunk in chunks:
        r = codec.prefix_frames(chunk, prefix, b"\n" + prefix) if fast else None
        if r is None:
            try:
                frames = codec.feed(chunk)
            except ProtocolError:
                return None
            if any(isinstance(f, FrameError) for f in frames):
                return None
            r = (codec.encode([PREFIX + f for f in frames]) if frames else b"", len(frames))
        out.append(r[0])
        count += r[1]
    return b"".join(out), count


def check(data: bytes) -> None:
    text_frames, text_error = same_for_every_chunking(
        lambda: line.LineCodec(MAX_FRAME), data, _bounded)
    raw_frames, raw_error = same_for_every_chunking(
        lambda: line.BytesLineCodec(MAX_FRAME), data, _bounded)
    assert text_error in (None, "too-long") and raw_error == text_error
    decoded: list[Any] = []
    for f in raw_frames:
        assert b"\n" not in f and len(f) <= MAX_FRAME, f
        try:
            decoded.append(f.decode())
        except UnicodeDecodeError:
            decoded.append(INVALID_UTF8)
    assert text_frames == decoded, (text_frames, decoded)
    for chunks in chunkings(data):
        _clean_tracks_errors(line.LineCodec(MAX_FRAME), chunks)
        assert _acks(line.LineCodec(MAX_FRAME), chunks, True) == _acks(
            line.LineCodec(MAX_FRAME), chunks, False)
    # encode(frames) reads back as the frames (a frame ending in "\r" would lose it).
    for codec, frames in ((line.BytesLineCodec, raw_frames), (line.LineCodec, text_frames)):
        kept = [f for f in frames if not isinstance(f, FrameError) and f[-1:] not in ("\r", b"\r")]
        if kept:
            assert codec(MAX_FRAME).feed(codec(MAX_FRAME).encode(kept)) == kept
    twin = compiled_twin("aiotcp.codecs.line")
    if twin is not None:
        for chunks in chunkings(data):
            assert feed_all(twin.LineCodec(MAX_FRAME), chunks) == (text_frames, text_error)
            assert feed_all(twin.BytesLineCodec(MAX_FRAME), chunks) == (raw_frames, raw_error)
