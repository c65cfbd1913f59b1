"""The Redis protocol (RESP2 and RESP3) as an aiotcp codec: commands in, replies out.

Sans-I/O like every codec (``aiotcp.codecs.contract``): no asyncio, no sockets, no
clocks. ``feed(data)`` returns the complete commands ``data`` finishes, each a list of
``bytes`` arguments (the command name first); both request forms Redis reads are read:

- multibulk, what every client library sends: ``*2\\r\\n$3\\r\\nGET\\r\\n$1\\r\\na\\r\\n``;
- inline, what telnet and ``nc`` send: ``GET a\\r\\n``, with Redis's quoting rules
  (``SET k "a b\\n"``, ``'it''s'`` is two arguments...).

A violation raises :class:`~aiotcp.ProtocolError` with Redis's own words
(``-ERR Protocol error: invalid bulk length``), after which the server writes that
reply and closes the connection, as Redis does. Every length is checked when its header
arrives, before anything it announces is buffered (see the limits below).

``encode(replies)`` maps Python values to RESP types, for the protocol the connection
speaks (2 until ``HELLO 3`` sets :attr:`RespCodec.protocol` to 3):

==========================  ==============================  ======================
reply                       RESP2                           RESP3
==========================  ==============================  ======================
``bytes``, ``str``           bulk string ``$3\\r\\nabc``        the same
``Simple("OK")``             simple string ``+OK``            the same
``int``                      integer ``:1``                   the same
``bool``                     integer ``:1`` / ``:0``          boolean ``#t`` / ``#f``
``None``, ``NULL``           null bulk ``$-1``                null ``_``
``NULL_ARRAY``               null array ``*-1``               null ``_``
``float``                    bulk string ``$3\\r\\n1.5``       double ``,1.5``
``list``, ``tuple``          array ``*N``                     the same
``dict``                     flat array of key, value...     map ``%N``
``set``, ``frozenset``       array                           set ``~N``
``RespError("ERR ...")``     error ``-ERR ...``               the same
``Encoded(b"...")``          written as it is                the same
==========================  ==============================  ======================

A reply of another type raises TypeError: the server then writes its internal error in
that reply's place (``-ERR internal handler failed``), and the client keeps its place.
"""

from __future__ import annotations

import math
from typing import Any

from aiotcp.codecs.contract import Codec, ProtocolError
from aiotcp.resp.inline import split_args
from aiotcp.resp.values import NULL, NULL_ARRAY, OK, Encoded, RespError, Simple

__all__ = [
    "MAX_BULK_LEN", "MAX_COMMAND_BYTES", "MAX_INLINE", "MAX_MULTIBULK_LEN",
    "PER_ARG_OVERHEAD", "PROTOCOL_ERROR", "RespCodec", "encode_reply", "string2ll",
]

# ---- limits (each checked when its header arrives, before what it announces is read) --

# Arguments of one command at most. Redis 6 refused more than 1024*1024 (Redis 7 allows
# INT_MAX to authenticated clients); a command with a million arguments is already
# hostile or broken for a service like this one.
MAX_MULTIBULK_LEN = 1024 * 1024
# Bytes of one argument at most. Redis's proto-max-bulk-len is 512 MB: one client could
# make the server hold half a gigabyte before a single command runs. A test or demo
# service shares its machine; 16 MiB is 32 times redis-benchmark's largest value size
# (-d 512 KB) and still bounds a hostile client to what a small box can afford.
MAX_BULK_LEN = 16 * 1024 * 1024
# Bytes one incomplete command may hold in all, arguments plus PER_ARG_OVERHEAD each
# (what a Python bytes object and its list slot cost): Redis's client-query-buffer-limit
# is 1 GB; here 64 MiB, so a million tiny arguments are refused as surely as one huge one.
MAX_COMMAND_BYTES = 64 * 1024 * 1024
PER_ARG_OVERHEAD = 48
# A line without its end (an inline command, a count or length header) longer than this
# is refused: Redis's PROTO_INLINE_MAX_SIZE. The server passes its --max-line instead
# (65536 by default: the same).
MAX_INLINE = 64 * 1024

# The ProtocolError code of every violation (aiotcp_errors_total{code="protocol"}).
PROTOCOL_ERROR = "protocol"

_INT64_MAX = 2**63 - 1


