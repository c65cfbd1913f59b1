"""The redis app's commands on lists, hashes, sets, sorted sets and streams.

Lists: LPUSH RPUSH LPOP RPOP LLEN LRANGE LINDEX. Hashes: HSET HMSET HGET HMGET HGETALL
HDEL HLEN HEXISTS HINCRBY. Sets: SADD SREM SMEMBERS SISMEMBER SCARD SPOP (an arbitrary
member, in O(1)). Sorted sets: ZADD (NX XX GT LT CH INCR) ZRANGE (by index or BYSCORE,
REV, LIMIT, WITHSCORES) ZREVRANGE ZSCORE ZCARD ZREM ZPOPMIN. Streams: XADD (``*`` or an explicit
ID, MAXLEN) and XLEN. Replies and errors as Redis 7.
"""

from __future__ import annotations

import itertools
import math
import time
from collections import deque
from typing import Any

from aiotcp.apps.redis_keyspace import Keyspace, Stream, ZSet
from aiotcp.resp import NULL_ARRAY, OK, Client, Commands, RespError, string2ll

__all__ = ["register"]

NOT_INT = RespError("ERR value is not an integer or out of range")
NOT_FLOAT = RespError("ERR value is not a valid float")
SYNTAX = RespError("ERR syntax error")
NOT_POSITIVE = RespError("ERR value is out of range, must be positive")
OVERFLOW = RespError("ERR increment or decrement would overflow")
_INT64 = 2**63


def integer(b: bytes) -> int:
    v = string2ll(b)
    if v is None:
        raise NOT_INT
    return v


def count_arg(b: bytes) -> int:
    n = integer(b)
    if n < 0:
        raise NOT_POSITIVE
    return n


def score(b: bytes) -> float:
    """A score as Redis's strtod reads one: no space, no ``_``, no NaN; ``inf`` is."""
    if not b or b[:1].isspace() or b[-1:].isspace() or b"_" in b:
        raise NOT_FLOAT
    try:
        v = float(b)
    except ValueError:
        raise NOT_FLOAT from None
    if math.isnan(v):
        raise NOT_FLOAT
    return v


def index_range(start: int, stop: int, n: int) -> tuple[int, int]:
    """Redis's start/stop (negative from the end) as a slice [a, b) of ``n`` items."""
    if start < 0:
        start += n
    if stop < 0:
        stop += n
    start = max(start, 0)
    if start > stop or start >= n:
        return 0, 0
    return start, min(stop, n - 1) + 1


def register(commands: Commands, ks: Keyspace) -> None:
    """Add the commands of this module, serving ``ks``, to ``commands``."""
    register_lists(commands, ks)
    register_hashes(commands, ks)
    register_sets(commands, ks)
    register_zsets(commands, ks)
    register_streams(commands, ks)


