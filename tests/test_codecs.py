"""Codecs are fed every input whole, byte by byte and with trailing bytes, plus properties."""

from __future__ import annotations

import ast
import pathlib
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

import aiotcp.codecs as codecs
from aiotcp.codecs import INVALID_UTF8, LengthCodec, LineCodec, RawCodec, make_codec, too_long

LIMIT = 64


def feed_whole(codec: codecs.Codec, data: bytes) -> list[codecs.Frame]:
    return codec.feed(data)


def feed_bytewise(codec: codecs.Codec, data: bytes) -> list[codecs.Frame]:
    out: list[codecs.Frame] = []
    for i in range(len(data)):
        out.extend(codec.feed(data[i : i + 1]))
    return out


FEEDERS = [feed_whole, feed_bytewise]


def test_codecs_module_imports_no_io() -> None:
    tree = ast.parse(pathlib.Path(codecs.__file__).read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
    assert not imported & {"asyncio", "socket", "selectors", "time", "uvloop", "ssl"}


@pytest.mark.parametrize("feed", FEEDERS)
def test_line_frames_strip_cr_and_keep_empty(feed) -> None:
    data = "你好\nworld\r\n\nlast\n".encode()
    assert feed(LineCodec(LIMIT), data) == ["你好", "world", "", "last"]


@pytest.mark.parametrize("feed", FEEDERS)
def test_line_trailing_partial_is_buffered_not_framed(feed) -> None:
    c = LineCodec(LIMIT)
    assert feed(c, b"one\ntw") == ["one"]
    assert c.pending() == 2
    assert c.feed(b"o\n") == ["two"]
    assert c.pending() == 0


@pytest.mark.parametrize("feed", FEEDERS)
def test_line_only_cr_before_newline_is_stripped(feed) -> None:
    assert feed(LineCodec(LIMIT), b"a\rb\r\r\n") == ["a\rb\r"]


@pytest.mark.parametrize("feed", FEEDERS)
def test_line_invalid_utf8_is_an_error_in_place(feed) -> None:
    c = LineCodec(LIMIT)
    frames = feed(c, b"ok\n\xff\xfe\nafter\n")
    assert frames == ["ok", INVALID_UTF8, "after"]
    assert INVALID_UTF8.fatal is False


def test_line_utf8_split_across_reads_is_one_character() -> None:
    c = LineCodec(LIMIT)
    data = "你\n".encode()
    assert c.feed(data[:1]) == []
    assert c.feed(data[1:]) == ["你"]
    assert c.clean


@pytest.mark.parametrize("feed", FEEDERS)
def test_line_frame_of_exactly_the_limit_is_accepted(feed) -> None:
    assert feed(LineCodec(LIMIT), b"x" * LIMIT + b"\r\n") == ["x" * LIMIT]
    assert feed(LineCodec(LIMIT), b"x" * LIMIT + b"\n") == ["x" * LIMIT]


@pytest.mark.parametrize("feed", FEEDERS)
def test_line_too_long_complete_frame_is_fatal(feed) -> None:
    c = LineCodec(LIMIT)
    frames = feed(c, b"a\n" + b"x" * (LIMIT + 1) + b"\nb\n")
    assert frames == ["a", too_long(LIMIT)]
    assert c.feed(b"later\n") == []  # dead after a fatal error


def test_line_too_long_partial_is_rejected_before_buffering() -> None:
    c = LineCodec(LIMIT)
    assert c.feed(b"x" * (LIMIT + 1)) == []  # could still be LIMIT bytes + "\r\n"
    assert c.feed(b"y") == [too_long(LIMIT)]
    assert c.pending() == 0


def test_line_too_long_partial_after_complete_frames() -> None:
    c = LineCodec(LIMIT)
    assert c.feed(b"ok\n" + b"z" * (LIMIT + 2)) == ["ok", too_long(LIMIT)]


def test_line_clean_flag_tracks_errors() -> None:
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
    c = LineCodec(LIMIT)
    data = b"".join(b"m%03d\n" % i for i in range(100))  # 500 bytes, limit 64
    assert c.feed(data) == [f"m{i:03d}" for i in range(100)]
    assert c.clean


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


@pytest.mark.parametrize("replies", [["two\nlines"], ["ok", "two\nlines", "ok"], ["end\n"]])
def test_line_encode_refuses_a_reply_holding_a_line_break(replies: list[str]) -> None:
    """Written as is, it would be read as two replies and every later reply would pair
    with the wrong request."""
    with pytest.raises(ValueError, match="line break"):
        LineCodec(LIMIT).encode(replies)


def test_line_encode_joins_once() -> None:
    assert LineCodec(LIMIT).encode(["a", "", "你"]) == "a\n\n你\n".encode()


def frame(payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + payload


@pytest.mark.parametrize("feed", FEEDERS)
def test_length_frames(feed) -> None:
    data = frame("你好".encode()) + frame(b"") + frame(b"\n\r\n")
    assert feed(LengthCodec(LIMIT), data) == ["你好", "", "\n\r\n"]


@pytest.mark.parametrize("feed", FEEDERS)
def test_length_trailing_partial_waits(feed) -> None:
    c = LengthCodec(LIMIT)
    assert feed(c, frame(b"one") + frame(b"two")[:5]) == ["one"]
    assert c.feed(frame(b"two")[5:]) == ["two"]


def test_length_header_over_limit_rejected_before_payload() -> None:
    c = LengthCodec(LIMIT)
    assert c.feed(struct.pack(">I", LIMIT + 1)) == [too_long(LIMIT)]
    assert c.pending() == 0


@pytest.mark.parametrize("feed", FEEDERS)
def test_length_invalid_utf8(feed) -> None:
    assert feed(LengthCodec(LIMIT), frame(b"\xff") + frame(b"ok")) == [INVALID_UTF8, "ok"]


def test_length_encode() -> None:
    assert LengthCodec(LIMIT).encode(["ab", "你"]) == frame(b"ab") + frame("你".encode())


def test_raw_each_read_is_a_message() -> None:
    c = RawCodec(LIMIT)
    assert c.feed(b"hello\n") == ["hello\n"]
    assert c.feed(b"a\nb\n") == ["a\nb\n"]


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
    assert c.feed(b"x" * (LIMIT + 1)) == [too_long(LIMIT)]
    assert c.feed(b"more") == []


def test_raw_replies_have_no_terminator_but_errors_are_lines() -> None:
    c = RawCodec(LIMIT)
    assert c.encode(["a", "b"]) == b"ab"
    assert c.error_reply("internal", "x") == "ERR internal x\n"


def test_make_codec_rejects_unknown() -> None:
    with pytest.raises(ValueError):
        make_codec("morse", 10)


# ---- properties: any chunking gives the same frames ---------------------------------

# Any text UTF-8 can carry (no lone surrogates), without the line terminators.
text_chars = st.characters(blacklist_categories=("Cs",), blacklist_characters="\n\r")
messages = st.lists(st.text(alphabet=text_chars, max_size=20), max_size=12)


def chunked(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    out, prev = [], 0
    for p in points + [len(data)]:
        out.append(data[prev:p])
        prev = p
    return out


@given(messages, st.lists(st.integers(min_value=0), max_size=10), st.booleans())
def test_line_any_chunking_same_frames(msgs: list[str], cuts: list[int], crlf: bool) -> None:
    end = "\r\n" if crlf else "\n"
    data = "".join(m + end for m in msgs).encode()
    c = LineCodec(1000)
    got = [f for chunk in chunked(data, cuts) for f in c.feed(chunk)]
    assert got == msgs
    assert c.pending() == 0


@given(messages, st.lists(st.integers(min_value=0), max_size=10), st.binary(max_size=5))
def test_length_any_chunking_same_frames(msgs: list[str], cuts: list[int], tail: bytes) -> None:
    data = b"".join(frame(m.encode()) for m in msgs)
    c = LengthCodec(1000)
    got = [f for chunk in chunked(data, cuts) for f in c.feed(chunk)]
    assert got == msgs
    partial = struct.pack(">I", 50) + tail  # a trailing incomplete frame yields nothing
    assert c.feed(partial) == []


@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=40), st.lists(st.integers(min_value=0), max_size=10))
def test_raw_any_chunking_same_text(text: str, cuts: list[int]) -> None:
    c = RawCodec(1000)
    got = "".join(f for chunk in chunked(text.encode(), cuts) for f in c.feed(chunk))  # type: ignore[misc]
    assert got == text


@given(st.lists(st.binary(max_size=30), max_size=8))
def test_line_never_raises_on_any_bytes(chunks: list[bytes]) -> None:
    c = LineCodec(16)
    for chunk in chunks:
        for f in c.feed(chunk):
            assert isinstance(f, (str, codecs.FrameError))


# ---- the bytes fast path for replies that are prefix + message ----------------------

PREFIX = "已收到: ".encode()


def prefix_or_general(c: LineCodec, chunk: bytes) -> bytes:
    """What the connection does: the fast path, else feed + encode."""
    done = c.prefix_frames(chunk, PREFIX)
    if done is not None:
        return done[0] if done[1] else b""
    frames = c.feed(chunk)
    replies = [PREFIX.decode() + f if isinstance(f, str) else f"ERR {f.code} {f.text}"
               for f in frames]
    return c.encode(replies) if replies else b""


@pytest.mark.parametrize("data, expected", [
    (b"a\n", "已收到: a\n"),
    (b"a\nb\n\n", "已收到: a\n已收到: b\n已收到: \n"),
    ("你好\n".encode(), "已收到: 你好\n"),
])
def test_prefix_frames_answers_plain_frames_on_bytes(data: bytes, expected: str) -> None:
    c = LineCodec(LIMIT)
    assert c.prefix_frames(data, PREFIX) == (expected.encode(), data.count(b"\n"))


@pytest.mark.parametrize("data", [b"a\r\n", b"\xff\n", b"x" * (LIMIT + 1) + b"\n", b"partial"])
def test_prefix_frames_leaves_the_rest_to_the_general_path(data: bytes) -> None:
    c = LineCodec(LIMIT)
    assert c.prefix_frames(data, PREFIX) is None
    assert c.pending() == 0  # consumed nothing


def test_prefix_frames_keeps_a_partial_tail() -> None:
    c = LineCodec(LIMIT)
    assert c.prefix_frames(b"a\nb", PREFIX) == ("已收到: a\n".encode(), 1)
    assert c.pending() == 1
    assert c.prefix_frames(b"c\n", PREFIX) == ("已收到: bc\n".encode(), 1)


@given(st.lists(st.binary(max_size=12).map(lambda b: b.replace(b"\n", b"")), max_size=10),
       st.lists(st.integers(min_value=0), max_size=10), st.booleans())
def test_prefix_path_equals_general_path(msgs: list[bytes], cuts: list[int], crlf: bool) -> None:
    data = b"".join(m + (b"\r\n" if crlf else b"\n") for m in msgs)
    fast, slow = LineCodec(8), LineCodec(8)
    got_fast = b"".join(prefix_or_general(fast, ch) for ch in chunked(data, cuts))
    got_slow = b"".join(prefix_or_general(slow, data[i:i + 1]) for i in range(len(data)))
    general = LineCodec(8)
    frames = general.feed(data)
    replies = [PREFIX.decode() + f if isinstance(f, str) else f"ERR {f.code} {f.text}"
               for f in frames]
    expected = general.encode(replies) if replies else b""
    assert got_fast == got_slow == expected
