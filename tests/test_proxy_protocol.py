"""The sans-I/O PROXY v1/v2 parser: fed whole, byte by byte, with trailing bytes, and
under any chunking (Hypothesis)."""

from __future__ import annotations

import ast
import itertools
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aiotcp.frontdoor import proxyproto
from aiotcp.frontdoor.proxyproto import (
    BAD_SIGNATURE,
    MALFORMED,
    TOO_LONG,
    ProxyHeader,
    ProxyHeaderParser,
    ProxyRejection,
    ProxyResult,
    encode_v1,
    encode_v2,
)

SRC = ("203.0.113.7", 51234)
DST = ("192.0.2.1", 8888)
SRC6 = ("2001:db8::7", 40000)
DST6 = ("2001:db8::1", 443)
# A v2 TLV (type 0x05 UNIQUE_ID, length 4) that the parser must skip.
TLV = b"\x05\x00\x04abcd"

VALID = {
    "v1-tcp4": (encode_v1(SRC, DST), SRC),
    "v1-tcp6": (encode_v1(SRC6, DST6), SRC6),
    "v1-unknown": (b"PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n", None),
    "v2-inet": (encode_v2(SRC, DST), SRC),
    "v2-inet6": (encode_v2(SRC6, DST6), SRC6),
    "v2-inet-tlv": (encode_v2(SRC, DST, TLV), SRC),
    "v2-local": (encode_v2(None, None), None),
    "v2-local-tlv": (encode_v2(None, None, TLV), None),
}