def register_lists(commands: Commands, ks: Keyspace) -> None:
    c = commands.command

    def push(left: bool) -> Any:
        def fn(client: Client, args: list[bytes]) -> Any:
            lst = ks.typed(args[1], deque)
            if lst is None:
                lst = deque()
                ks.put(args[1], lst)
            if left:
                lst.extendleft(args[2:])
            else:
                lst.extend(args[2:])
            return len(lst)
        return fn

    def pop(left: bool) -> Any:
        def fn(client: Client, args: list[bytes]) -> Any:
            if len(args) > 3:
                return SYNTAX
            count = count_arg(args[2]) if len(args) == 3 else -1
            lst = ks.typed(args[1], deque)
            if lst is None:
                return None if count < 0 else NULL_ARRAY
            take = lst.popleft if left else lst.pop
            out = take() if count < 0 else [take() for _ in range(min(count, len(lst)))]
            ks.dropped_if_empty(args[1], lst)
            return out
        return fn

    c("LPUSH", -3, flags=("write", "fast"), keys=(1, 1, 1), group="list")(push(True))
    c("RPUSH", -3, flags=("write", "fast"), keys=(1, 1, 1), group="list")(push(False))
    c("LPOP", -2, flags=("write", "fast"), keys=(1, 1, 1), group="list")(pop(True))
    c("RPOP", -2, flags=("write", "fast"), keys=(1, 1, 1), group="list")(pop(False))

    @c("LLEN", 2, flags=("readonly", "fast"), keys=(1, 1, 1), group="list")
    def llen(client: Client, args: list[bytes]) -> Any:
        lst = ks.typed(args[1], deque)
        return 0 if lst is None else len(lst)

    @c("LRANGE", 4, flags=("readonly",), keys=(1, 1, 1), group="list")
    def lrange(client: Client, args: list[bytes]) -> Any:
        start, stop = integer(args[2]), integer(args[3])
        lst = ks.typed(args[1], deque)
        if lst is None:
            return []
        n = len(lst)
        a, b = index_range(start, stop, n)
        if b - a == n:
            return list(lst)
        if a <= n - b:  # nearer the front: walk from the left, else from the right
            return list(itertools.islice(lst, a, b))
        out = list(itertools.islice(reversed(lst), n - b, n - a))
        out.reverse()
        return out

    @c("LINDEX", 3, flags=("readonly",), keys=(1, 1, 1), group="list")
    def lindex(client: Client, args: list[bytes]) -> Any:
        i = integer(args[2])
        lst = ks.typed(args[1], deque)
        if lst is None:
            return None
        if i < 0:
            i += len(lst)
        return lst[i] if 0 <= i < len(lst) else None


def register_hashes(commands: Commands, ks: Keyspace) -> None:
    c = commands.command

    def hset_pairs(args: list[bytes], name: str) -> int:
        if len(args) % 2:
            raise RespError(f"ERR wrong number of arguments for '{name}' command")
        h = ks.typed(args[1], dict)
        if h is None:
            h = {}
            ks.put(args[1], h)
        before = len(h)
        for i in range(2, len(args), 2):
            h[args[i]] = args[i + 1]
        return len(h) - before

    @c("HSET", -4, flags=("write", "fast"), keys=(1, 1, 1), group="hash")
    def hset(client: Client, args: list[bytes]) -> Any:
        return hset_pairs(args, "hset")

    @c("HMSET", -4, flags=("write", "fast"), keys=(1, 1, 1), group="hash")
    def hmset(client: Client, args: list[bytes]) -> Any:
        hset_pairs(args, "hmset")
        return OK

    @c("HGET", 3, flags=("readonly", "fast"), keys=(1, 1, 1), group="hash")
    def hget(client: Client, args: list[bytes]) -> Any:
        h = ks.typed(args[1], dict)
        return None if h is None else h.get(args[2])

    @c("HMGET", -3, flags=("readonly", "fast"), keys=(1, 1, 1), group="hash")
    def hmget(client: Client, args: list[bytes]) -> Any:
        h = ks.typed(args[1], dict) or {}
        return [h.get(f) for f in args[2:]]

    @c("HGETALL", 2, flags=("readonly",), keys=(1, 1, 1), group="hash")
    def hgetall(client: Client, args: list[bytes]) -> Any:
        h = ks.typed(args[1], dict)
        return {} if h is None else dict(h)

    @c("HDEL", -3, flags=("write", "fast"), keys=(1, 1, 1), group="hash")
    def hdel(client: Client, args: list[bytes]) -> Any:
        h = ks.typed(args[1], dict)
        if h is None:
            return 0
        n = sum(h.pop(f, None) is not None for f in args[2:])
        ks.dropped_if_empty(args[1], h)
        return n

    @c("HLEN", 2, flags=("readonly", "fast"), keys=(1, 1, 1), group="hash")
    def hlen(client: Client, args: list[bytes]) -> Any:
        h = ks.typed(args[1], dict)
        return 0 if h is None else len(h)

    @c("HEXISTS", 3, flags=("readonly", "fast"), keys=(1, 1, 1), group="hash")
    def hexists(client: Client, args: list[bytes]) -> Any:
        h = ks.typed(args[1], dict)
        return int(h is not None and args[2] in h)

    @c("HINCRBY", 4, flags=("write", "fast"), keys=(1, 1, 1), group="hash")
    def hincrby(client: Client, args: list[bytes]) -> Any:
        by = integer(args[3])
        h = ks.typed(args[1], dict)
        old = 0
        if h is not None and args[2] in h:
            parsed = string2ll(h[args[2]])
            if parsed is None:
                return RespError("ERR hash value is not an integer")
            old = parsed
        n = old + by
        if not -_INT64 <= n < _INT64:
            return OVERFLOW
        if h is None:
            h = {}
            ks.put(args[1], h)
        h[args[2]] = b"%d" % n
        return n