def string2ll(s: bytes) -> int | None:
    """``s`` as a 64-bit signed integer written as Redis's string2ll accepts it (no sign
    but '-', no leading zero, no space), or None."""
    neg = s[:1] == b"-"
    digits = s[1:] if neg else s
    # More than 19 digits is past int64 (and past 4300, int() itself refuses: ValueError).
    if not digits.isdigit() or len(digits) > 19 or (digits[0] == 48 and (neg or len(digits) > 1)):
        return None
    value = -int(digits) if neg else int(digits)
    if not -_INT64_MAX - 1 <= value <= _INT64_MAX:
        return None
    return value


# The usual read: whole multibulk commands of short arguments. Headers up to these are
# looked up in a table (one C call per header for all of a command's arguments); any
# other header, or an argument holding "\r\n", takes the general parser.
FAST_COUNTS = 64
FAST_LENGTH = 1024
_COUNTS = {b"*%d" % i: i for i in range(1, FAST_COUNTS + 1)}
_HEADER = [b"$%d" % i for i in range(FAST_LENGTH + 1)]  # length -> its header


def _whole_commands(data: bytes) -> list[list[bytes]] | None:
    """The commands of ``data`` if it is whole commands whose counts and lengths are all
    within the tables above (each length checked against its argument); else None."""
    toks = data.split(b"\r\n")
    ntok = len(toks) - 1  # the last is the b"" after the final "\r\n"
    counts = _COUNTS.get
    header = _HEADER.__getitem__
    # A pipeline of commands with the same number of arguments (redis-benchmark's, and
    # most real pipelines): every check is one C call over all the commands at once (an
    # argument's header is compared with the one its length makes, no hashing).
    first = toks[0]
    k = counts(first)
    if k is None:
        return None
    per = 2 * k + 1
    n = ntok // per
    if n > 1 and n * per == ntok and toks[0:ntok:per].count(first) == n:
        cols = []
        try:
            for j in range(1, per, 2):
                col = toks[j + 1 : ntok : per]
                if list(map(header, map(len, col))) != toks[j:ntok:per]:
                    break
                cols.append(col)
            else:
                return list(map(list, zip(*cols)))
        except IndexError:  # an argument longer than the table: the general parser
            return None
    out: list[list[bytes]] = []
    i = 0
    while i < ntok:
        count = counts(toks[i])
        if count is None:
            return None
        j = i + 1 + 2 * count
        if j > ntok:
            return None
        args = toks[i + 2 : j : 2]
        try:
            if list(map(header, map(len, args))) != toks[i + 1 : j : 2]:
                return None
        except IndexError:
            return None
        out.append(args)
        i = j
    return out


def _violation(text: str, done: list[Any]) -> ProtocolError:
    return ProtocolError(PROTOCOL_ERROR, text, done)


