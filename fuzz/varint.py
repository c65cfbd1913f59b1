"""Varint framing (``aiotcp.codecs.length``: protobuf delimited), str and bytes.

The checks of fuzz/length.py, with a header of up to ``VARINT_MAX_BYTES`` bytes and
``bad-length`` (a varint over 10 bytes) among the violations; a varint may be written
with needless continuation bytes, so encode reads back as the frames but need not be
the input's bytes. Also: ``varint(n)`` decodes back to ``n`` for every header read.
"""

from __future__ import annotations

from aiotcp.codecs.contract import ProtocolError
from fuzz.length import MAX_FRAME, length, prefixed

_frames = prefixed("VarintCodec", "BytesVarintCodec", length.VARINT_MAX_BYTES,
                   ("too-long", "bad-length"), canonical=False)


def check(data: bytes) -> None:
    _frames(data)
    codec = length.BytesVarintCodec(MAX_FRAME)
    buf = bytearray(data)
    try:
        header = codec._header(buf, 0, len(buf))
    except ProtocolError:  # a violation: the frames check asserted which
        return
    if header is not None:
        size, hlen = header
        assert 1 <= hlen <= length.VARINT_MAX_BYTES
        wire = length.varint(size)
        assert len(wire) <= hlen and codec._header(bytearray(wire), 0, len(wire)) == (
            size, len(wire))
