"""What connections see of the server: admission, limits, the clock, the deadline sweep.

A connection is handed the Registry and implements :class:`Member`; it never sees the
Server. The registry is a list with each member's index in its ``slot`` (O(1) add and
remove at 8 bytes a connection, where a set costs ~50).

Deadlines are not timers per connection: :meth:`Registry.due` is a pure function of
``now`` over the members' plain fields (last complete message, paused since), and the
server's sweep calls :meth:`Registry.sweep` a few times per shortest timeout. Tests call
them with a clock they advance.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Protocol

from aiotcp.config import Config
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
    paused_since: float | None
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


class Registry:
    """Open connections, the caps on them, and the coarse clock they read."""

    def __init__(self, config: Config, stats: Stats, max_connections: int) -> None:
        self.stats = stats
        self.clock = 0.0  # loop time at the last sweep: connections read it, never call
        self.shutting_down = False
        self.members: list[Member] = []
        self.max_connections = max_connections
        self.max_per_ip = config.max_connections_per_ip
        self.idle_timeout = config.idle_timeout
        self.write_timeout = config.write_timeout
        self.access_log = config.access_log
        self.interval = sweep_interval(config)
        self.on_empty: Callable[[], None] | None = None
        self._per_ip: dict[str, int] = {}
        self._opened_clock = 0.0
        stats.live = self.live_totals

    def __len__(self) -> int:
        return len(self.members)

    def admit(self, conn: Member, ip: str | None) -> tuple[str, str] | None:
        """Register ``conn`` (from client ``ip``), or return (code, text) of its refusal.

        Counts the refusal once; the connection sends ``ERR <code> <text>`` and closes.
        """
        stats = self.stats
        if self.shutting_down:
            stats.refused("shutdown")
            return "shutdown", "server is shutting down"
        if len(self.members) >= self.max_connections:
            stats.refused("busy")
            return "busy", f"too many connections (limit {self.max_connections})"
        if self.max_per_ip and ip is not None:
            count = self._per_ip.get(ip, 0)
            if count >= self.max_per_ip:
                stats.refused("busy-ip")
                return "busy", f"too many connections from {ip} (limit {self.max_per_ip})"
            self._per_ip[ip] = count + 1
        now = time.monotonic()
        if now - self._opened_clock > OPENED_PRECISION:
            self._opened_clock = now
        conn.opened = self._opened_clock
        conn.slot = len(self.members)
        self.members.append(conn)
        stats.connections += 1
        stats.connections_accepted += 1
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
        stats = self.stats
        stats.connections -= 1
        ip = conn.ip
        if self.max_per_ip and ip is not None:
            left = self._per_ip.get(ip, 1) - 1
            if left > 0:
                self._per_ip[ip] = left
            else:
                self._per_ip.pop(ip, None)
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
        if not members and self.on_empty is not None:
            self.on_empty()

    def due(self, now: float) -> list[tuple[Member, str, str]]:
        """The members past a deadline at ``now``, with the code and text to close them.

        A pure function of ``now`` and the members' fields. ``last_message`` and
        ``paused_since`` are clock readings up to one sweep interval old, so each
        deadline allows for one interval.
        """
        out: list[tuple[Member, str, str]] = []
        idle, write = self.idle_timeout, self.write_timeout
        idle_before = now - idle - self.interval
        write_before = now - write - self.interval
        for conn in self.members:
            paused = conn.paused_since
            if paused is not None:
                if write and paused <= write_before:
                    out.append((conn, "write-timeout", "client is not reading its replies"))
            elif (
                idle and conn.last_message <= idle_before and not conn.busy
                and not conn.listening
            ):
                out.append((conn, "idle-timeout", f"no complete message for {idle:g}s"))
        return out

    def sweep(self, now: float) -> None:
        """Advance the clock to ``now`` and expire every member past a deadline."""
        self.clock = now
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
