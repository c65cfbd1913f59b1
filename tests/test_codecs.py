"""The built-in codecs against the codec contract: every input fed whole, byte by byte
and with trailing bytes, in text and bytes variants, plus properties (any chunking gives
the same frames; no input makes a codec raise anything but ProtocolError)."""

from __future__ import annotations

import ast
import pathlib
import struct
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import aiotcp.codecs as codecs
from aiotcp.codecs import (
    BUILTIN,
    INVALID_UTF8,
    BytesLengthCodec,
    BytesLineCodec,
    BytesRawCodec,
    BytesVarintCodec,
    FrameError,
    LengthCodec,
    LineCodec,
    ProtocolError,
    RawCodec,
    VarintCodec,
    make_codec,
    varint,
)
from aiotcp.config import FRAMINGS

LIMIT = 64
VIOLATION = "violation"  # what a feeder records in place of a ProtocolError


def feed_whole(codec: Any, data: bytes) -> list[Any]:
    return collect(codec, [data])


def feed_bytewise(codec: Any, data: bytes) -> list[Any]:
    return collect(codec, [data[i : i + 1] for i in range(len(data))])


def feed_in_two(codec: Any, data: bytes) -> list[Any]:
    half = len(data) // 2
    return collect(codec, [data[:half], data[half:]])


def collect(codec: Any, chunks: list[bytes]) -> list[Any]:
    """Frames from feeding ``chunks``; a ProtocolError ends the list with its messages
    and (VIOLATION, code), as the connection answers them."""
    out: list[Any] = []
    for chunk in chunks:
        try:
            out.extend(codec.feed(chunk))
        except ProtocolError as e:
            return [*out, *e.messages, (VIOLATION, e.code)]
    return out


FEEDERS = [feed_whole, feed_bytewise, feed_in_two]


