"""Write the compare report: report.md, report.html (plots embedded), results.json, PNGs.

Input is the list of result rows from ``compare.run_compare`` (one per server x workload).
matplotlib is imported only here and only if present; without it the report has no plots.
"""

from __future__ import annotations

import base64
import html
import json
import os
from typing import Any

#: Marks a throughput cell where the load generator used >= 85% of its core.
CLIENT_BOUND_MARK = "†"
HEADLINE = ("c100-f1-s64", "c100-f16-s64")


def _index(rows: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(r["server"], r["workload"]): r for r in rows}


def _cell(row: dict[str, Any] | None, what: str) -> str:
    if row is None:
        return "-"
    if row.get("status") in ("n/a", "skipped"):
        return str(row["status"])
    if row.get("status") == "error":
        return "failed"
    if what == "throughput":
        text = f"{row.get('throughput', 0):,.0f}"
        if row.get("client_bound"):
            text += CLIENT_BOUND_MARK
    elif what == "p99":
        text = f"{row.get('latency_ms', {}).get('p99', 0):.2f}"
    elif what == "kib":
        text = f"{row.get('kib_per_conn', 0):.1f}"
    else:
        text = str(row.get(what, "-"))
    if row.get("errors"):
        text += " (err)"
    return text


def tables(
    rows: list[dict[str, Any]], workloads: list[str], servers: list[str]
) -> list[tuple[str, list[str], list[list[str]]]]:
    """Return (title, header, body rows) for each report table; one body row per server."""
    by = _index(rows)
    loads = [w for w in workloads if not w.startswith("hold")]
    holds = [w for w in workloads if w.startswith("hold")]
    out = []
    out.append(
        (
            "Throughput, messages/s (closed loop; c = connections, f = in flight, s = message bytes)",
            ["server", *loads],
            [[s, *(_cell(by.get((s, w)), "throughput") for w in loads)] for s in servers],
        )
    )
    out.append(
        (
            "p99 latency, ms",
            ["server", *loads],
            [[s, *(_cell(by.get((s, w)), "p99") for w in loads)] for s in servers],
        )
    )
    head = [w for w in HEADLINE if w in loads] or loads[:2]
    summary_header = [
        "server",
        *(f"{w} vs uvloop Protocol" for w in head),
        *(f"{w} vs seed" for w in head),
        *(f"KiB per held conn ({w[4:]})" for w in holds),
        "server CPU % (max)",
        "peak RSS MiB (max)",
    ]
    body = []
    for s in servers:
        line = [s]
        for key in ("vs_uvloop_protocol", "vs_seed"):
            for w in head:
                r = by.get((s, w))
                line.append(f"{r[key]:.2f}" if r and key in r else "-")
        line.extend(_cell(by.get((s, w)), "kib") for w in holds)
        mine = [r for r in rows if r["server"] == s]
        cpu = [r.get("server_cpu_pct", 0.0) for r in mine if "server_cpu_pct" in r]
        rss = [r.get("peak_rss_kib", 0) for r in mine if "peak_rss_kib" in r]
        line.append(f"{max(cpu):.0f}" if cpu else "-")
        line.append(f"{max(rss) / 1024:.0f}" if rss else "-")
        body.append(line)
    out.append(("Ratios and memory", summary_header, body))
    return out