def register_sets(commands: Commands, ks: Keyspace) -> None:
    c = commands.command

    @c("SADD", -3, flags=("write", "fast"), keys=(1, 1, 1), group="set")
    def sadd(client: Client, args: list[bytes]) -> Any:
        s = ks.typed(args[1], set)
        if s is None:
            s = set()
            ks.put(args[1], s)
        before = len(s)
        s.update(args[2:])
        return len(s) - before

    @c("SREM", -3, flags=("write", "fast"), keys=(1, 1, 1), group="set")
    def srem(client: Client, args: list[bytes]) -> Any:
        s = ks.typed(args[1], set)
        if s is None:
            return 0
        before = len(s)
        s.difference_update(args[2:])
        ks.dropped_if_empty(args[1], s)
        return before - len(s)

    @c("SMEMBERS", 2, flags=("readonly",), keys=(1, 1, 1), group="set")
    def smembers(client: Client, args: list[bytes]) -> Any:
        s = ks.typed(args[1], set)
        return set() if s is None else set(s)

    @c("SISMEMBER", 3, flags=("readonly", "fast"), keys=(1, 1, 1), group="set")
    def sismember(client: Client, args: list[bytes]) -> Any:
        s = ks.typed(args[1], set)
        return int(s is not None and args[2] in s)

    @c("SCARD", 2, flags=("readonly", "fast"), keys=(1, 1, 1), group="set")
    def scard(client: Client, args: list[bytes]) -> Any:
        s = ks.typed(args[1], set)
        return 0 if s is None else len(s)

    @c("SPOP", -2, flags=("write", "fast"), keys=(1, 1, 1), group="set")
    def spop(client: Client, args: list[bytes]) -> Any:
        if len(args) > 3:
            return SYNTAX
        count = count_arg(args[2]) if len(args) == 3 else -1
        s = ks.typed(args[1], set)
        if s is None:
            return None if count < 0 else set()
        out: Any = s.pop() if count < 0 else {s.pop() for _ in range(min(count, len(s)))}
        ks.dropped_if_empty(args[1], s)
        return out