def test_the_codecs_package_imports_no_io() -> None:
    for path in pathlib.Path(codecs.__file__).parent.glob("*.py"):
        imported = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                imported.update(a.name.split(".")[0] for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module:
                imported.add(node.module.split(".")[0])
        assert not imported & {"asyncio", "socket", "selectors", "time", "uvloop", "ssl"}, path


def test_the_config_knows_every_builtin_framing() -> None:
    assert FRAMINGS == tuple(BUILTIN)


# ---- framing, fed three ways, text and bytes ---------------------------------------------


def length_frame(payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + payload


def varint_frame(payload: bytes) -> bytes:
    return varint(len(payload)) + payload


def line_frame(payload: bytes) -> bytes:
    return payload + b"\n"


# framing -> (text codec, bytes codec, how a payload is framed)
FRAMED: dict[str, tuple[type, type, Callable[[bytes], bytes]]] = {
    "line": (LineCodec, BytesLineCodec, line_frame),
    "length": (LengthCodec, BytesLengthCodec, length_frame),
    "varint": (VarintCodec, BytesVarintCodec, varint_frame),
}
PAYLOADS = ["你好".encode(), b"", b"x" * LIMIT, b"world"]


@pytest.mark.parametrize("feed", FEEDERS)
@pytest.mark.parametrize("framing", list(FRAMED))
def test_frames_in_order_with_a_trailing_partial_buffered(framing: str, feed: Any) -> None:
    text_codec, bytes_codec, frame = FRAMED[framing]
    data = b"".join(frame(p) for p in PAYLOADS)
    tail = frame(b"more")[:-1]
    text = text_codec(LIMIT)
    assert feed(text, data + tail) == [p.decode() for p in PAYLOADS]
    assert text.pending() == len(tail)
    raw = bytes_codec(LIMIT)
    assert feed(raw, data + tail) == PAYLOADS
    assert raw.feed(frame(b"more")[-1:]) == [b"more"]


@pytest.mark.parametrize("feed", FEEDERS)
@pytest.mark.parametrize("framing", list(FRAMED))
def test_invalid_utf8_is_an_error_in_place_and_bytes_take_it(framing: str, feed: Any) -> None:
    text_codec, bytes_codec, frame = FRAMED[framing]
    data = frame(b"ok") + frame(b"\xff\xfe") + frame(b"after")
    assert feed(text_codec(LIMIT), data) == ["ok", INVALID_UTF8, "after"]
    assert feed(bytes_codec(LIMIT), data) == [b"ok", b"\xff\xfe", b"after"]


@pytest.mark.parametrize("feed", FEEDERS)
@pytest.mark.parametrize("binary", [False, True])
@pytest.mark.parametrize("framing", list(FRAMED))
def test_a_frame_over_the_limit_is_a_violation_after_the_frames_before_it(
    framing: str, binary: bool, feed: Any
) -> None:
    text_codec, bytes_codec, frame = FRAMED[framing]
    codec = (bytes_codec if binary else text_codec)(LIMIT)
    data = frame(b"a") + frame(b"x" * (LIMIT + 1)) + frame(b"b")
    first = b"a" if binary else "a"
    assert feed(codec, data) == [first, (VIOLATION, "too-long")]


@pytest.mark.parametrize("framing", list(FRAMED))
def test_the_limit_is_checked_before_buffering(framing: str) -> None:
    """A header announcing too much, or a line already too long, is refused at once."""
    codec = FRAMED[framing][0](LIMIT)
    start = {"line": b"x" * (LIMIT + 2), "length": struct.pack(">I", LIMIT + 1),
             "varint": varint(LIMIT + 1)}[framing]
    with pytest.raises(ProtocolError) as e:
        codec.feed(start)
    assert e.value.code == "too-long" and e.value.messages == []
    assert codec.pending() == 0


def test_line_strips_cr_and_keeps_empty_lines() -> None:
    assert LineCodec(LIMIT).feed("你好\nworld\r\n\nlast\n".encode()) == ["你好", "world", "", "last"]
    assert BytesLineCodec(LIMIT).feed(b"a\r\n\r\n") == [b"a", b""]
    assert LineCodec(LIMIT).feed(b"a\rb\r\r\n") == ["a\rb\r"]  # only the last \r goes


def test_line_of_exactly_the_limit_is_a_message() -> None:
    assert LineCodec(LIMIT).feed(b"x" * LIMIT + b"\r\n") == ["x" * LIMIT]
    c = LineCodec(LIMIT)
    assert c.feed(b"x" * (LIMIT + 1)) == []  # could still be LIMIT bytes + "\r\n"
    with pytest.raises(ProtocolError):
        c.feed(b"y")


def test_line_utf8_split_across_reads_is_one_character() -> None:
    c = LineCodec(LIMIT)
    data = "你\n".encode()
    assert c.feed(data[:1]) == []
    assert c.feed(data[1:]) == ["你"]
    assert c.clean


def test_the_clean_flag_tracks_errors_feed_by_feed() -> None:
    c = LineCodec(LIMIT)
    c.feed(b"a\n")
    assert c.clean
    c.feed(b"\xff\n")
    assert not c.clean
    c.feed(b"b\n")
    assert c.clean


def test_a_pipelined_read_longer_than_the_limit_with_no_error_is_clean() -> None:
    """A read holding more than max_frame bytes of valid frames is framed on the slow
    path but has no error: the connection must not answer it frame by frame."""
    for codec in (LineCodec(LIMIT), BytesLineCodec(LIMIT)):
        data = b"".join(b"m%03d\n" % i for i in range(100))  # 500 bytes, limit 64
        assert len(codec.feed(data)) == 100
        assert codec.clean


def test_a_long_partial_line_is_appended_to_not_copied_per_read() -> None:
    """Trickling a long line in small reads costs linear time: the partial line is
    appended to one buffer in place (a copy of the whole buffer per read is quadratic:
    seconds of CPU for a 1 MiB line in 16-byte pieces)."""
    c = LineCodec(1 << 20)
    c.feed(b"x" * 16)
    buf = c._buf
    for _ in range(1000):
        c.feed(b"x" * 16)
    assert c._buf is buf and len(buf) == 16 * 1001
    assert c.feed(b"\n") == ["x" * 16 * 1001]


def test_varint_lengths_and_a_varint_over_ten_bytes() -> None:
    assert [varint(n) for n in (0, 1, 127, 128, 300, 16384)] == [
        b"\x00", b"\x01", b"\x7f", b"\x80\x01", b"\xac\x02", b"\x80\x80\x01"]
    big = BytesVarintCodec(1 << 20)
    payload = b"p" * 300
    assert big.feed(varint_frame(payload)) == [payload]
    with pytest.raises(ProtocolError) as e:
        VarintCodec(1 << 62).feed(b"\x80" * 11)
    assert e.value.code == "bad-length"


# ---- encoding ------------------------------------------------------------------------------


@pytest.mark.parametrize("replies", [["two\nlines"], ["ok", "two\nlines", "ok"], ["end\n"]])
def test_line_encode_refuses_a_reply_holding_a_line_break(replies: list[str]) -> None:
    """Written as is, it would be read as two replies and every later reply would pair
    with the wrong request."""
    with pytest.raises(ValueError, match="line break"):
        LineCodec(LIMIT).encode(replies)
    with pytest.raises(ValueError, match="line break"):
        BytesLineCodec(LIMIT).encode([r.encode() for r in replies])


@pytest.mark.parametrize("framing", list(FRAMED))
def test_encode_frames_replies_alike_and_refuses_the_wrong_type(framing: str) -> None:
    text_codec, bytes_codec, frame = FRAMED[framing]
    assert text_codec(LIMIT).encode(["ab", "你"]) == frame(b"ab") + frame("你".encode())
    assert bytes_codec(LIMIT).encode([b"ab", bytearray(b"c"), memoryview(b"d")]) == (
        frame(b"ab") + frame(b"c") + frame(b"d"))
    for codec, wrong in ((text_codec(LIMIT), b"bytes"), (bytes_codec(LIMIT), 5),
                         (bytes_codec(LIMIT), "str"), (text_codec(LIMIT), None)):
        with pytest.raises((TypeError, ValueError, AttributeError)):
            codec.encode([wrong])


def test_error_replies_are_err_lines_in_each_framing() -> None:
    assert LineCodec(LIMIT).error_reply("busy", "x") == "ERR busy x"
    assert BytesLengthCodec(LIMIT).error_reply("busy", "x") == b"ERR busy x"
    assert RawCodec(LIMIT).error_reply("internal", "x") == "ERR internal x\n"
    assert BytesRawCodec(LIMIT).error_reply("internal", "x") == b"ERR internal x\n"


# ---- raw -----------------------------------------------------------------------------------


def test_raw_each_read_is_a_message() -> None:
    c = RawCodec(LIMIT)
    assert c.feed(b"hello\n") == ["hello\n"]
    assert c.feed(b"a\nb\n") == ["a\nb\n"]
    assert BytesRawCodec(LIMIT).feed(b"\xff\x00") == [b"\xff\x00"]


def test_raw_character_split_across_reads_is_never_broken() -> None:
    c = RawCodec(LIMIT)
    data = "你好".encode()
    assert c.feed(data[:2]) == []
    assert c.pending() == 2
    assert c.feed(data[2:4]) == ["你"]
    assert c.feed(data[4:]) == ["好"]


def test_raw_invalid_utf8_and_too_long() -> None:
    c = RawCodec(LIMIT)
    assert c.feed(b"\xff") == [INVALID_UTF8]
    assert c.feed(b"ok") == ["ok"]
    for codec in (c, BytesRawCodec(LIMIT)):
        with pytest.raises(ProtocolError):
            codec.feed(b"x" * (LIMIT + 1))


def test_raw_replies_have_no_terminator() -> None:
    assert RawCodec(LIMIT).encode(["a", "b"]) == b"ab"
    assert BytesRawCodec(LIMIT).encode([b"a", b"b"]) == b"ab"


def test_make_codec_rejects_unknown() -> None:
    with pytest.raises(ValueError):
        make_codec("morse", 10)


# ---- properties ----------------------------------------------------------------------------

# Any text UTF-8 can carry (no lone surrogates), without the line terminators.
text_chars = st.characters(blacklist_categories=("Cs",), blacklist_characters="\n\r")
messages = st.lists(st.text(alphabet=text_chars, max_size=20), max_size=12)
cuts_st = st.lists(st.integers(min_value=0), max_size=10)


def chunked(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    out, prev = [], 0
    for p in points + [len(data)]:
        out.append(data[prev:p])
        prev = p
    return out


@given(messages, cuts_st, st.sampled_from(list(FRAMED)), st.booleans())
def test_any_chunking_gives_the_same_frames(
    msgs: list[str], cuts: list[int], framing: str, binary: bool
) -> None:
    text_codec, bytes_codec, frame = FRAMED[framing]
    data = b"".join(frame(m.encode()) for m in msgs)
    c = (bytes_codec if binary else text_codec)(1000)
    got = collect(c, chunked(data, cuts))
    assert got == ([m.encode() for m in msgs] if binary else msgs)
    assert c.pending() == 0


@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=40), cuts_st)
def test_raw_any_chunking_same_text(text: str, cuts: list[int]) -> None:
    c = RawCodec(1000)
    got = "".join(f for chunk in chunked(text.encode(), cuts) for f in c.feed(chunk))
    assert got == text


@given(st.lists(st.binary(max_size=30), max_size=8), st.sampled_from(sorted(BUILTIN)),
       st.booleans())
def test_no_bytes_make_a_codec_raise_but_protocol_error(
    chunks: list[bytes], framing: str, binary: bool
) -> None:
    c = make_codec(framing, 16, binary)
    for frame in collect(c, chunks):
        assert isinstance(frame, (str, bytes, FrameError, tuple))


# ---- the bytes fast path for replies that are prefix + message ----------------------

PREFIX = "已收到: ".encode()
SEP = b"\n" + PREFIX


def prefix_or_general(c: Any, chunk: bytes) -> bytes:
    """What the connection does: the fast path, else feed + encode."""
    done = c.prefix_frames(chunk, PREFIX, SEP)
    if done is not None:
        return done[0] if done[1] else b""
    frames = collect(c, [chunk])
    replies = [PREFIX.decode() + f if isinstance(f, str) else
               f"ERR {f.code} {f.text}" if isinstance(f, FrameError) else f"ERR {f[1]}"
               for f in frames]
    return LineCodec(LIMIT).encode(replies) if replies else b""


@pytest.mark.parametrize("data, expected", [
    (b"a\n", "已收到: a\n"),
    (b"a\nb\n\n", "已收到: a\n已收到: b\n已收到: \n"),
    ("你好\n".encode(), "已收到: 你好\n"),
])
def test_prefix_frames_answers_plain_frames_on_bytes(data: bytes, expected: str) -> None:
    c = LineCodec(LIMIT)
    assert c.prefix_frames(data, PREFIX, SEP) == (expected.encode(), data.count(b"\n"))


@pytest.mark.parametrize("data", [b"a\r\n", b"\xff\n", b"x" * (LIMIT + 1) + b"\n", b"partial"])
def test_prefix_frames_leaves_the_rest_to_the_general_path(data: bytes) -> None:
    c = LineCodec(LIMIT)
    assert c.prefix_frames(data, PREFIX, SEP) is None
    assert c.pending() == 0  # consumed nothing


def test_prefix_frames_keeps_a_partial_tail() -> None:
    c = LineCodec(LIMIT)
    assert c.prefix_frames(b"a\nb", PREFIX, SEP) == ("已收到: a\n".encode(), 1)
    assert c.pending() == 1
    assert c.prefix_frames(b"c\n", PREFIX, SEP) == ("已收到: bc\n".encode(), 1)


@given(st.lists(st.binary(max_size=12).map(lambda b: b.replace(b"\n", b"")), max_size=10),
       cuts_st, st.booleans())
def test_prefix_path_equals_general_path(msgs: list[bytes], cuts: list[int], crlf: bool) -> None:
    data = b"".join(m + (b"\r\n" if crlf else b"\n") for m in msgs)
    fast, slow = LineCodec(8), LineCodec(8)
    got_fast = b"".join(prefix_or_general(fast, ch) for ch in chunked(data, cuts))
    got_slow = b"".join(prefix_or_general(slow, data[i:i + 1]) for i in range(len(data)))
    expected = prefix_or_general(LineCodec(8), data)
    # After a violation the connection reads no more: compare up to the first one.
    cut = [g.split(b"ERR too-long")[0] for g in (got_fast, got_slow, expected)]
    assert cut[0] == cut[1] == cut[2]
