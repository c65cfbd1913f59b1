"""The PROXY protocol header (``aiotcp.frontdoor.proxyproto``), v1 and v2.

Asserts, for any bytes: ``feed`` never raises; the verdict (need more, a header with its
addresses and the bytes after it, or a rejection with its reason) is the same whatever
the chunking; while undecided nothing is buffered past the longest header (107 bytes
for v1, 16 + 65535 for v2); a v1 header accepted is at most 107 bytes; a header's
addresses written again by ``encode_v1``/``encode_v2`` read back as the same.
"""

from __future__ import annotations

from typing import Any

from aiotcp.frontdoor import proxyproto as pp
from fuzz.runner import chunkings

V2_MAX = pp.V2_FIXED_LENGTH + 0xFFFF


def verdict(chunks: list[bytes]) -> tuple[Any, bytes]:
    """The parser's verdict for ``chunks`` fed in order, with the bytes after the header
    (``rest`` plus what was not fed once it decided)."""
    parser = pp.ProxyHeaderParser()
    for i, chunk in enumerate(chunks):
        result = parser.feed(chunk)
        if result is None:
            assert parser.buffered <= max(pp.V1_MAX_LENGTH, V2_MAX), parser.buffered
            continue
        after = b"".join(chunks[i + 1 :])
        if isinstance(result, pp.ProxyHeader):
            return (result.version, result.source, result.dest), result.rest + after
        assert isinstance(result, pp.ProxyRejection) and result.reason in pp.REASONS, result
        return result.reason, b""
    return None, b""


def check(data: bytes) -> None:
    whole: tuple[Any, bytes] | None = None
    for chunks in chunkings(data):
        got = verdict(chunks)
        if whole is None:
            whole = got
        assert got == whole, (got, whole, len(chunks))
    assert whole is not None
    (head, rest) = whole
    if not isinstance(head, tuple):
        return
    version, source, dest = head
    assert data.endswith(rest)
    if version == 1:
        assert len(data) - len(rest) <= pp.V1_MAX_LENGTH
    if source is None:
        return
    encode = pp.encode_v1 if version == 1 else pp.encode_v2
    again = pp.ProxyHeaderParser().feed(encode(source, dest) + b"x")
    assert isinstance(again, pp.ProxyHeader), again
    assert (again.version, again.source, again.dest, again.rest) == (version, source, dest, b"x")
