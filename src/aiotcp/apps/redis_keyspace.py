"""The redis app's data: one keyspace (Redis's db 0) with lazy and active expiry.

Values by type: ``bytes`` (string), ``collections.deque`` (list), ``dict`` (hash),
``set`` (set), :class:`ZSet` (sorted set), :class:`Stream` (stream). An emptied list,
hash, set or sorted set is deleted, as in Redis.

Expiry as Redis does it: a key past its deadline is deleted when it is next looked up
(lazy), and :meth:`Keyspace.sweep`, called every :data:`SWEEP_INTERVAL` by the app,
deletes the keys whose deadline passed even if nobody looks (active). Deadlines are on
the monotonic clock in milliseconds, so a change of the wall clock moves no TTL.
"""

from __future__ import annotations

import bisect
import heapq
import re
import time
from collections import deque
from typing import Any

from aiotcp.resp import RespError

__all__ = ["Keyspace", "Stream", "ZSet", "glob_regex", "now_ms", "type_name"]

# Active expiry runs this often (Redis's hz 10: ten cycles a second).
SWEEP_INTERVAL = 0.1
# Keys one sweep deletes at most, so a million keys expiring at once cannot stall the
# loop for a whole cycle (Redis bounds its cycle to 25% of CPU time the same way).
SWEEP_BUDGET = 2000
# The heap of deadlines keeps stale entries (a key re-expired or persisted) until they
# surface; it is rebuilt when it holds this many times more entries than live deadlines.
HEAP_SLACK = 4

WRONGTYPE = RespError("WRONGTYPE Operation against a key holding the wrong kind of value")


def now_ms() -> float:
    return time.monotonic() * 1000.0


class ZSet:
    """A sorted set: member -> score, and (score, member) pairs kept sorted (bisect: no
    dependency; O(log n) to find, a memmove to insert, fast at the sizes a test or demo
    service holds)."""

    __slots__ = ("scores", "order")

    def __init__(self) -> None:
        self.scores: dict[bytes, float] = {}
        self.order: list[tuple[float, bytes]] = []

    def __len__(self) -> int:
        return len(self.scores)

    def add(self, member: bytes, score: float) -> bool:
        """Set ``member``'s score; True if it is new."""
        old = self.scores.get(member)
        if old is not None:
            if old == score:
                return False
            del self.order[bisect.bisect_left(self.order, (old, member))]
        self.scores[member] = score
        bisect.insort(self.order, (score, member))
        return old is None

    def remove(self, member: bytes) -> bool:
        score = self.scores.pop(member, None)
        if score is None:
            return False
        del self.order[bisect.bisect_left(self.order, (score, member))]
        return True

    def pop_min(self, count: int) -> list[tuple[float, bytes]]:
        popped = self.order[:count]
        del self.order[:count]
        for _, member in popped:
            del self.scores[member]
        return popped


class Stream:
    """A stream, just enough for XADD and XLEN: entries by ID, in ID order."""

    __slots__ = ("entries", "last")

    def __init__(self) -> None:
        self.entries: deque[tuple[tuple[int, int], list[bytes]]] = deque()
        self.last = (0, 0)

    def __len__(self) -> int:
        return len(self.entries)


_TYPES: dict[type, str] = {
    bytes: "string", deque: "list", dict: "hash", set: "set", ZSet: "zset", Stream: "stream",
}


def type_name(value: Any) -> str:
    return _TYPES.get(type(value), "none")


