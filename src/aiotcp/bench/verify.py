"""What the load generator sends and how it checks every reply, without parsing per message.

Every message of a run has the same size, and the messages cycle through a fixed set of
``distinct`` numbered payloads, so the whole byte stream a connection sends, and the whole
byte stream a correct server sends back, are known in advance. Checking replies is then one
``bytes.startswith(data, offset)`` (a memcmp) per read instead of a split and a compare per
message, and the number of replies completed is ``bytes received // reply length``.

Two verify modes:

* ``strict`` (line and length framing): the reply stream must equal, byte for byte, the
  stream of ``frame(prefix + message)`` in send order. This checks count, order and content.
* ``loose`` (raw framing, and the article's seed server, which replies to each ``read(100)``
  rather than to each line): reads may coalesce or split messages, so the server's reply
  stream is ``prefix + <some bytes>`` repeated. The verifier deletes every occurrence of the
  prefix and requires what is left to equal the sent stream; a message counts as acked once
  all of its bytes came back. This checks content and order of bytes, not reply boundaries.
  It assumes the message bytes never contain the prefix (they are ASCII; the default prefix
  is not).
"""

from __future__ import annotations

import struct
from typing import Literal

from aiotcp.codecs.length import varint

Framing = Literal["line", "length", "varint", "raw"]
VerifyMode = Literal["strict", "loose"]

_PAD = b"abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"


class VerifyError(Exception):
    """A reply differed from what a correct server sends; ``str()`` says where and how."""


def make_message(index: int, size: int) -> bytes:
    """Return message ``index`` of exactly ``size`` ASCII bytes (no ``\\n``/``\\r``)."""
    head = str(index).encode() + b"-"
    body = (head + _PAD * (size // len(_PAD) + 1))[:size]
    return body


def frame(payload: bytes, framing: Framing) -> bytes:
    """Return ``payload`` framed for the wire: ``line`` adds ``\\n``, ``length`` a 4-byte length."""
    if framing == "line":
        return payload + b"\n"
    if framing == "length":
        return struct.pack(">I", len(payload)) + payload
    if framing == "varint":  # protobuf's delimited format
        return varint(len(payload)) + payload
    return payload


class Pattern:
    """The cyclic send stream and expected reply stream shared by all connections of a run."""

    __slots__ = (
        "_send2",
        "distinct",
        "framing",
        "prefix",
        "reply_cycle",
        "reply_len",
        "send_cycle",
        "size",
        "wire_len",
    )

    def __init__(self, framing: Framing, size: int, prefix: bytes, distinct: int = 256) -> None:
        if framing == "raw" and size < 1:
            raise ValueError("raw framing needs --size >= 1")
        self.framing = framing
        self.size = size
        self.prefix = prefix
        self.distinct = max(2, distinct)
        messages = [make_message(i, size) for i in range(self.distinct)]
        wire = [frame(m, framing) for m in messages]
        self.wire_len = len(wire[0])
        self.send_cycle = b"".join(wire)
        self._send2 = self.send_cycle * 2
        reply_framing: Framing = framing
        self.reply_cycle = b"".join(frame(prefix + m, reply_framing) for m in messages)
        self.reply_len = len(self.reply_cycle) // self.distinct

    def batch(self, first: int, count: int) -> bytes:
        """Return the wire bytes of messages ``first .. first+count-1`` (``count <= distinct``)."""
        start = (first % self.distinct) * self.wire_len
        return self._send2[start : start + count * self.wire_len]


def _check_cyclic(cycle: bytes, offset: int, data: bytes) -> int:
    """Return the byte index in ``data`` of the first mismatch against ``cycle`` from ``offset``, or -1."""
    if cycle.startswith(data, offset):
        return -1
    length = len(cycle)
    pos = 0
    while pos < len(data):
        take = min(len(data) - pos, length - offset)
        chunk = data[pos : pos + take]
        if not cycle.startswith(chunk, offset):
            for i in range(take):
                if chunk[i] != cycle[offset + i]:
                    return pos + i
        pos += take
        offset = (offset + take) % length
    return -1


def _describe(data: bytes, bad: int, expected: bytes, exp_at: int, unit: int, done: int) -> str:
    index = done + bad // unit if unit else done
    got = data[max(0, bad - 20) : bad + 40]
    want = (expected * 2)[exp_at : exp_at + 60]
    err = ""
    at = data.find(b"ERR ")
    if at >= 0:
        err = " server said " + data[
            at : data.find(b"\n", at) if b"\n" in data[at:] else at + 80
        ].decode(errors="replace")
    return f"reply mismatch near message {index}: got {got!r}, expected {want!r}{err}"


class StrictVerifier:
    """Checks a reply stream against ``pattern.reply_cycle`` byte for byte."""

    __slots__ = ("pattern", "received")

    def __init__(self, pattern: Pattern) -> None:
        self.pattern = pattern
        self.received = 0

    def feed(self, data: bytes) -> int:
        """Consume ``data``; return how many more replies are now complete. Raise VerifyError."""
        p = self.pattern
        cycle = p.reply_cycle
        offset = self.received % len(cycle)
        bad = _check_cyclic(cycle, offset, data)
        if bad >= 0:
            raise VerifyError(
                _describe(
                    data,
                    bad,
                    cycle,
                    (offset + bad - min(bad, 20)) % len(cycle),
                    p.reply_len,
                    self.received // p.reply_len,
                )
            )
        before = self.received // p.reply_len
        self.received += len(data)
        return self.received // p.reply_len - before


class LooseVerifier:
    """Deletes every ``prefix`` from the reply stream; the rest must equal the sent stream."""

    __slots__ = ("carry", "pattern", "prefix", "received")

    def __init__(self, pattern: Pattern) -> None:
        self.pattern = pattern
        self.prefix = pattern.prefix
        self.received = 0  # content bytes (prefixes removed) matched so far
        self.carry = b""  # a possible partial prefix at the end of the last read

    def feed(self, data: bytes) -> int:
        """Consume ``data``; return how many more messages came back complete. Raise VerifyError."""
        buf = self.carry + data if self.carry else data
        prefix = self.prefix
        parts = buf.split(prefix) if prefix else [buf]
        last = parts[-1]
        keep = 0
        for k in range(min(len(prefix) - 1, len(last)), 0, -1):
            if last.endswith(prefix[:k]):
                keep = k
                break
        if keep:
            parts[-1] = last[:-keep]
            self.carry = last[-keep:]
        else:
            self.carry = b""
        content = b"".join(parts)
        p = self.pattern
        cycle = p.send_cycle
        offset = self.received % len(cycle)
        bad = _check_cyclic(cycle, offset, content)
        if bad >= 0:
            raise VerifyError(
                _describe(
                    content,
                    bad,
                    cycle,
                    (offset + bad - min(bad, 20)) % len(cycle),
                    p.wire_len,
                    self.received // p.wire_len,
                ).replace("got", "got (prefixes removed)", 1)
            )
        before = self.received // p.wire_len
        self.received += len(content)
        return self.received // p.wire_len - before


def make_verifier(pattern: Pattern, mode: VerifyMode) -> StrictVerifier | LooseVerifier:
    """Return a fresh per-connection verifier for ``mode``."""
    return StrictVerifier(pattern) if mode == "strict" else LooseVerifier(pattern)
