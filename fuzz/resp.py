"""The RESP codec (``aiotcp.resp.codec``): multibulk and inline commands (``resp.inline``).

Asserts, for any bytes: the same commands, and whether a violation ends the stream,
whatever the chunking (the violation's words may name the first limit met); only
ProtocolError ``protocol`` escapes; no argument passes ``max_bulk`` (an inline one,
``max_frame``) and a multibulk command holds at most ``max_command`` bytes; what stays
buffered is at most the longest line (``max_frame``) or the rest of one argument, plus
the arguments of the command being read (``pending() <= max(max_frame, max_bulk + 1) +
max_command``); every command read, written as a client writes it (a multibulk array of
bulk strings), reads back as itself, and its arguments quoted inline (``"\\xHH..."``)
split back into themselves.
"""

from __future__ import annotations

from typing import Any

from aiotcp.resp.codec import PER_ARG_OVERHEAD, PROTOCOL_ERROR, RespCodec, encode_reply
from aiotcp.resp.inline import split_args
from fuzz.runner import chunkings, feed_all

MAX_FRAME = 64
MAX_BULK = 256
MAX_COMMAND = 1024


def make() -> RespCodec:
    return RespCodec(MAX_FRAME, max_bulk=MAX_BULK, max_command=MAX_COMMAND)


def _bounded(codec: Any) -> None:
    assert codec.pending() <= max(MAX_FRAME, MAX_BULK + 1) + MAX_COMMAND, codec.pending()


def check(data: bytes) -> None:
    # The chunking must not change the commands or whether the stream fails; the
    # violation's words may differ (a header refused as too long before its end came).
    outcomes = [feed_all(make(), chunks, _bounded) for chunks in chunkings(data)]
    commands = outcomes[0][0]
    for got, err in outcomes:
        assert err in (None, PROTOCOL_ERROR), err
        assert (got, err is None) == (commands, outcomes[0][1] is None), (got, outcomes[0])
    for cmd in commands:
        assert type(cmd) is list and cmd and all(type(a) is bytes for a in cmd), cmd
        assert all(len(a) <= max(MAX_BULK, MAX_FRAME) for a in cmd), [len(a) for a in cmd]
        wire = encode_reply(cmd)
        if sum(len(a) + PER_ARG_OVERHEAD for a in cmd) <= MAX_COMMAND:
            assert make().feed(wire) == [cmd], (wire, cmd)
        quoted = b" ".join(b'"' + b"".join(b"\\x%02x" % c for c in a) + b'"' for a in cmd)
        assert split_args(quoted) == cmd, (quoted, cmd)