class Keyspace:
    """Keys to values, and the deadlines of the keys that have one."""

    __slots__ = ("data", "expires", "_heap")

    def __init__(self) -> None:
        self.data: dict[bytes, Any] = {}
        self.expires: dict[bytes, float] = {}  # key -> deadline (monotonic ms)
        self._heap: list[tuple[float, bytes]] = []

    def lookup(self, key: bytes) -> Any:
        """The value of ``key``, or None if it is missing or has expired (then deleted)."""
        value = self.data.get(key)
        if value is not None and self.expires:
            deadline = self.expires.get(key)
            if deadline is not None and deadline <= now_ms():
                self.delete(key)
                return None
        return value

    def typed(self, key: bytes, kind: type) -> Any:
        """The value of ``key`` if it is a ``kind``; None if missing. Raises WRONGTYPE."""
        value = self.lookup(key)
        if value is not None and type(value) is not kind:
            raise WRONGTYPE
        return value

    def put(self, key: bytes, value: Any, keep_ttl: bool = False) -> None:
        """Set ``key`` (its deadline cleared unless ``keep_ttl``)."""
        self.data[key] = value
        if self.expires and not keep_ttl:
            self.expires.pop(key, None)

    def delete(self, key: bytes) -> bool:
        if self.data.pop(key, None) is None:
            return False
        if self.expires:
            self.expires.pop(key, None)
        return True

    def dropped_if_empty(self, key: bytes, value: Any) -> None:
        if not value:
            self.delete(key)

    def expire_at(self, key: bytes, deadline: float) -> None:
        """Give ``key`` (which exists) the deadline ``deadline`` (monotonic ms)."""
        self.expires[key] = deadline
        heap = self._heap
        heapq.heappush(heap, (deadline, key))
        if len(heap) > HEAP_SLACK * len(self.expires) + 1024:
            self._heap = [(d, k) for k, d in self.expires.items()]
            heapq.heapify(self._heap)

    def persist(self, key: bytes) -> bool:
        return self.expires.pop(key, None) is not None

    def ttl_ms(self, key: bytes) -> int:
        """Milliseconds to ``key``'s deadline; -1 if it has none, -2 if it is missing."""
        if self.lookup(key) is None:
            return -2
        deadline = self.expires.get(key)
        if deadline is None:
            return -1
        return max(0, round(deadline - now_ms()))

    def sweep(self, now: float, budget: int = SWEEP_BUDGET) -> int:
        """Delete up to ``budget`` keys whose deadline is at or before ``now``; how many."""
        heap, expires = self._heap, self.expires
        deleted = 0
        while heap and heap[0][0] <= now and deleted < budget:
            deadline, key = heapq.heappop(heap)
            if expires.get(key) == deadline:  # not a stale entry
                self.delete(key)
                deleted += 1
        return deleted

    def clear(self) -> None:
        self.data.clear()
        self.expires.clear()
        self._heap.clear()


_GLOBS: dict[bytes, re.Pattern[bytes]] = {}
GLOB_CACHE = 256


def glob_regex(pattern: bytes) -> re.Pattern[bytes]:
    """Redis's glob (``*``, ``?``, ``[abc]``, ``[^a]``, ``[a-z]``, ``\\x``) as a regex."""
    rx = _GLOBS.get(pattern)
    if rx is not None:
        return rx
    out = bytearray()
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i : i + 1]
        if c == b"*":
            out += b".*"
        elif c == b"?":
            out += b"."
        elif c == b"\\" and i + 1 < n:
            i += 1
            out += re.escape(pattern[i : i + 1])
        elif c == b"[":
            j = i + 1
            neg = j < n and pattern[j : j + 1] == b"^"
            if neg:
                j += 1
            body = bytearray()
            while j < n and pattern[j : j + 1] != b"]":
                ch = pattern[j : j + 1]
                if ch == b"\\" and j + 1 < n:
                    j += 1
                    body += re.escape(pattern[j : j + 1])
                elif ch == b"-" and body and j + 1 < n and pattern[j + 1 : j + 2] != b"]":
                    body += b"-"
                else:
                    body += re.escape(ch)
                j += 1
            out += b"[" + (b"^" if neg else b"") + bytes(body) + b"]" if body else b"(?!)"
            i = j
        else:
            out += re.escape(c)
        i += 1
    rx = re.compile(bytes(out) + rb"\Z", re.S)
    if len(_GLOBS) >= GLOB_CACHE:
        _GLOBS.clear()
    _GLOBS[pattern] = rx
    return rx
