"""Prometheus exposition of ``Stats``: a custom collector that reads the counters at scrape time.

The hot path never touches prometheus_client: it bumps plain ints in ``Stats``; this
collector turns a ``Stats.snapshot()`` dict into metric families when Prometheus
scrapes. The same collector serves one process (its own live Stats) and the worker
supervisor (the sum of the workers' snapshots, see ``aiotcp.observe.snapshots``).

prometheus_client is an optional dependency (extra ``metrics``); import this module
only when metrics are on.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

# Label values exported as 0 before they first happen, so dashboards and rate() see a
# series from the start (Prometheus' advice: avoid missing metrics).
REFUSE_REASONS = ("busy", "busy-ip", "emfile", "shutdown")
ERROR_CODES = (
    "invalid-utf8",
    "too-long",
    "busy",
    "idle-timeout",
    "timeout",
    "internal",
    "shutdown",
    "unavailable",
    "bad-command",
)

# Why the front door closed a connection before the application saw it (mirrors
# aiotcp.frontdoor.proxyproto.REASONS; observe imports nothing from the layers it watches).
PROXY_REJECT_REASONS = ("bad-signature", "too-long", "malformed", "untrusted", "timeout")

Snapshot = Mapping[str, Any]


def _labelled(
    name: str, doc: str, label: str, values: Mapping[str, int], known: tuple[str, ...]
) -> CounterMetricFamily:
    family = CounterMetricFamily(name, doc, labels=[label])
    merged = dict.fromkeys(known, 0)
    merged.update(values)
    for key in sorted(merged):
        family.add_metric([key], merged[key])
    return family


def families(snap: Snapshot) -> Iterator[Metric]:
    """The aiotcp metric families for one ``Stats.snapshot()``-shaped dict."""
    yield GaugeMetricFamily(
        "aiotcp_connections", "Connections open now.", value=snap["connections"]
    )
    yield CounterMetricFamily(
        "aiotcp_connections_accepted",
        "Connections accepted.",
        value=snap["connections_accepted"],
    )
    yield _labelled(
        "aiotcp_connections_refused",
        "Connections refused, by reason (busy, busy-ip, emfile, shutdown).",
        "reason",
        snap["connections_refused"],
        REFUSE_REASONS,
    )
    yield CounterMetricFamily(
        "aiotcp_messages_received", "Complete messages received.", value=snap["messages_received"]
    )
    yield CounterMetricFamily(
        "aiotcp_messages_acked", "Messages acked (handler finished).", value=snap["messages_acked"]
    )
    yield CounterMetricFamily(
        "aiotcp_bytes_received", "Bytes read from clients.", value=snap["bytes_received"]
    )
    yield CounterMetricFamily(
        "aiotcp_bytes_sent", "Bytes written to clients.", value=snap["bytes_sent"]
    )
    yield _labelled(
        "aiotcp_errors",
        "ERR replies sent, by code.",
        "code",
        snap["errors"],
        ERROR_CODES,
    )
    yield _labelled(
        "aiotcp_proxy_rejected",
        "Connections closed for their PROXY protocol header, by reason.",
        "reason",
        snap.get("proxy_rejected", {}),
        PROXY_REJECT_REASONS,
    )
    yield CounterMetricFamily(
        "aiotcp_handshake_timeouts",
        "Connections closed for not finishing the PROXY header and TLS handshake in time.",
        value=snap.get("handshake_timeouts", 0),
    )
    yield CounterMetricFamily(
        "aiotcp_tls_handshake_failures",
        "TLS handshakes that failed (bad client hello, refused client certificate, ...).",
        value=snap.get("tls_handshake_failures", 0),
    )
    yield from _pubsub(snap)
    for name, key, doc in GATEWAY_COUNTERS:
        yield CounterMetricFamily(name, doc, value=snap.get(key, 0))
    yield _histogram(snap["ack_latency"])
    yield GaugeMetricFamily(
        "aiotcp_loop_lag_seconds",
        "Event-loop lag: how late the last 0.25 s sleep woke up (max over workers).",
        value=snap["loop_lag_seconds"],
    )
    yield CounterMetricFamily(
        "aiotcp_loop_stalls",
        "Times the event loop was blocked longer than block_threshold.",
        value=snap["loop_stalls"],
    )


# The pubsub app's counters: (metric, snapshot key, help).
PUBSUB_COUNTERS = (
    ("aiotcp_pubsub_published", "pubsub_published", "PUB messages the broker accepted (acked)."),
    ("aiotcp_pubsub_delivered", "pubsub_delivered", "MSG frames pushed to subscribers."),
    ("aiotcp_pubsub_dropped", "pubsub_dropped",
     "MSG frames dropped for subscribers holding too much unread output."),
    ("aiotcp_broker_reconnects", "broker_reconnects",
     "Broker connections re-established after a loss."),
)


# The gateway app's counters: (metric, snapshot key, help).
GATEWAY_COUNTERS = (
    ("aiotcp_upstream_retries", "upstream_retries",
     "Calls retried after they failed to reach the upstream."),
    ("aiotcp_upstream_retries_throttled", "upstream_retries_throttled",
     "Retries refused by the retry budget (too many calls failing)."),
)


def _pubsub(snap: Snapshot) -> Iterator[Metric]:
    """The pubsub app's families (zero for other apps, so every series always exists)."""
    for name, key, doc in PUBSUB_COUNTERS:
        yield CounterMetricFamily(name, doc, value=snap.get(key, 0))
    yield GaugeMetricFamily(
        "aiotcp_pubsub_subscriptions",
        "Subscriptions (connection, topic) held now.",
        value=snap.get("pubsub_subscriptions", 0),
    )


def _go_float(bound: float) -> str:
    """A bucket bound as Prometheus writes it: ``+Inf``, ``0.005``, ``1.0``."""
    return "+Inf" if bound == float("inf") else repr(float(bound))


def _histogram(h: Mapping[str, Any]) -> HistogramMetricFamily:
    bounds: list[float] = list(h["buckets"])
    counts: list[int] = list(h["counts"])
    cumulative, running = [], 0
    for bound, count in zip([*bounds, float("inf")], counts, strict=True):
        running += count
        cumulative.append((_go_float(bound), running))
    return HistogramMetricFamily(
        "aiotcp_ack_latency_seconds",
        "Seconds from a message's arrival to its ack being written.",
        buckets=cumulative,
        sum_value=h["sum"],
    )


class StatsCollector:
    """prometheus_client collector: calls ``source()`` at every scrape.

    ``source`` returns a ``Stats.snapshot()``-shaped dict; ``extra`` (optional) returns
    more families (the supervisor adds worker gauges). Neither may block for long: they
    run in the scraping thread or loop.
    """

    def __init__(
        self,
        source: Callable[[], Snapshot],
        extra: Callable[[], Iterator[Metric]] | None = None,
    ) -> None:
        self._source = source
        self._extra = extra

    def collect(self) -> Iterator[Metric]:
        yield from families(self._source())
        if self._extra is not None:
            yield from self._extra()

    def describe(self) -> list[Metric]:
        # Empty: the registry must not call collect() at registration (the source may
        # not be ready yet); prometheus_client then skips duplicate-name checks.
        return []


def make_registry(
    source: Callable[[], Snapshot],
    extra: Callable[[], Iterator[Metric]] | None = None,
) -> CollectorRegistry:
    """A fresh registry holding only a StatsCollector (not the global default registry)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StatsCollector(source, extra))
    return registry


def exposition(registry: CollectorRegistry) -> bytes:
    """The Prometheus text exposition format for ``registry``."""
    return generate_latest(registry)
