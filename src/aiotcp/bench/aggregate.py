"""Fold the repeated runs of one (server, workload) into one row: medians and their spread.

Each figure in a compare report is the median over interleaved runs, with min and max kept
beside it; ratios divide one server's median by a reference server's median on the same
workload.
"""

from __future__ import annotations

import statistics
from typing import Any

#: Reference servers for the ratio columns: (server, row key).
REFERENCES: tuple[tuple[str, str], ...] = (
    ("uvloop_protocol", "vs_uvloop_protocol"),
    ("c-epoll", "vs_c_epoll"),
    ("seed", "vs_seed"),
)


def _median(values: list[float]) -> float:
    return float(statistics.median(values)) if values else 0.0


def _spread(row: dict[str, Any], key: str, values: list[float], digits: int = 1) -> None:
    """Set ``row[key]`` to the median of ``values`` and ``key_min``/``key_max``/``key_runs``."""
    row[key] = round(_median(values), digits)
    row[f"{key}_min"] = round(min(values), digits)
    row[f"{key}_max"] = round(max(values), digits)
    row[f"{key}_runs"] = [round(v, digits) for v in values]


def combine(base: dict[str, Any], runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Return one report row from ``runs`` (per-run result dicts) of the workload in ``base``.

    A run that failed outright (``status`` error: the server did not start) makes the row an
    error; errors of the other runs are summed, their first samples kept.
    """
    row = dict(base)
    row["runs"] = len(runs)
    failed = [r for r in runs if r.get("status") == "error"]
    if failed or not runs:
        return row | {"status": "error", "note": failed[0]["note"] if failed else "no runs"}
    errors: dict[str, int] = {}
    samples: list[str] = []
    for r in runs:
        for kind, n in r.get("errors", {}).items():
            errors[kind] = errors.get(kind, 0) + n
        samples.extend(r.get("error_samples", [])[: max(0, 3 - len(samples))])
    row["errors"] = errors
    row["error_samples"] = samples
    if row["kind"] in ("load", "connect"):  # a connect cycle is counted as a message
        _spread(row, "throughput", [r["throughput"] for r in runs])
        keys = runs[0]["latency_ms"].keys()
        row["latency_ms"] = {k: round(_median([r["latency_ms"][k] for r in runs]), 3) for k in keys}
        _spread(row, "client_cpu_pct", [max(r["client_cpu"] or [0.0]) for r in runs])
        row["client_bound"] = any(r["client_bound"] for r in runs)
        row["engine"] = runs[0]["engine"]
        _spread(row, "server_cpu_pct", [r["server_cpu_pct"] for r in runs])
        _spread(row, "other_cpu_pct", [r.get("other_cpu_pct", 0.0) for r in runs])
        row["connected"] = min(r["connected"] for r in runs)
        row["warnings"] = sorted({w for r in runs for w in r.get("warnings", [])})
        if row["kind"] == "connect":
            _spread(row, "server_us_per_conn", [r.get("server_us_per_conn", 0.0) for r in runs], 2)
    else:
        _spread(row, "kib_per_conn", [r["kib_per_conn"] for r in runs], 2)
        row["held"] = min(r["held"] for r in runs)
    row["peak_rss_kib"] = max(r.get("peak_rss_kib", 0) for r in runs)
    row["status"] = "ok" if not errors else "errors"
    return row


def add_ratios(rows: list[dict[str, Any]]) -> None:
    """Add ``vs_<reference>`` median-throughput ratios (see REFERENCES) to each load row."""
    base: dict[tuple[str, str], float] = {
        (r["server"], r["workload"]): r["throughput"] for r in rows if r.get("throughput")
    }
    for r in rows:
        for ref, key in REFERENCES:
            ref_tp = base.get((ref, r["workload"]))
            if r.get("throughput") and ref_tp:
                r[key] = round(r["throughput"] / ref_tp, 2)
