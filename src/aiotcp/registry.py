"""What connections see of the server: admission, limits, the clock, the deadline sweep.

A connection is handed the Registry and implements :class:`Member`; it never sees the
Server. The registry is a list with each member's index in its ``slot`` (O(1) add and
remove at 8 bytes a connection, where a set costs ~50).

Deadlines are not timers per connection: :meth:`Registry.due` is a pure function of
``now`` over the members' plain fields (last complete message) and the output watches,
and the server's sweep calls :meth:`Registry.sweep` a few times per shortest timeout.
Tests call them with a clock they advance.

The write clock (as nginx's ``send_timeout`` and Netty's ``WriteTimeoutHandler``): the
sweep looks at each member's unflushed output. A member whose output stays unflushed
``write_timeout`` seconds without a byte of it being taken, or stays above the high-water
mark that long, is dropped: a client with a zero window cannot keep its slot, its fd and
its buffers, whether its output is one byte or megabytes, and a connection still closing
(waiting for a flush that never comes) is aborted the same way. Watches exist only for
members with output pending at a sweep: the rest cost nothing.

Connections still in their PROXY header or TLS handshake hold a place too
(:meth:`Registry.hold`): they count against both caps from their accept.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Protocol

from aiotcp.config import Config
from aiotcp.limits import TokenBucket
from aiotcp.observe.logs import log_access
from aiotcp.observe.stats import Stats

# Deadlines are checked SWEEP_DIVISIONS times per the shortest timeout, so one fires at
# most 1/SWEEP_DIVISIONS late and ten thousand idle connections cost no timer churn.
SWEEP_DIVISIONS = 8
SWEEP_MIN = 0.01
SWEEP_MAX = 1.0

# Connection open times (for the access log) are kept to this many seconds: connections
# opened within it share one float rather than each holding its own.
OPENED_PRECISION = 0.01

# Output buffer marks, per connection. Above HIGH the client is not keeping up: stop
# reading from it (so it cannot make us buffer more) until it drains below LOW. asyncio
# uses 64 KiB as its default high-water mark; so do we.
WRITE_HIGH_WATER = 64 * 1024
WRITE_LOW_WATER = 16 * 1024

# A closing connection whose output never drains is aborted after this long even with
# the write timeout off: closing must end.
CLOSE_GRACE = 30.0

# fds kept back from the connection cap for listeners, logs, the metrics server, threads.
FD_RESERVE = 32
FD_RESERVE_SMALL = 16


def default_max_connections(nofile: int) -> int:
    """The connection cap derived from the fd limit ``nofile``."""
    reserve = FD_RESERVE if nofile > 256 else FD_RESERVE_SMALL
    return max(1, nofile - reserve)


class Member(Protocol):
    """What the registry needs of a connection (both connection kinds implement it)."""

    slot: int
    opened: float
    last_message: float
    messages: int
    bytes_in: int
    bytes_out: int
    close_reason: str

    @property
    def acked(self) -> int: ...

    @property
    def ip(self) -> str | None: ...

    @property
    def busy(self) -> bool:
        """True while a handler is still working on this connection's messages."""
        ...

    @property
    def listening(self) -> bool:
        """True while the handler pushes to it (subscriptions): no idle timeout."""
        ...

    @property
    def peer(self) -> Any: ...

    @property
    def closing(self) -> bool:
        """True once the connection has begun to close."""
        ...

    def output_pending(self) -> int:
        """Bytes written and not yet taken by the kernel (the transport's buffer)."""
        ...

    def expire(self, code: str, text: str) -> None:
        """Close for a timeout, telling the client why if it can still hear."""
        ...

    def shut_down(self) -> None:
        """Graceful stop: finish what arrived, ``ERR shutdown``, half-close."""
        ...

    def end_linger(self) -> None:
        """Stop waiting for the client's EOF after ``ERR shutdown``: close."""
        ...

    def abort(self) -> None: ...


class OutputWatch:
    """A member seen with unflushed output: since when no byte was taken, and since when
    its output has been above the high-water mark."""

    __slots__ = ("stalled_since", "flushed", "over_since")

    def __init__(self, now: float, flushed: int, over: bool) -> None:
        self.stalled_since = now
        self.flushed = flushed
        self.over_since: float | None = now if over else None


