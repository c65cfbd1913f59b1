"""Write the compare report: report.md, report.html (plots embedded), results.json, PNGs.

Input is the list of rows from ``compare.run_compare`` (one per server x workload, each the
median of its interleaved runs with min and max).
"""

from __future__ import annotations

import base64
import html
import json
import os
from typing import Any

from aiotcp.bench.cengine import CONNECT_SOURCES
from aiotcp.bench.plots import write_plots
from aiotcp.bench.results import CLIENT_BOUND_CPU
from aiotcp.bench.stamp import stamp_line
from aiotcp.bench.workloads import HEADLINE

#: Marks a figure where the load generator used more than CLIENT_BOUND_CPU % of its core.
CLIENT_BOUND_MARK = "†"
#: Ratio columns: (row key, column label).
RATIOS: tuple[tuple[str, str], ...] = (
    ("vs_uvloop_protocol", "vs uvloop Protocol"),
    ("vs_c_epoll", "vs C epoll"),
    ("vs_seed", "vs seed"),
)
Table = tuple[str, list[str], list[list[str]]]


def _si(x: float) -> str:
    """1234567 -> '1.23M', 84500 -> '84.5k'."""
    for unit, div in (("M", 1e6), ("k", 1e3)):
        if x >= div:
            return f"{x / div:.3g}{unit}"
    return f"{x:.0f}"


def _cell(row: dict[str, Any] | None, what: str) -> str:
    if row is None:
        return "-"
    if row.get("status") in ("n/a", "skipped"):
        return str(row["status"])
    if row.get("status") == "error":
        return "failed"
    if what == "throughput":
        text = (
            f"{row['throughput']:,.0f} ({_si(row['throughput_min'])}–{_si(row['throughput_max'])})"
        )
        if row.get("client_bound"):
            text += CLIENT_BOUND_MARK
    elif what == "p99":
        text = f"{row['latency_ms']['p99']:.2f}"
    elif what == "us_per_conn":
        text = (f"{row['server_us_per_conn']:.1f} ({row['server_us_per_conn_min']:.1f}–"
                f"{row['server_us_per_conn_max']:.1f})")  # fmt: skip
    else:  # kib
        text = f"{row['kib_per_conn']:.2f} ({row['kib_per_conn_min']:.2f}–{row['kib_per_conn_max']:.2f})"
    if row.get("errors"):
        text += " (err)"
    return text


def headline(loads: list[str]) -> list[str]:
    """The load workloads whose ratios head the report."""
    chosen = [w for w in loads if w.split("-d")[0] in HEADLINE]
    return chosen or loads[:2]


def _column(workload: str) -> str:
    """A throughput column's label: the workload, and its unit when it is not replies/s."""
    return f"{workload} (new conns/s)" if workload.startswith("connect") else workload


def tables(rows: list[dict[str, Any]], workloads: list[str], servers: list[str]) -> list[Table]:
    """Return (title, header, body rows) for each report table; one body row per server.

    Connection-rate workloads (``connect<N>``) sit among the load columns, their figure new
    connections per second (one reply each), and always have a ratio column.
    """
    by = {(r["server"], r["workload"]): r for r in rows}
    loads = [w for w in workloads if not w.startswith("hold")]
    holds = [w for w in workloads if w.startswith("hold")]
    out: list[Table] = [
        (
            "Throughput, replies/s: median of the runs (min–max)",
            ["server", *map(_column, loads)],
            [[s, *(_cell(by.get((s, w)), "throughput") for w in loads)] for s in servers],
        ),
        (
            "p99 latency, ms (median of the runs)",
            ["server", *loads],
            [[s, *(_cell(by.get((s, w)), "p99") for w in loads)] for s in servers],
        ),
    ]
    head = list(dict.fromkeys([*headline(loads), *(w for w in loads if w.startswith("connect"))]))
    header = ["server", *(f"{w} {label}" for _, label in RATIOS for w in head)]
    body = []
    for s in servers:
        line = [s]
        for key, _ in RATIOS:
            for w in head:
                r = by.get((s, w))
                line.append(f"{r[key]:.2f}" if r and key in r else "-")
        body.append(line)
    out.append(("Ratios of median throughput (same workload)", header, body))
    rates = [w for w in loads if w.startswith("connect")]
    if rates:
        body = [[s, *(_cell(by.get((s, w)), "us_per_conn") for w in rates)] for s in servers]
        out.append(("Server CPU per new connection, µs: median of the runs (min–max)",
                    ["server", *rates], body))  # fmt: skip
    header = [
        "server", *(f"KiB per held conn ({w[4:]})" for w in holds),
        "client CPU % (max)", "server CPU % (max)", "other processes CPU % (max)",
        "peak RSS MiB (max)",
    ]  # fmt: skip
    body = []
    for s in servers:
        mine = [r for r in rows if r["server"] == s]
        client = [r["client_cpu_pct_max"] for r in mine if "client_cpu_pct_max" in r]
        cpu = [r["server_cpu_pct_max"] for r in mine if "server_cpu_pct_max" in r]
        other = [r["other_cpu_pct_max"] for r in mine if "other_cpu_pct_max" in r]
        rss = [r["peak_rss_kib"] for r in mine if "peak_rss_kib" in r]
        body.append([
            s, *(_cell(by.get((s, w)), "kib") for w in holds),
            f"{max(client):.0f}" if client else "-", f"{max(cpu):.0f}" if cpu else "-",
            f"{max(other):.0f}" if other else "-",
            f"{max(rss) / 1024:.0f}" if rss else "-",
        ])  # fmt: skip
    out.append(("Memory and CPU", header, body))
    return out