class RespCodec(Codec[list[bytes]]):
    """One connection's RESP: see the module doc.

    ``RespCodec(max_frame)`` is what the server makes (``max_frame``: ``--max-line``,
    the longest line without its end); ``max_bulk`` and ``max_command`` bound an
    argument and a whole command (``functools.partial(RespCodec, max_bulk=...)`` as the
    app's codec changes them). ``protocol`` is 2 or 3 (set by ``HELLO``).
    """

    __slots__ = (
        "_buf", "_need", "_args", "_left", "_bulk", "_size",
        "max_frame", "max_bulk", "max_command", "protocol",
    )

    clean = True  # every violation is fatal: no FrameError in feed's lists

    def __init__(self, max_frame: int = MAX_INLINE, max_bulk: int = MAX_BULK_LEN,
                 max_command: int = MAX_COMMAND_BYTES) -> None:
        self._buf = bytearray()  # unparsed input, only between reads
        self._need = 0  # bytes _buf must hold before parsing again is worth it
        self._args: list[bytes] = []  # the arguments of the command being read
        self._left = 0  # its arguments still to read (0: between commands)
        self._bulk = -1  # the length of the argument being read (-1: its header next)
        self._size = 0  # bytes the command being read holds so far
        self.max_frame = max_frame
        self.max_bulk = max_bulk
        self.max_command = max_command
        self.protocol = 2

    # ---- decoding --------------------------------------------------------------------

    def feed(self, data: bytes) -> list[list[bytes]]:  # type: ignore[override]
        """The commands ``data`` completes. Raises ProtocolError (the commands before
        the violation in its ``messages``) on input Redis would refuse."""
        buf = self._buf
        if buf:
            buf += data
            if len(buf) < self._need:  # the rest of a long argument is still arriving
                return []
            data = bytes(buf)
            buf.clear()
        elif not self._left and data[:1] == b"*" and data[-2:] == b"\r\n":
            fast = _whole_commands(data)
            if fast is not None:
                return fast
        out: list[list[bytes]] = []
        n = len(data)
        pos = 0
        args = self._args
        left = self._left
        bulk = self._bulk
        try:
            while True:
                if not left:
                    if pos >= n:
                        break
                    if data[pos] != 42:  # not "*": an inline command
                        end = self._inline(data, pos, out)
                        if end < 0:
                            break
                        pos = end
                        continue
                    nl = data.find(b"\r", pos)
                    if nl < 0 or nl + 1 >= n:
                        if n - pos > self.max_frame:
                            raise _violation("too big mbulk count string", out)
                        break
                    s = data[pos + 1 : nl]
                    if s.isdigit() and s[0] != 48 and nl - pos < 9:  # 1..9999999: the usual
                        count = int(s)
                    else:
                        count = string2ll(s)  # type: ignore[assignment]
                        if count is None:
                            raise _violation("invalid multibulk length", out)
                    if count > MAX_MULTIBULK_LEN:
                        raise _violation("invalid multibulk length", out)
                    pos = nl + 2
                    if count <= 0:  # "*0" and "*-1" are no command: Redis skips them
                        continue
                    left = count
                    args = []
                    bulk = -1
                    self._size = 0
                if bulk < 0:
                    if pos >= n:
                        break
                    nl = data.find(b"\r", pos)
                    if nl < 0 or nl + 1 >= n:
                        if n - pos > self.max_frame:
                            raise _violation("too big bulk count string", out)
                        break
                    if data[pos] != 36:  # "$"
                        raise _violation(f"expected '$', got '{chr(data[pos])}'", out)
                    s = data[pos + 1 : nl]
                    if s.isdigit() and (s[0] != 48 or nl - pos == 2) and nl - pos < 11:
                        bulk = int(s)
                    else:
                        got = string2ll(s)
                        if got is None or got < 0:
                            raise _violation("invalid bulk length", out)
                        bulk = got
                    if bulk > self.max_bulk:
                        raise _violation("invalid bulk length", out)
                    size = self._size + bulk + PER_ARG_OVERHEAD
                    if size > self.max_command:
                        raise _violation(
                            f"command exceeds {self.max_command} bytes", out)
                    self._size = size
                    pos = nl + 2
                end = pos + bulk
                if end + 2 > n:
                    break
                args.append(data[pos:end])
                pos = end + 2  # Redis skips the two bytes after a bulk unread, as here
                bulk = -1
                left -= 1
                if not left:
                    out.append(args)
        except ProtocolError:
            self._reset()
            raise
        self._args = args
        self._left = left
        self._bulk = bulk
        if pos < n:
            self._buf = bytearray(memoryview(data)[pos:])
            self._need = bulk + 2 if left and bulk >= 0 else n - pos + 1
        return out

    def _inline(self, data: bytes, pos: int, out: list[list[bytes]]) -> int:
        """Read the inline command at ``pos`` into ``out``: the position after it, or
        -1 if its line has not ended yet."""
        nl = data.find(b"\n", pos)
        if nl < 0:
            if len(data) - pos > self.max_frame:
                raise _violation("too big inline request", out)
            return -1
        if nl - pos > self.max_frame:
            raise _violation("too big inline request", out)
        line = data[pos:nl]
        if line.endswith(b"\r"):
            line = line[:-1]
        args = split_args(line)
        if args is None:
            raise _violation("unbalanced quotes in request", out)
        if args:  # an empty line is no command (Redis skips it)
            out.append(args)
        return nl + 1

    def _reset(self) -> None:
        self._buf = bytearray()
        self._args = []
        self._left = 0
        self._bulk = -1
        self._size = 0
        self._need = 0

    def pending(self) -> int:
        """Bytes held towards the incomplete command (buffered, and its arguments)."""
        return len(self._buf) + (self._size if self._left else 0)

    # ---- encoding --------------------------------------------------------------------

    def encode(self, replies: list[Any]) -> bytes:
        """One write for ``replies``. Raises TypeError for a value RESP has no type for,
        ValueError for a simple string holding a line break."""
        resp3 = self.protocol == 3
        parts: list[bytes] = []
        append = parts.append
        for r in replies:
            t = type(r)
            if r is OK:
                append(b"+OK\r\n")
            elif t is bytes:
                append(b"$%d\r\n%s\r\n" % (len(r), r))
            elif r is NULL or r is None:
                append(b"_\r\n" if resp3 else b"$-1\r\n")
            elif t is int:
                append(b":%d\r\n" % r)
            else:
                _put(r, parts, resp3)
        return b"".join(parts)

    def error_reply(self, code: str, text: str) -> RespError:
        """The server's own errors as Redis words them: ``-ERR Protocol error: ...`` for
        a violation, ``-ERR <code> <text>`` (``-ERR busy ...``, ``-ERR shutdown ...``)
        for the rest."""
        if code == PROTOCOL_ERROR:
            return RespError("ERR Protocol error: " + text)
        return RespError(f"ERR {code} {text}")