class Registry:
    """Open connections, the caps on them, and the coarse clock they read."""

    def __init__(self, config: Config, stats: Stats, max_connections: int) -> None:
        self.stats = stats
        self.clock = 0.0  # loop time at the last sweep: connections read it, never call
        self.shutting_down = False
        # Shutdown: set once the linger is over; a connection that settles after it
        # closes at once (with FIN) instead of waiting for the client's EOF.
        self.linger_over = False
        self.members: list[Member] = []
        self.held = 0  # connections in their PROXY header or TLS handshake
        self.watches: dict[Member, OutputWatch] = {}
        self.max_connections = max_connections
        self.max_per_ip = config.max_connections_per_ip
        # --max-connection-rate-per-ip: a token bucket per IP seen lately (a bucket that
        # has refilled is dropped at the next sweep: the dict holds only recent IPs).
        self.ip_rate = config.max_connection_rate_per_ip
        self._ip_buckets: dict[str, TokenBucket] = {}
        # Connections read their peer's IP only when a setting needs it.
        self.wants_ip = bool(self.max_per_ip or self.ip_rate)
        self.idle_timeout = config.idle_timeout
        self.write_timeout = config.write_timeout
        self.access_log = config.access_log
        self.interval = sweep_interval(config)
        self.on_empty: Callable[[], None] | None = None
        # A worker on a shared accept queue (aiotcp.accepting): told to stop accepting at
        # ``pause_at`` places taken and to accept again at ``resume_at``. 0: never stops.
        self.pause_at = 0
        self.resume_at = 0
        self.accepting = True
        self.on_full: Callable[[], None] | None = None
        self.on_room: Callable[[], None] | None = None
        self._per_ip: dict[str, int] = {}
        self._opened_clock = 0.0
        stats.live = self.live_totals

    def __len__(self) -> int:
        return len(self.members)

    def _refusal(self, ip: str | None, rate: bool = True) -> tuple[str, str] | None:
        """Why a new connection from ``ip`` cannot have a place (counted), or None.

        ``rate``: charge the IP's connection rate (admitted connections only, so a
        connection through a handshake is charged once, with its real address)."""
        stats = self.stats
        # Until the linger is over a draining server admits what its listeners accepted
        # before they closed (the client's first message may be on its way).
        if self.shutting_down and self.linger_over:
            stats.refused("shutdown")
            return "shutdown", "server is shutting down"
        if len(self.members) + self.held >= self.max_connections:
            stats.refused("busy")
            return "busy", f"too many connections (limit {self.max_connections})"
        if self.max_per_ip and ip is not None:
            if self._per_ip.get(ip, 0) >= self.max_per_ip:
                stats.refused("busy-ip")
                return "busy", f"too many connections from {ip} (limit {self.max_per_ip})"
        if rate and self.ip_rate and ip is not None:
            now = time.monotonic()
            bucket = self._ip_buckets.get(ip)
            if bucket is None:
                bucket = self._ip_buckets[ip] = TokenBucket(self.ip_rate, max(1.0, self.ip_rate), now)
            if not bucket.allows(now):
                stats.refused("rate")
                return "busy", f"too many new connections from {ip} (limit {self.ip_rate:g}/s)"
        return None

    def _count_ip(self, ip: str | None, delta: int) -> None:
        if not self.max_per_ip or ip is None:
            return
        left = self._per_ip.get(ip, 0) + delta
        if left > 0:
            self._per_ip[ip] = left
        else:
            self._per_ip.pop(ip, None)

    def hold(self, ip: str | None) -> tuple[str, str] | None:
        """A connection in its handshake takes a place (``ip``: None until known), or
        gets (code, text) of its refusal, counted. :meth:`release` gives it back."""
        refusal = self._refusal(ip, rate=False)
        if refusal is None:
            self.held += 1
            self._count_ip(ip, 1)
            if self.pause_at:
                self._check_full()
        return refusal

    def release(self, ip: str | None) -> None:
        """The handshake held with ``ip`` ended (the connection is admitted or lost)."""
        self.held -= 1
        self._count_ip(ip, -1)
        if not self.accepting:
            self._check_room()

    def _check_full(self) -> None:
        if self.accepting and len(self.members) + self.held >= self.pause_at:
            self.accepting = False
            if self.on_full is not None:
                self.on_full()

    def _check_room(self) -> None:
        if not self.accepting and len(self.members) + self.held <= self.resume_at:
            self.accepting = True
            if self.on_room is not None:
                self.on_room()

    def admit(self, conn: Member, ip: str | None) -> tuple[str, str] | None:
        """Register ``conn`` (from client ``ip``), or return (code, text) of its refusal.

        Counts the refusal once; the connection sends ``ERR <code> <text>`` and closes.
        """
        # Only these can refuse (see _refusal): most accepts skip the call.
        if self.shutting_down or self.wants_ip or (
            len(self.members) + self.held >= self.max_connections
        ):
            refusal = self._refusal(ip)
            if refusal is not None:
                return refusal
        if self.max_per_ip:
            self._count_ip(ip, 1)
        if self.access_log:  # the open time is read by the access log only
            now = time.monotonic()
            if now - self._opened_clock > OPENED_PRECISION:
                self._opened_clock = now
            conn.opened = self._opened_clock
        conn.slot = len(self.members)
        self.members.append(conn)
        stats = self.stats
        stats.connections += 1
        stats.connections_accepted += 1
        if self.pause_at:
            self._check_full()
        return None

    def forget(self, conn: Member) -> None:
        """Called once per connection when it is lost, registered or not."""
        i = conn.slot
        if i < 0:
            return
        conn.slot = -1
        members = self.members
        last = members.pop()
        if last is not conn:
            members[i] = last
            last.slot = i
        if self.watches:
            self.watches.pop(conn, None)
        stats = self.stats
        stats.connections -= 1
        if self.max_per_ip:
            self._count_ip(conn.ip, -1)
        stats.messages_received += conn.messages
        stats.messages_acked += conn.acked
        stats.bytes_received += conn.bytes_in
        stats.bytes_sent += conn.bytes_out
        if self.access_log:
            log_access(
                conn.peer,
                time.monotonic() - conn.opened,
                conn.messages,
                conn.bytes_in,
                conn.bytes_out,
                conn.close_reason,
            )
        if not self.accepting:
            self._check_room()
        if not members and self.on_empty is not None:
            self.on_empty()

    def due(self, now: float) -> list[tuple[Member, str, str]]:
        """The members past a deadline at ``now``, with the code and text to close them.

        A pure function of ``now``, the members' fields and the output watches.
        ``last_message`` and the watches are clock readings up to one sweep interval
        old, so each deadline allows for one interval.
        """
        out: list[tuple[Member, str, str]] = []
        idle = self.idle_timeout
        idle_before = now - idle - self.interval
        watches = self.watches
        for conn in self.members:
            watch = watches.get(conn) if watches else None
            if watch is not None:
                limit = self.write_timeout or (CLOSE_GRACE if conn.closing else 0.0)
                before = now - limit - self.interval
                if limit and (
                    watch.stalled_since <= before
                    or (watch.over_since is not None and watch.over_since <= before)
                ):
                    out.append((conn, "write-timeout", "client is not reading its replies"))
                    continue
            if (
                idle and conn.last_message <= idle_before and not conn.busy
                and not conn.listening and not conn.closing
            ):
                out.append((conn, "idle-timeout", f"no complete message for {idle:g}s"))
        return out

    def watch_output(self, now: float) -> None:
        """Start, move or end each member's output watch from its unflushed output."""
        watches = self.watches
        for conn in self.members:
            pending = conn.output_pending()
            if not pending:
                if watches:
                    watches.pop(conn, None)
                continue
            flushed = conn.bytes_out - pending
            watch = watches.get(conn)
            if watch is None:
                watches[conn] = OutputWatch(now, flushed, pending > WRITE_HIGH_WATER)
                continue
            if flushed != watch.flushed:  # the client took some: the stall clock restarts
                watch.flushed = flushed
                watch.stalled_since = now
            if pending <= WRITE_HIGH_WATER:
                watch.over_since = None
            elif watch.over_since is None:
                watch.over_since = now

    def sweep(self, now: float) -> None:
        """Advance the clock to ``now`` and expire every member past a deadline."""
        self.clock = now
        self.watch_output(now)
        if self._ip_buckets:
            mono = time.monotonic()
            for ip in [ip for ip, b in self._ip_buckets.items() if b.full(mono)]:
                del self._ip_buckets[ip]
        for conn, code, text in self.due(now):
            conn.expire(code, text)

    def live_totals(self) -> tuple[int, int, int, int]:
        """Messages received, acked, bytes in, out of the open connections."""
        members = self.members
        return (
            sum(c.messages for c in members),
            sum(c.acked for c in members),
            sum(c.bytes_in for c in members),
            sum(c.bytes_out for c in members),
        )


def sweep_interval(config: Config) -> float:
    """Seconds between sweeps: a fraction of the shortest timeout, within bounds."""
    timeouts = [t for t in (config.idle_timeout, config.write_timeout) if t > 0]
    if not timeouts:
        return SWEEP_MAX
    return min(SWEEP_MAX, max(SWEEP_MIN, min(timeouts) / SWEEP_DIVISIONS))