def size_label(size: int) -> str:
    """64 -> '64 B', 1024 -> '1 KiB', 16384 -> '16 KiB', 60000 -> '60 KB'."""
    if size >= 1024 and size % 1024 == 0:
        return f"{size // 1024} KiB"
    if size >= 1000 and size % 1000 == 0:
        return f"{size // 1000} KB"
    return f"{size} B"


def ladder_table(
    rows: list[dict[str, Any]], ladder: list[str], servers: list[str]
) -> tuple[list[str], list[list[str]]] | None:
    """The payload ladder: one body row per rung (size, framing), one column per server;
    each cell replies/s (median) and the ratio to the uvloop Protocol on that rung. None
    when no rung was run."""
    by = {(r["server"], r["workload"]): r for r in rows}
    rungs = [w for w in ladder if any((s, w) in by for s in servers)]
    if not rungs:
        return None
    body = []
    head = next(by[(s, rungs[0])] for s in servers if (s, rungs[0]) in by)
    for w in rungs:
        first = next(by[(s, w)] for s in servers if (s, w) in by)
        line = [size_label(first["size"]), first["framing"]]
        if (first["connections"], first["in_flight"]) != (head["connections"], head["in_flight"]):
            line[0] += f" ({first['connections']} conns, {first['in_flight']} in flight)"
        for s in servers:
            r = by.get((s, w))
            if r is None or not r.get("throughput"):
                line.append(_cell(r, "throughput") if r else "-")
                continue
            mark = CLIENT_BOUND_MARK if r.get("client_bound") else ""
            ratio = f" {r['vs_uvloop_protocol']:.2f}" if "vs_uvloop_protocol" in r else ""
            line.append(f"{_si(r['throughput'])}{mark}{ratio}" + (" (err)" if r.get("errors") else ""))
        body.append(line)
    label = f"message ({head['connections']} conns, {head['in_flight']} in flight)"
    return [label, "framing", *servers], body


def warnings(rows: list[dict[str, Any]]) -> list[str]:
    """One line per load row whose client was above CLIENT_BOUND_CPU % of a core."""
    return [
        f"WARNING: {r['server']} {r['workload']}: the load generator used up to "
        f"{r['client_cpu_pct_max']:.0f}% of its core; it was (also) the bottleneck, so the "
        "server may be faster than shown"
        for r in rows
        if r.get("client_bound")
    ]


def _engine_note(meta: dict[str, Any]) -> str:
    if meta.get("engine") == "c":
        what = "the compiled C epoll engine (`aiotcp bench --engine c`), one process"
    else:
        what = "the Python engine (`aiotcp bench --engine python`, uvloop), one process"
        if meta.get("engine_note"):
            what += f" ({meta['engine_note']})"
    return (
        f"Load generator: {what}; every reply verified (byte-exact per message; the seed "
        "servers in loose mode, since they reply per 100-byte read). Client CPU = the "
        "generator's CPU time / wall time over the measured window (getrusage)."
    )


