"""Plain counters the hot path bumps: ints and dicts, no locks, no library calls.

The server adds to these once per read batch, never per message with a call.
Exporters (Prometheus, JSON) read them at scrape time; see ``aiotcp.observe``.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable
from typing import Any

# Upper bounds in seconds. An inline ack takes microseconds; a handler offloaded to a
# thread takes milliseconds; anything past a second is a problem worth seeing.
ACK_LATENCY_BUCKETS: tuple[float, ...] = (
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01,
    0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)


class LatencyHistogram:
    """Cumulative-on-read histogram with fixed buckets (last bucket is +Inf)."""

    __slots__ = ("buckets", "counts", "sum", "count")

    def __init__(self, buckets: tuple[float, ...] = ACK_LATENCY_BUCKETS) -> None:
        self.buckets = buckets
        self.counts = [0] * (len(buckets) + 1)
        self.sum = 0.0
        self.count = 0

    def observe(self, seconds: float, n: int = 1) -> None:
        """Record ``n`` observations of ``seconds`` each (one call per batch)."""
        self.counts[bisect_left(self.buckets, seconds)] += n
        self.sum += seconds * n
        self.count += n

    def cumulative(self) -> list[int]:
        """Counts at or below each bound, then the total (+Inf), as Prometheus wants."""
        out, running = [], 0
        for c in self.counts:
            running += c
            out.append(running)
        return out


class Stats:
    """Live counters of one server process."""

    __slots__ = (
        "connections",
        "connections_accepted",
        "connections_refused",
        "messages_received",
        "messages_acked",
        "bytes_received",
        "bytes_sent",
        "errors",
        "loop_lag_seconds",
        "loop_stalls",
        "ack_latency",
        "live",
        "proxy_rejected",
        "handshake_timeouts",
        "tls_handshake_failures",
        "pubsub_published",
        "pubsub_delivered",
        "pubsub_dropped",
        "pubsub_subscriptions",
        "broker_reconnects",
        "upstream_retries",
        "upstream_retries_throttled",
    )

    def __init__(self) -> None:
        self.connections = 0
        self.connections_accepted = 0
        self.connections_refused: dict[str, int] = {}
        self.messages_received = 0
        self.messages_acked = 0
        self.bytes_received = 0
        self.bytes_sent = 0
        self.errors: dict[str, int] = {}
        self.loop_lag_seconds = 0.0
        self.loop_stalls = 0
        self.ack_latency = LatencyHistogram()
        # messages_* and bytes_* count closed connections; the server sets ``live`` to
        # report (messages received, acked, bytes in, out) of the open ones, so the hot
        # path bumps only its own connection's counters.
        self.live: Callable[[], tuple[int, int, int, int]] | None = None
        # The front door (PROXY header, TLS handshake): connections closed before the
        # application saw them.
        self.proxy_rejected: dict[str, int] = {}
        self.handshake_timeouts = 0
        self.tls_handshake_failures = 0
        # The pubsub app: messages the broker accepted (acked PUBs), MSG frames pushed to
        # subscribers, MSG frames dropped because a subscriber was not reading, the
        # subscriptions held now (a gauge) and broker connections re-established.
        self.pubsub_published = 0
        self.pubsub_delivered = 0
        self.pubsub_dropped = 0
        self.pubsub_subscriptions = 0
        self.broker_reconnects = 0
        # The gateway app: calls retried after they failed to reach the upstream, and
        # retries the retry budget refused.
        self.upstream_retries = 0
        self.upstream_retries_throttled = 0

    def totals(self) -> tuple[int, int, int, int]:
        """Messages received, acked, bytes received, sent: over every connection."""
        m_in, m_acked, b_in, b_out = self.live() if self.live is not None else (0, 0, 0, 0)
        return (
            self.messages_received + m_in,
            self.messages_acked + m_acked,
            self.bytes_received + b_in,
            self.bytes_sent + b_out,
        )

    def refused(self, reason: str) -> None:
        self.connections_refused[reason] = self.connections_refused.get(reason, 0) + 1

    def error(self, code: str, n: int = 1) -> None:
        """Count ``n`` replies ``ERR <code>`` (``aiotcp_errors_total{code=...}``)."""
        self.errors[code] = self.errors.get(code, 0) + n

    def snapshot(self) -> dict[str, Any]:
        """A JSON-able copy of every counter (totals include open connections)."""
        messages_in, messages_acked, bytes_in, bytes_out = self.totals()
        return {
            "connections": self.connections,
            "connections_accepted": self.connections_accepted,
            "connections_refused": dict(self.connections_refused),
            "messages_received": messages_in,
            "messages_acked": messages_acked,
            "bytes_received": bytes_in,
            "bytes_sent": bytes_out,
            "errors": dict(self.errors),
            "loop_lag_seconds": self.loop_lag_seconds,
            "loop_stalls": self.loop_stalls,
            "proxy_rejected": dict(self.proxy_rejected),
            "handshake_timeouts": self.handshake_timeouts,
            "tls_handshake_failures": self.tls_handshake_failures,
            "pubsub_published": self.pubsub_published,
            "pubsub_delivered": self.pubsub_delivered,
            "pubsub_dropped": self.pubsub_dropped,
            "pubsub_subscriptions": self.pubsub_subscriptions,
            "broker_reconnects": self.broker_reconnects,
            "upstream_retries": self.upstream_retries,
            "upstream_retries_throttled": self.upstream_retries_throttled,
            "ack_latency": {
                "buckets": list(self.ack_latency.buckets),
                "counts": list(self.ack_latency.counts),
                "sum": self.ack_latency.sum,
                "count": self.ack_latency.count,
            },
        }
