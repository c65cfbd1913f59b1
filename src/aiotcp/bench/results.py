"""Result types of a load run, HDR histogram helpers, and merging results across processes.

Latencies are recorded in microseconds into an HDR histogram (the ``hdrhistogram`` package,
imported lazily) covering 1 µs .. 60 s at 3 significant digits; values above are clamped.
Histograms travel between processes as the package's compressed base64 encoding.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

#: Highest latency the histogram tracks, in microseconds (longer values are clamped to it).
MAX_LATENCY_US = 60_000_000
#: Percentiles reported, as (label, percentile).
PERCENTILES: tuple[tuple[str, float], ...] = (
    ("p50", 50.0),
    ("p90", 90.0),
    ("p99", 99.0),
    ("p99.9", 99.9),
)
#: A client process above this share of one core is probably the bottleneck, not the server.
CLIENT_BOUND_CPU = 90.0


def new_histogram() -> Any:
    """Return an empty HDR histogram in microseconds."""
    from hdrh.histogram import HdrHistogram

    return HdrHistogram(1, MAX_LATENCY_US, 3)


def encode_buckets(buckets: list[list[int]]) -> str:
    """Return the HDR encoding of ``[[nanoseconds, count], ...]`` (the C engine's histogram).

    Values are recorded in microseconds, rounded, at least 1 (the HDR histogram's floor).
    """
    hist = new_histogram()
    for nanos, count in buckets:
        hist.record_value(min(max(1, round(nanos / 1000)), MAX_LATENCY_US), count)
    return hist.encode().decode() if hist.get_total_count() else ""


def latency_summary_ms(hist: Any) -> dict[str, float]:
    """Return p50/p90/p99/p99.9/max/mean of ``hist`` in milliseconds (zeros when empty)."""
    if hist.get_total_count() == 0:
        return {label: 0.0 for label, _ in PERCENTILES} | {"max": 0.0, "mean": 0.0}
    out = {label: hist.get_value_at_percentile(pct) / 1000.0 for label, pct in PERCENTILES}
    out["max"] = hist.get_max_value() / 1000.0
    out["mean"] = round(hist.get_mean_value() / 1000.0, 3)
    return out


@dataclass
class LoadResult:
    """Outcome of one load run (possibly merged over several client processes).

    ``throughput`` is messages acked inside the measured window divided by its length.
    ``errors`` maps a kind (``connect``, ``verify``, ``closed``, ``unanswered``, ``ERR <code>``)
    to a count; ``error_samples`` holds the first few descriptions. ``client_cpu`` is each
    client process's CPU use during the window as a percentage of one core (CPU time over
    wall time, from getrusage of the load-generator process). ``engine`` is ``c`` (the
    compiled epoll engine) or ``python``.
    """

    connections: int
    connected: int = 0
    duration: float = 0.0
    messages_sent: int = 0
    messages_acked: int = 0
    throughput: float = 0.0
    latency_ms: dict[str, float] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)
    error_samples: list[str] = field(default_factory=list)
    client_cpu: list[float] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)
    histogram: str = ""  # HDR histogram, compressed base64
    engine: str = "python"

    @property
    def ok(self) -> bool:
        """True when every connection connected and no error of any kind was seen."""
        return self.connected == self.connections and not self.errors

    @property
    def client_bound(self) -> bool:
        """True when some client process used more than CLIENT_BOUND_CPU % of a core."""
        return any(c > CLIENT_BOUND_CPU for c in self.client_cpu)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict (with ``ok`` and ``client_bound``)."""
        d = dataclasses.asdict(self)
        d["ok"] = self.ok
        d["client_bound"] = self.client_bound
        return d

    def to_json(self) -> str:
        """One line of JSON."""
        return json.dumps(self.to_dict(), ensure_ascii=False)


def add_error(
    errors: dict[str, int], samples: list[str], kind: str, detail: str, keep: int = 5
) -> None:
    """Count one error of ``kind`` and keep ``detail`` if fewer than ``keep`` samples exist."""
    errors[kind] = errors.get(kind, 0) + 1
    if len(samples) < keep:
        samples.append(f"{kind}: {detail}")


def finish(result: LoadResult) -> LoadResult:
    """Fill latency summary and client-bound warning from ``histogram`` and ``client_cpu``."""
    hist = new_histogram()
    if result.histogram:
        hist.decode_and_add(result.histogram)
    result.latency_ms = latency_summary_ms(hist)
    if result.client_bound:
        worst = max(result.client_cpu)
        result.warnings.append(
            f"client CPU at {worst:.0f}% of a core in a load-generator process: the client is likely "
            "the bottleneck, so throughput is a lower bound for the server (use --processes, or the "
            "compiled engine)"
        )
    return result


def merge(parts: list[LoadResult], connections: int, config: dict[str, Any]) -> LoadResult:
    """Merge per-process results: sums counts and histograms; duration is the longest window."""
    out = LoadResult(connections=connections, config=config)
    out.engine = parts[0].engine if parts else "python"
    hist = new_histogram()
    for part in parts:
        out.connected += part.connected
        out.duration = max(out.duration, part.duration)
        out.messages_sent += part.messages_sent
        out.messages_acked += part.messages_acked
        out.throughput += part.throughput
        for kind, n in part.errors.items():
            out.errors[kind] = out.errors.get(kind, 0) + n
        out.error_samples.extend(part.error_samples[: max(0, 5 - len(out.error_samples))])
        out.client_cpu.extend(part.client_cpu)
        out.warnings.extend(w for w in part.warnings if w not in out.warnings)
        if part.histogram:
            hist.decode_and_add(part.histogram)
    out.histogram = hist.encode().decode() if hist.get_total_count() else ""
    return finish(out)
