"""The compare report's plots: throughput and p99 per server (bars with min–max), memory.

matplotlib is imported only here, and only when present; without it the report has no
plots and says nothing worse.
"""

from __future__ import annotations

import os
from typing import Any

#: Pixels per inch of the written PNGs (small files, still legible).
DPI = 80


def write_plots(
    out_dir: str, rows: list[dict[str, Any]], servers: list[str], workloads: list[str]
) -> list[str]:
    """Write throughput.png, p99.png, memory.png; return the names written (none without matplotlib)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    by = {(r["server"], r["workload"]): r for r in rows}
    written: list[str] = []
    shown = [s for s in servers if any(by.get((s, w), {}).get("throughput") for w in workloads)]
    if shown and workloads:
        for fname, label in (("throughput.png", "replies/s"), ("p99.png", "p99 latency, ms")):
            fig, axes = plt.subplots(1, len(workloads), figsize=(5.5 * len(workloads), 0.4 * len(shown) + 1.5))
            for ax, w in zip(axes if len(workloads) > 1 else [axes], workloads, strict=True):
                vals, lo, hi = [], [], []
                for s in shown:
                    r = by.get((s, w), {})
                    if fname == "throughput.png":
                        v = r.get("throughput", 0.0)
                        vals.append(v)
                        lo.append(v - r.get("throughput_min", v))
                        hi.append(r.get("throughput_max", v) - v)
                    else:
                        vals.append(r.get("latency_ms", {}).get("p99", 0.0))
                        lo.append(0.0)
                        hi.append(0.0)
                ax.barh(shown, vals, xerr=[lo, hi], capsize=2)
                ax.invert_yaxis()
                ax.set_title(w)
                ax.set_xlabel(label)
                ax.grid(True, axis="x", alpha=0.3)
            fig.tight_layout()
            fig.savefig(os.path.join(out_dir, fname), dpi=DPI)
            plt.close(fig)
            written.append(fname)
    holds = [r for r in rows if r.get("kind") == "hold" and "kib_per_conn" in r]
    if holds:
        fig, ax = plt.subplots(figsize=(8, 0.3 * len(holds) + 1.2))
        ax.barh([f"{r['server']} ({r['connections']})" for r in holds], [r["kib_per_conn"] for r in holds])
        ax.invert_yaxis()
        ax.set_xlabel("server KiB per held idle connection")
        ax.grid(True, axis="x", alpha=0.3)
        fig.tight_layout()
        fig.savefig(os.path.join(out_dir, "memory.png"), dpi=DPI)
        plt.close(fig)
        written.append("memory.png")
    return written