def register_zsets(commands: Commands, ks: Keyspace) -> None:
    c = commands.command

    @c("ZADD", -4, flags=("write", "fast"), keys=(1, 1, 1), group="sorted-set")
    def zadd(client: Client, args: list[bytes]) -> Any:
        i = 2
        flags: set[bytes] = set()
        while i < len(args) and args[i].upper() in (b"NX", b"XX", b"GT", b"LT", b"CH", b"INCR"):
            flags.add(args[i].upper())
            i += 1
        pairs = args[i:]
        if not pairs or len(pairs) % 2:
            return SYNTAX
        if b"NX" in flags and b"XX" in flags:
            return RespError("ERR XX and NX options at the same time are not compatible")
        if (b"GT" in flags and b"LT" in flags) or (b"NX" in flags and flags & {b"GT", b"LT"}):
            return RespError("ERR GT, LT, and/or NX options at the same time are not compatible")
        incr = b"INCR" in flags
        if incr and len(pairs) != 2:
            return RespError("ERR INCR option supports a single increment-element pair")
        scores = [score(pairs[j]) for j in range(0, len(pairs), 2)]
        z = ks.typed(args[1], ZSet)
        if z is None:
            if b"XX" in flags:
                return None if incr else 0
            z = ZSet()
            ks.put(args[1], z)
        added = changed = 0
        result: float | None = None
        for s, member in zip(scores, pairs[1::2]):
            old = z.scores.get(member)
            if incr:
                s = (old or 0.0) + s
                if math.isnan(s):
                    ks.dropped_if_empty(args[1], z)
                    return RespError("ERR resulting score is not a number (NaN)")
            if old is None:
                if b"XX" in flags:
                    continue
            elif (b"NX" in flags or (b"GT" in flags and s <= old)
                  or (b"LT" in flags and s >= old)):
                continue
            if z.add(member, s):
                added += 1
            elif old != s:
                changed += 1
            result = s
        ks.dropped_if_empty(args[1], z)
        if incr:
            return result
        return added + changed if b"CH" in flags else added

    def with_scores(client: Client, items: list[tuple[float, bytes]], nested: bool) -> Any:
        if client.protocol == 3 and nested:
            return [[m, s] for s, m in items]
        return [x for s, m in items for x in (m, s)]

    def bound(b: bytes) -> tuple[float, bool]:
        """A BYSCORE bound: (score, exclusive)."""
        if b.startswith(b"("):
            return score(b[1:]), True
        return score(b), False

    @c("ZRANGE", -4, flags=("readonly",), keys=(1, 1, 1), group="sorted-set")
    def zrange(client: Client, args: list[bytes]) -> Any:
        opts = [a.upper() for a in args[4:]]
        by_score, rev, scores_too = b"BYSCORE" in opts, b"REV" in opts, b"WITHSCORES" in opts
        offset, limit = 0, -1
        i = 0
        while i < len(opts):
            if opts[i] == b"LIMIT" and i + 2 < len(opts):
                offset, limit = integer(args[4 + i + 1]), integer(args[4 + i + 2])
                i += 3
                continue
            if opts[i] not in (b"BYSCORE", b"REV", b"WITHSCORES"):
                return SYNTAX
            i += 1
        if b"LIMIT" in opts and not by_score:
            return RespError("ERR syntax error, LIMIT is only supported in combination "
                             "with either BYSCORE or BYLEX")
        z = ks.typed(args[1], ZSet)
        if by_score:
            lo, hi = (args[3], args[2]) if rev else (args[2], args[3])
            (low, low_x), (high, high_x) = bound(lo), bound(hi)
            if z is None:
                return []
            items = [(s, m) for s, m in z.order
                     if (s > low if low_x else s >= low) and (s < high if high_x else s <= high)]
            if rev:
                items.reverse()
            if offset < 0:
                return []
            items = items[offset:] if limit < 0 else items[offset : offset + limit]
        else:
            start, stop = integer(args[2]), integer(args[3])
            if z is None:
                return []
            n = len(z)
            a, b = index_range(start, stop, n)
            items = z.order[n - b : n - a][::-1] if rev else z.order[a:b]
        if scores_too:
            return with_scores(client, items, True)
        return [m for _, m in items]

    @c("ZREVRANGE", -4, flags=("readonly",), keys=(1, 1, 1), group="sorted-set")
    def zrevrange(client: Client, args: list[bytes]) -> Any:
        if len(args) > 5 or (len(args) == 5 and args[4].upper() != b"WITHSCORES"):
            return SYNTAX
        return zrange(client, [*args[:4], b"REV", *args[4:]])

    @c("ZSCORE", 3, flags=("readonly", "fast"), keys=(1, 1, 1), group="sorted-set")
    def zscore(client: Client, args: list[bytes]) -> Any:
        z = ks.typed(args[1], ZSet)
        return None if z is None else z.scores.get(args[2])

    @c("ZCARD", 2, flags=("readonly", "fast"), keys=(1, 1, 1), group="sorted-set")
    def zcard(client: Client, args: list[bytes]) -> Any:
        z = ks.typed(args[1], ZSet)
        return 0 if z is None else len(z)

    @c("ZREM", -3, flags=("write", "fast"), keys=(1, 1, 1), group="sorted-set")
    def zrem(client: Client, args: list[bytes]) -> Any:
        z = ks.typed(args[1], ZSet)
        if z is None:
            return 0
        n = sum(z.remove(m) for m in args[2:])
        ks.dropped_if_empty(args[1], z)
        return n

    @c("ZPOPMIN", -2, flags=("write", "fast"), keys=(1, 1, 1), group="sorted-set")
    def zpopmin(client: Client, args: list[bytes]) -> Any:
        if len(args) > 3:
            return SYNTAX
        count = count_arg(args[2]) if len(args) == 3 else 1
        z = ks.typed(args[1], ZSet)
        if z is None:
            return []
        popped = z.pop_min(count)
        ks.dropped_if_empty(args[1], z)
        return with_scores(client, popped, len(args) == 3)