def _markdown_table(header: list[str], body: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines.extend("| " + " | ".join(row) + " |" for row in body)
    return "\n".join(lines)


def _notes(rows: list[dict[str, Any]], meta: dict[str, Any]) -> list[str]:
    notes = [
        f"Command: `{meta.get('command', '')}`; {meta.get('date', '')}; Python {meta.get('python')}; "
        f"{meta.get('cores')} cores; {meta.get('pinning')}.",
        "Load generator: `aiotcp bench` (Python, uvloop), one process, every reply verified "
        "(byte-exact per message; the seed servers in loose mode, since they reply per 100-byte read).",
        f"{CLIENT_BOUND_MARK} = the load generator used >= 85% of its core: that number is a lower bound "
        "for the server, the client was (also) the bottleneck.",
        "The seed server as written prints every message; its stdout goes to /dev/null (the prints still "
        "cost CPU). n/a = the seed cannot serve messages over its 100-byte read size.",
        "KiB per held connection = (server VmRSS with N idle connections - VmRSS before) / N.",
    ]
    if meta.get("aiotcp_args"):
        notes.append(f"aiotcp extra flags: `{' '.join(meta['aiotcp_args'])}`.")
    for r in rows:
        if r.get("errors") or r.get("status") in ("error", "skipped"):
            detail = "; ".join(r.get("error_samples", [])[:2]) or r.get("note", "")
            notes.append(
                f"{r['server']} {r['workload']}: {r.get('status')} {r.get('errors', '')} {detail}".strip()
            )
    return notes


def _plots(out_dir: str, rows: list[dict[str, Any]], servers: list[str]) -> list[str]:
    """Write PNGs; return their file names (empty if matplotlib is missing or nothing to plot)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    written: list[str] = []
    loads = [
        r for r in rows if r.get("kind") == "load" and r.get("throughput") and r.get("size") == 64
    ]
    if loads:
        for metric, fname, ylabel in (
            ("throughput", "throughput.png", "messages/s"),
            ("p99", "p99.png", "p99 latency, ms"),
        ):
            fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
            for ax, inflight in zip(axes, (1, 16), strict=True):
                for s in servers:
                    pts = sorted(
                        (
                            r["connections"],
                            r["throughput"] if metric == "throughput" else r["latency_ms"]["p99"],
                        )
                        for r in loads
                        if r["server"] == s and r["in_flight"] == inflight
                    )
                    if pts:
                        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=s)
                ax.set_xscale("log")
                ax.set_yscale("log")
                ax.set_title(f"64 B messages, {inflight} in flight")
                ax.set_xlabel("connections")
                ax.grid(True, which="both", alpha=0.3)
            axes[0].set_ylabel(ylabel)
            if axes[1].get_legend_handles_labels()[0]:
                axes[1].legend(fontsize=7)
            fig.tight_layout()
            fig.savefig(os.path.join(out_dir, fname), dpi=80)
            plt.close(fig)
            written.append(fname)
    holds = [r for r in rows if r.get("kind") == "hold" and "kib_per_conn" in r]
    if holds:
        fig, ax = plt.subplots(figsize=(8, 3.5))
        ax.barh(
            [f"{r['server']} ({r['connections']})" for r in holds],
            [r["kib_per_conn"] for r in holds],
        )
        ax.set_xlabel("server KiB per held idle connection")
        ax.grid(True, axis="x", alpha=0.3)
        fig.tight_layout()
        fig.savefig(os.path.join(out_dir, "memory.png"), dpi=80)
        plt.close(fig)
        written.append("memory.png")
    return written


def write_report(
    out_dir: str,
    rows: list[dict[str, Any]],
    meta: dict[str, Any],
    workloads: list[str],
    servers: list[str],
) -> None:
    """Write report.md, report.html, results.json and the PNG plots into ``out_dir``."""
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "results.json"), "w") as f:
        json.dump({"meta": meta, "rows": rows}, f, indent=1, ensure_ascii=False)
    tabs = tables(rows, workloads, servers)
    notes = _notes(rows, meta)
    pngs = _plots(out_dir, rows, servers)
    md = ["# aiotcp compare", ""]
    for title, header, body in tabs:
        md += [f"## {title}", "", _markdown_table(header, body), ""]
    md += ["## Notes", ""] + [f"- {n}" for n in notes] + [""]
    md += [f"![{p}]({p})" for p in pngs]
    with open(os.path.join(out_dir, "report.md"), "w") as f:
        f.write("\n".join(md) + "\n")
    h = [
        "<!doctype html><meta charset='utf-8'><title>aiotcp compare</title>",
        "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}td:first-child{text-align:left}</style>",
        "<h1>aiotcp compare</h1>",
    ]
    for title, header, body in tabs:
        h.append(
            f"<h2>{html.escape(title)}</h2><table><tr>"
            + "".join(f"<th>{html.escape(c)}</th>" for c in header)
            + "</tr>"
        )
        h.extend(
            "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in body
        )
        h.append("</table>")
    for p in pngs:
        with open(os.path.join(out_dir, p), "rb") as img:
            h.append(
                f"<p><img alt='{p}' src='data:image/png;base64,{base64.b64encode(img.read()).decode()}'></p>"
            )
    h.append("<h2>Notes</h2><ul>" + "".join(f"<li>{html.escape(n)}</li>" for n in notes) + "</ul>")
    with open(os.path.join(out_dir, "report.html"), "w") as f:
        f.write("\n".join(h) + "\n")
