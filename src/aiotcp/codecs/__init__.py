"""Codecs: sans-I/O framing, the extension point for any protocol.

The contract is in :mod:`aiotcp.codecs.contract` (``feed``, ``encode``,
``error_reply``, ``eof``, ``ProtocolError``); the built-in framings are codecs like any
user's, each in a text variant (UTF-8 ``str`` messages) and a ``--binary`` one
(``bytes``):

=========  ===========================================================
``line``   a message ends in ``\\n`` (a trailing ``\\r`` is stripped)
``length`` a 4-byte big-endian length, then the payload
``varint`` a base-128 varint length (protobuf delimited), then the payload
``raw``    each read is one message (the article's server)
=========  ===========================================================
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from aiotcp._speedups import twin
from aiotcp.codecs.contract import (
    INVALID_UTF8,
    Codec,
    CodecError,
    CodecFactory,
    FrameError,
    ProtocolError,
    checked_factory,
    error_text,
    too_long,
)
if TYPE_CHECKING:
    from aiotcp.codecs import length, line, raw
else:  # the compiled twins, unless the pure core runs (aiotcp.core)
    length = importlib.import_module(twin("aiotcp.codecs.length"))
    line = importlib.import_module(twin("aiotcp.codecs.line"))
    raw = importlib.import_module(twin("aiotcp.codecs.raw"))

LENGTH_HEADER = length.LENGTH_HEADER
BytesLengthCodec = length.BytesLengthCodec
BytesVarintCodec = length.BytesVarintCodec
LengthCodec = length.LengthCodec
VarintCodec = length.VarintCodec
varint = length.varint
BytesLineCodec = line.BytesLineCodec
LineCodec = line.LineCodec
BytesRawCodec = raw.BytesRawCodec
RawCodec = raw.RawCodec

# A Frame is what ``feed`` returns an item of: a message, or a FrameError in its place.
Frame = Any
AnyCodec = Codec[Any]

# framing -> (text codec, bytes codec)
BUILTIN: dict[str, tuple[CodecFactory, CodecFactory]] = {
    "line": (LineCodec, BytesLineCodec),
    "length": (LengthCodec, BytesLengthCodec),
    "varint": (VarintCodec, BytesVarintCodec),
    "raw": (RawCodec, BytesRawCodec),
}
FRAMINGS = tuple(BUILTIN)


def builtin(framing: str, binary: bool = False) -> CodecFactory:
    """The factory of a built-in framing. Raises ValueError for an unknown one."""
    try:
        text, raw = BUILTIN[framing]
    except KeyError:
        raise ValueError(f"unknown framing {framing!r}") from None
    return raw if binary else text


def imported(spec: str) -> CodecFactory:
    """The codec factory ``spec`` (``module:attr``, as ``--codec``) names.

    Raises CodecError (one line) if it cannot be imported or is not callable.
    """
    from aiotcp.loading import LoadError, import_object

    try:
        factory = import_object(spec, "codec")
    except LoadError as e:
        raise CodecError(str(e)) from None
    if not callable(factory):
        raise CodecError(f"codec {spec} is not a class or factory")
    return factory  # type: ignore[no-any-return]


def make_codec(framing: str, max_frame: int, binary: bool = False) -> AnyCodec:
    """A fresh codec of a built-in framing for one connection."""
    codec: AnyCodec = builtin(framing, binary)(max_frame)
    return codec


__all__ = [
    "AnyCodec", "BUILTIN", "BytesLengthCodec", "BytesLineCodec", "BytesRawCodec", "BytesVarintCodec",
    "Codec", "CodecError", "CodecFactory", "FRAMINGS", "Frame", "FrameError",
    "INVALID_UTF8", "LENGTH_HEADER", "LengthCodec", "LineCodec", "ProtocolError",
    "RawCodec", "VarintCodec", "builtin", "checked_factory", "error_text", "imported", "make_codec",
    "too_long", "varint",
]