def register_streams(commands: Commands, ks: Keyspace) -> None:
    c = commands.command
    bad_id = RespError("ERR Invalid stream ID specified as stream command argument")

    def parse_id(b: bytes, last: tuple[int, int]) -> tuple[int, int]:
        ms_text, dash, seq_text = b.partition(b"-")
        ms = string2ll(ms_text)
        if ms is None or ms < 0:
            raise bad_id
        if not dash:
            return ms, 0
        if seq_text == b"*":
            return ms, last[1] + 1 if ms == last[0] else 0
        seq = string2ll(seq_text)
        if seq is None or seq < 0:
            raise bad_id
        return ms, seq

    @c("XADD", -5, flags=("write", "fast"), keys=(1, 1, 1), group="stream")
    def xadd(client: Client, args: list[bytes]) -> Any:
        i = 2
        nomk = False
        maxlen = -1
        while i < len(args):
            opt = args[i].upper()
            if opt == b"NOMKSTREAM":
                nomk = True
                i += 1
            elif opt == b"MAXLEN" and i + 1 < len(args):
                i += 1
                if args[i] in (b"=", b"~"):
                    i += 1
                maxlen = integer(args[i]) if i < len(args) else -1
                if maxlen < 0:
                    return RespError("ERR The MAXLEN argument must be >= 0.")
                i += 1
            else:
                break
        fields = args[i + 1 :]
        if i >= len(args) or not fields or len(fields) % 2:
            return RespError("ERR wrong number of arguments for 'xadd' command")
        stream = ks.typed(args[1], Stream)
        if stream is None and nomk:
            return None
        last = stream.last if stream is not None else (0, 0)
        if args[i] == b"*":
            now = int(time.time() * 1000)
            new = (now, 0) if now > last[0] else (last[0], last[1] + 1)
        else:
            new = parse_id(args[i], last)
            if new == (0, 0):
                return RespError("ERR The ID specified in XADD must be greater than 0-0")
            if new <= last:
                return RespError("ERR The ID specified in XADD is equal or smaller than "
                                 "the target stream top item")
        if stream is None:
            stream = Stream()
            ks.put(args[1], stream)
        stream.entries.append((new, list(fields)))
        stream.last = new
        if maxlen >= 0:
            while len(stream.entries) > maxlen:
                stream.entries.popleft()
        return b"%d-%d" % new

    @c("XLEN", 2, flags=("readonly", "fast"), keys=(1, 1, 1), group="stream")
    def xlen(client: Client, args: list[bytes]) -> Any:
        stream = ks.typed(args[1], Stream)
        return 0 if stream is None else len(stream)