def encode_reply(reply: Any, protocol: int = 2) -> bytes:
    """One reply's RESP bytes (for ``Encoded`` replies made ahead, and for tests)."""
    parts: list[bytes] = []
    _put(reply, parts, protocol == 3)
    return b"".join(parts)


def _double(d: float) -> bytes:
    """A double as Redis writes one: the shortest text that reads back the same, no
    ``.0`` on a whole number, ``inf``, ``-inf``, ``nan``."""
    if math.isnan(d):
        return b"nan"
    if math.isinf(d):
        return b"inf" if d > 0 else b"-inf"
    return repr(d).removesuffix(".0").encode()


def _put(r: Any, parts: list[bytes], resp3: bool) -> None:
    """Append the RESP of ``r`` (any supported type, nested) to ``parts``."""
    append = parts.append
    t = type(r)
    if t is bytes:
        append(b"$%d\r\n%s\r\n" % (len(r), r))
    elif t is Simple:
        s = r.encode()
        if 10 in s or 13 in s:
            raise ValueError("a simple string holds a line break")
        append(b"+" + s + b"\r\n")
    elif t is Encoded:
        append(r)
    elif r is NULL or r is None:
        append(b"_\r\n" if resp3 else b"$-1\r\n")
    elif r is NULL_ARRAY:
        append(b"_\r\n" if resp3 else b"*-1\r\n")
    elif t is bool:
        append((b"#t\r\n" if r else b"#f\r\n") if resp3 else (b":1\r\n" if r else b":0\r\n"))
    elif t is int:
        append(b":%d\r\n" % r)
    elif t is str:
        b = r.encode()
        append(b"$%d\r\n%s\r\n" % (len(b), b))
    elif t is list or t is tuple:
        append(b"*%d\r\n" % len(r))
        for item in r:
            if type(item) is bytes:  # LRANGE, MGET, KEYS: arrays of bulk strings
                append(b"$%d\r\n%s\r\n" % (len(item), item))
            else:
                _put(item, parts, resp3)
    elif isinstance(r, RespError):
        msg = r.message.encode()
        if 13 in msg or 10 in msg:
            msg = msg.replace(b"\r", b" ").replace(b"\n", b" ")
        append(b"-" + msg + b"\r\n")
    elif t is float:
        d = _double(r)
        append(b",%s\r\n" % d if resp3 else b"$%d\r\n%s\r\n" % (len(d), d))
    elif t is dict:
        append((b"%%%d\r\n" if resp3 else b"*%d\r\n") % (len(r) if resp3 else 2 * len(r)))
        for k, v in r.items():
            _put(k, parts, resp3)
            _put(v, parts, resp3)
    elif t is set or t is frozenset:
        append((b"~%d\r\n" if resp3 else b"*%d\r\n") % len(r))
        for item in r:
            _put(item, parts, resp3)
    elif isinstance(r, (bytes, bytearray, memoryview)):
        b = bytes(r)
        append(b"$%d\r\n%s\r\n" % (len(b), b))
    elif isinstance(r, int):  # an IntEnum, a numpy-free int subclass
        append(b":%d\r\n" % int(r))
    else:
        raise TypeError(f"no RESP type for {type(r).__name__}")