def _notes(rows: list[dict[str, Any]], meta: dict[str, Any]) -> list[str]:
    notes = [
        (
            f"Command: `{meta.get('command', '')}`; {meta.get('date', '')}; "
            f"Python {meta.get('python')}; {meta.get('cores')} cores; {meta.get('pinning')}."
        ),
        (
            f"Each figure is the median of {meta.get('runs', 1)} interleaved runs (every server "
            "once, then again, ...), a fresh server process per run."
        ),
        _engine_note(meta),
        (
            f"{CLIENT_BOUND_MARK} = in some run the load generator used more than "
            f"{CLIENT_BOUND_CPU:.0f}% of its core: a lower bound for the server."
        ),
        (
            "The seed server as written prints every message; its stdout goes to /dev/null (the "
            "prints still cost CPU). n/a = the seed cannot serve messages over its 100-byte read."
        ),
        "KiB per held connection = (server VmRSS with N idle connections - VmRSS before) / N.",
        (
            "CPU % is of one core over the measured window (softirq time, which the kernel "
            "accounts apart from processes, is in no column); 'other processes' is the "
            "machine's process time (/proc/stat) minus the server's and the client's: where it "
            "is high, the run shared its cores with other work and its figures are low and noisy."
        ),
    ]
    if any(r.get("kind") == "connect" for r in rows):
        notes.append(
            "connect<N> = the connection rate: N loops of the compiled connrate client (epoll, "
            "one thread) each connect, send one 64-byte line, read and verify the whole reply, "
            "close (the client first, so TIME_WAIT stays on its side; its loops bind "
            f"127.0.0.1-{CONNECT_SOURCES} so the ephemeral ports last) and repeat; the figure "
            "is completed cycles per second, its latency a whole cycle's."
        )
    if meta.get("aiotcp_args"):
        notes.append(f"aiotcp extra flags: `{' '.join(meta['aiotcp_args'])}`.")
    for r in rows:
        if r.get("errors") or r.get("status") in ("error", "skipped"):
            detail = "; ".join(r.get("error_samples", [])[:2]) or r.get("note", "")
            notes.append(
                f"{r['server']} {r['workload']}: {r.get('status')} {r.get('errors', '')} {detail}".strip()
            )
    return notes


def _markdown_table(header: list[str], body: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines.extend("| " + " | ".join(row) + " |" for row in body)
    return "\n".join(lines)


def write_report(
    out_dir: str,
    rows: list[dict[str, Any]],
    meta: dict[str, Any],
    workloads: list[str],
    servers: list[str],
) -> None:
    """Write report.md, report.html, results.json and the PNG plots into ``out_dir``.

    ``meta["stamp"]`` (``aiotcp.bench.stamp``), when present, heads results.json and is
    printed under the report's title.
    """
    os.makedirs(out_dir, exist_ok=True)
    meta = dict(meta)
    stamp = meta.pop("stamp", None)
    with open(os.path.join(out_dir, "results.json"), "w") as f:
        json.dump({"stamp": stamp, "meta": meta, "rows": rows}, f, indent=1, ensure_ascii=False)
    tabs = tables(rows, workloads, servers)
    ladder = ladder_table(rows, meta.get("ladder", []), meta.get("ladder_servers", []))
    if ladder is not None:
        tabs.append(("Payload ladder: replies/s, ratio to the uvloop Protocol", *ladder))
    notes = _notes(rows, meta)
    warned = warnings(rows)
    loads = [w for w in workloads if not w.startswith("hold")]
    pngs = write_plots(out_dir, rows, servers, headline(loads))
    md = ["# aiotcp compare", "", stamp_line(stamp), ""]
    for title, header, body in tabs:
        md += [f"## {title}", "", _markdown_table(header, body), ""]
    md += ["## Notes", ""] + [f"- {n}" for n in warned + notes] + [""]
    md += [f"![{p}]({p})" for p in pngs]
    with open(os.path.join(out_dir, "report.md"), "w") as f:
        f.write("\n".join(md) + "\n")
    h = [
        "<!doctype html><meta charset='utf-8'><title>aiotcp compare</title>",
        (
            "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
            "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}"
            "td:first-child{text-align:left}</style>"
        ),
        "<h1>aiotcp compare</h1>",
        f"<p>{html.escape(stamp_line(stamp).strip('*'))}</p>",
    ]
    for title, header, body in tabs:
        h.append(f"<h2>{html.escape(title)}</h2><table><tr>")
        h.append("".join(f"<th>{html.escape(c)}</th>" for c in header) + "</tr>")
        h.extend("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in body)
        h.append("</table>")
    for p in pngs:
        with open(os.path.join(out_dir, p), "rb") as img:
            data = base64.b64encode(img.read()).decode()
        h.append(f"<p><img alt='{p}' src='data:image/png;base64,{data}'></p>")
    h.append("<h2>Notes</h2><ul>" + "".join(f"<li>{html.escape(n)}</li>" for n in warned + notes))
    h.append("</ul>")
    with open(os.path.join(out_dir, "report.html"), "w") as f:
        f.write("\n".join(h) + "\n")