V2_HEAD = proxyproto.V2_SIGNATURE
INVALID = {
    "http": (b"GET / HTTP/1.1\r\n\r\n", BAD_SIGNATURE),
    "tls-hello": (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", BAD_SIGNATURE),
    "v2-bad-signature": (V2_HEAD[:7] + b"X" + V2_HEAD[8:] + b"\x21\x11\x00\x0c", BAD_SIGNATURE),
    "v1-lowercase": (b"proxy TCP4 1.2.3.4 5.6.7.8 1 2\r\n", BAD_SIGNATURE),
    "v1-too-long": (b"PROXY TCP4 " + b"1" * 120 + b"\r\n", TOO_LONG),
    "v1-lf-only": (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n", MALFORMED),
    "v1-bad-ip": (b"PROXY TCP4 1.2.3.400 5.6.7.8 1 2\r\n", MALFORMED),
    "v1-ip-family": (b"PROXY TCP4 ::1 5.6.7.8 1 2\r\n", MALFORMED),
    "v1-port-range": (b"PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n", MALFORMED),
    "v1-port-zero-padded": (b"PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n", MALFORMED),
    "v1-double-space": (b"PROXY TCP4  1.2.3.4 5.6.7.8 1 2\r\n", MALFORMED),
    "v1-missing-field": (b"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n", MALFORMED),
    "v1-udp": (b"PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n", MALFORMED),
    "v2-version-1": (V2_HEAD + b"\x11\x11\x00\x0c" + bytes(12), MALFORMED),
    "v2-command-2": (V2_HEAD + b"\x22\x11\x00\x0c" + bytes(12), MALFORMED),
    "v2-short-address": (V2_HEAD + b"\x21\x11\x00\x04" + bytes(4), MALFORMED),
    "v2-datagram": (V2_HEAD + b"\x21\x12\x00\x0c" + bytes(12), MALFORMED),
}


def feed_whole(data: bytes) -> ProxyResult | None:
    return ProxyHeaderParser().feed(data)


def feed_bytewise(data: bytes) -> ProxyResult | None:
    parser = ProxyHeaderParser()
    for i in range(len(data)):
        result = parser.feed(data[i : i + 1])
        if result is not None:
            # A verdict comes with the byte that decides it: what followed is unread.
            if isinstance(result, ProxyHeader):
                return ProxyHeader(result.version, result.source, result.dest,
                                   result.rest + data[i + 1 :])
            return result
    return None


def feed_chunks(data: bytes, cuts: list[int]) -> ProxyResult | None:
    parser = ProxyHeaderParser()
    bounds = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    for a, b in itertools.pairwise(bounds):
        result = parser.feed(data[a:b])
        if result is not None:
            if isinstance(result, ProxyHeader):
                return ProxyHeader(result.version, result.source, result.dest,
                                   result.rest + data[b:])
            return result
    return None


FEEDS = [feed_whole, feed_bytewise]


@pytest.mark.parametrize("feed", FEEDS, ids=["whole", "bytewise"])
@pytest.mark.parametrize("name", sorted(VALID))
def test_valid_header(feed, name: str) -> None:
    header, source = VALID[name]
    result = feed(header)
    assert isinstance(result, ProxyHeader), result
    assert result.source == source
    assert result.local == (source is None)
    assert result.rest == b""


@pytest.mark.parametrize("feed", FEEDS, ids=["whole", "bytewise"])
@pytest.mark.parametrize("name", sorted(VALID))
def test_trailing_bytes_pass_through(feed, name: str) -> None:
    header, source = VALID[name]
    app = "你好\nsecond line\n".encode()
    result = feed(header + app)
    assert isinstance(result, ProxyHeader)
    assert result.source == source
    assert result.rest == app


def test_destination_and_version() -> None:
    r1 = feed_whole(encode_v1(SRC6, DST6))
    r2 = feed_whole(encode_v2(SRC, DST, TLV))
    assert isinstance(r1, ProxyHeader) and isinstance(r2, ProxyHeader)
    assert (r1.version, r1.dest) == (1, DST6)
    assert (r2.version, r2.dest) == (2, DST)


@pytest.mark.parametrize("feed", FEEDS, ids=["whole", "bytewise"])
@pytest.mark.parametrize("name", sorted(INVALID))
def test_invalid_header(feed, name: str) -> None:
    data, reason = INVALID[name]
    result = feed(data)
    assert isinstance(result, ProxyRejection), result
    assert result.reason == reason


def test_bad_signature_is_refused_at_its_first_byte() -> None:
    parser = ProxyHeaderParser()
    assert parser.feed(b"PRO") is None
    result = parser.feed(b"Z")
    assert isinstance(result, ProxyRejection) and result.reason == BAD_SIGNATURE


@pytest.mark.parametrize("name", ["v1-tcp4", "v2-inet6", "v2-inet-tlv"])
def test_truncated_header_needs_more(name: str) -> None:
    header, _ = VALID[name]
    parser = ProxyHeaderParser()
    assert parser.feed(header[:-1]) is None
    assert parser.buffered == len(header) - 1


def test_v2_declared_length_waits_for_all_of_it() -> None:
    # A v2 header whose length says 200 bytes: not done until they all arrive (the
    # handshake timeout of the server bounds the wait).
    header = V2_HEAD + b"\x21\x11\x00\xc8" + bytes(12)
    assert feed_whole(header) is None
    assert isinstance(feed_whole(header + bytes(188)), ProxyHeader)


def test_v1_longest_legal_headers() -> None:
    # The spec's worst case, 107 bytes with CRLF: "UNKNOWN" then the longest TCP6 fields.
    src = ("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 65535)
    header = encode_v1(src, src)
    result = feed_whole(header)
    assert isinstance(result, ProxyHeader) and result.source == src
    unknown = header.replace(b"TCP6", b"UNKNOWN")
    assert len(unknown) == proxyproto.V1_MAX_LENGTH
    assert isinstance(feed_bytewise(unknown), ProxyHeader)
    assert feed_whole(unknown[:-2] + b"0\r\n") == ProxyRejection(
        TOO_LONG, f"v1 header over {proxyproto.V1_MAX_LENGTH} bytes"
    )


ALL = [VALID[n][0] for n in sorted(VALID)] + [INVALID[n][0] for n in sorted(INVALID)]


@given(
    data=st.sampled_from(ALL),
    trailing=st.binary(max_size=40),
    cuts=st.lists(st.integers(min_value=0, max_value=400), max_size=12),
)
def test_any_chunking_gives_the_same_verdict(data: bytes, trailing: bytes, cuts: list[int]) -> None:
    whole = feed_whole(data + trailing)
    assert feed_chunks(data + trailing, cuts) == whole


@given(st.binary(max_size=300), st.lists(st.integers(min_value=0, max_value=300), max_size=8))
def test_random_bytes_never_raise_and_chunking_agrees(data: bytes, cuts: list[int]) -> None:
    assert feed_chunks(data, cuts) == feed_whole(data)


def test_parser_imports_no_io() -> None:
    tree = ast.parse(Path(proxyproto.__file__).read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
    assert not imported & {"asyncio", "socket", "ssl", "time", "selectors", "uvloop"}, imported
