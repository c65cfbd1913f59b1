"""The README's figures, made from the result files in ``benchmarks/results/``, never typed.

Each figure is a block of the README between two markers::

    <!-- figures:tls -->
    | server | KiB per idle TLS connection | ... |
    ...
    *Stamp: commit ..., 2 cores, ...*
    <!-- /figures:tls -->

:func:`render` rewrites every such block from its result file (see :data:`FIGURES`), the
table followed by the stamp of the run that made it (``aiotcp.bench.stamp``).
``python -m aiotcp.bench.figures`` rewrites README.md in place (``make figures`` runs it
after the benchmarks); ``--check`` only says whether the README is current (exit 1 if
not). A test runs the check, so a hand edit inside a block fails the suite.

To add a figure: write ``def _name(data) -> list[str]`` (the block's lines, from the
parsed result file), add it to :data:`FIGURES` with its result file, and put the two
markers where the README shows it.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiotcp.bench.stamp import ROOT, stamp_line

RESULTS = ROOT / "benchmarks" / "results"
README = ROOT / "README.md"
BLOCK = re.compile(r"(<!-- figures:([\w-]+) -->\n)(.*?)(<!-- /figures:\2 -->)", re.DOTALL)


class FigureError(Exception):
    """A marker names no known figure, or a block's markers do not pair up."""


@dataclass(frozen=True)
class Figure:
    """One README block: the result file it is made from and how. A ``source`` ending
    in ``/`` is a directory of result files, one run each: the renderer gets
    ``{"files": {stem: parsed}}`` and the block ends with each run's stamp."""

    source: str  # relative to benchmarks/results/
    render: Callable[[dict[str, Any]], list[str]]


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    return [
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
        *("| " + " | ".join(r) + " |" for r in rows),
    ]


def _rate(x: float) -> str:
    """91234 -> '91k', 1612345 -> '1.61M', 812 -> '812'."""
    if x >= 1e6:
        return f"{x / 1e6:.3g}M"
    if x >= 1e4:
        return f"{x / 1e3:.0f}k"
    if x >= 1e3:
        return f"{x / 1e3:.1f}k"
    return f"{x:.0f}"


def _num(x: float) -> str:
    """Three significant digits, never an exponent: 0.08, 12.2, 545, 3,011."""
    if x >= 100:
        return f"{x:,.0f}"
    return f"{x:.1f}" if x >= 10 else f"{x:.2f}"


def _spread(value: float, runs: list[float], fmt: Callable[[float], str] = "{:,.0f}".format
            ) -> str:
    """'value (min-max)' of the runs; just the value for a single run."""
    if len(runs) < 2:
        return fmt(value)
    return f"{fmt(value)} ({fmt(min(runs))}-{fmt(max(runs))})"


# ---- aiotcp compare ----------------------------------------------------------------------

#: The compare rows the README shows, in its order, with their labels.
COMPARE_ROWS: tuple[tuple[str, str], ...] = (
    ("c-epoll", "C epoll server (the practical limit)"),
    ("uvloop_protocol", "uvloop Protocol (hand-written)"),
    ("aiotcp-ack", "**aiotcp, built-in ack app**"),
    ("aiotcp-sync", "**aiotcp, a user's `def handle`**"),
    ("aiotcp-async", "**aiotcp, a user's `async def handle`**"),
    ("asyncio_protocol", "asyncio Protocol"),
    ("trio", "Trio serve_tcp"),
    ("processes", "process pool of blocking servers"),
    ("threads", "thread per connection"),
    ("gevent", "gevent StreamServer"),
    ("streams", "asyncio streams (readline + drain)"),
    ("seed", "the article's server as written"),
)
CLIENT_BOUND_NOTE = (
    "† the load generator was above 90 % of its core in some run: the server may be faster."
)


def _rows_by(data: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    """Rows by (server, workload name without its ``-d`` suffix)."""
    return {(r["server"], r["workload"].split("-d")[0]): r for r in data["rows"]}


def _load_cell(row: dict[str, Any] | None) -> str:
    if row is None or not row.get("throughput"):
        return str(row.get("status", "-")) if row else "-"
    mark = "†" if row.get("client_bound") else ""
    ratios = " / ".join(f"{row[k]:.2f}" if k in row else "-"
                        for k in ("vs_uvloop_protocol", "vs_c_epoll"))  # fmt: skip
    return f"{_rate(row['throughput'])}{mark} {ratios}"


def _bold(label: str, cell: str) -> str:
    return f"**{cell}**" if label.startswith("**") and cell != "-" else cell


def _compare(data: dict[str, Any]) -> list[str]:
    by = _rows_by(data)
    rows = []
    for server, label in COMPARE_ROWS:
        hold = by.get((server, "hold10000"))
        kib = _num(hold["kib_per_conn"]) if hold and "kib_per_conn" in hold else "-"
        cells = [_load_cell(by.get((server, w))) for w in ("c100-f1-s64", "c100-f16-s64")]
        rows.append([label, *(_bold(label, c) for c in [*cells, kib])])
    header = ["server (64-byte lines)",
              "100 conns, 1 in flight: replies/s, vs uvloop / vs C",
              "100 conns, 16 in flight: replies/s, vs uvloop / vs C",
              "KiB per idle connection (10k held)"]  # fmt: skip
    return [*_table(header, rows), "", CLIENT_BOUND_NOTE]


def _ladder(data: dict[str, Any]) -> list[str]:
    from aiotcp.bench.report import ladder_table

    meta = data.get("meta", {})
    table = ladder_table(data["rows"], meta.get("ladder", []), meta.get("ladder_servers", []))
    if table is None:
        return [("No payload-ladder run in benchmarks/results/results.json yet: "
                 "`make figures` measures it.")]  # fmt: skip
    header, body = table
    labels = {name: label.strip("*") for name, label in COMPARE_ROWS}
    header = [*header[:2], *(labels.get(name, name) for name in header[2:])]
    return [*_table(header, body), "", CLIENT_BOUND_NOTE]


# ---- the benchmarks/ scripts -------------------------------------------------------------

TLS_LABELS = {
    "asyncio-ssl": "asyncio + `ssl=`",
    "uvloop-ssl": "uvloop + `ssl=`",
    "frontdoor-asyncio": "aiotcp front door, asyncio",
    "frontdoor-uvloop": "aiotcp front door, uvloop",
}


def _tls(data: dict[str, Any]) -> list[str]:
    memory = {r["mode"]: r for r in data.get("memory", [])}
    thru = {(r["mode"], r["in_flight"]): r for r in data.get("throughput", [])}
    rows = []
    for mode, label in TLS_LABELS.items():
        m = memory.get(mode)
        cells = [_num(m["kib_per_connection"]) if m else "-"]
        for f in (1, 16):
            r = thru.get((mode, f))
            cells.append(
                _spread(r["messages_per_second"], r["rounds_messages_per_second"], _rate)
                + " msg/s" if r else "-"
            )
        r16 = thru.get((mode, 16))
        cells.append(_spread(r16["server_cpu_us_per_message"], r16["rounds_cpu_us_per_message"],
                             _num) + " µs" if r16 else "-")  # fmt: skip
        rows.append([label, *cells])
    header = ["server", "KiB per idle TLS connection", "1 in flight", "16 in flight",
              "server CPU per message, 16 in flight"]  # fmt: skip
    return _table(header, rows)


STORE_LABELS = {"sqlite": "SQLite, synchronous=FULL", "postgres": "PostgreSQL", "mysql": "MariaDB"}


def _ingest(data: dict[str, Any]) -> list[str]:
    rows = []
    for kind, e in data["stores"].items():
        for cell, commit, f in (("group_1", "group", 1), ("group_16", "group", 16),
                                ("each_16", "each", 16)):  # fmt: skip
            if cell not in e:
                continue
            r = e[cell]
            rows.append([
                STORE_LABELS.get(kind, kind), commit, str(f),
                _spread(r["acks_per_s"], r.get("acks_per_s_runs", [])),
                f"{_num(r['p50_ms'])} / {_num(r['p99_ms'])}",
                f"{r['server_cpu_pct']}% / {'/'.join(str(c) for c in r['client_cpu_pct'])}%",
            ])  # fmt: skip
    header = ["store", "commit", "in flight", "durable acks/s (rounds)", "p50 / p99 ms",
              "server / client CPU"]  # fmt: skip
    return _table(header, rows)


def _ingest_commits(data: dict[str, Any]) -> list[str]:
    rows = []
    for kind, e in data["stores"].items():
        if not {"single_commit_ms", "lone_client", "group_16", "each_16"} <= set(e):
            continue
        s, lone = e["single_commit_ms"], e["lone_client"]
        gain = e["group_16"]["acks_per_s"] / max(e["each_16"]["acks_per_s"], 1)
        rows.append([
            STORE_LABELS.get(kind, kind).split(",")[0], f"{s['p50']:.2f} / {s['p99']:.2f}",
            f"{_num(lone['p50_ms'])} / {_num(lone['p99_ms'])}", f"{gain:.0f}x",
        ])  # fmt: skip
    header = ["store", "one commit alone, p50 / p99 ms",
              "one client, 1 in flight: ack p50 / p99 ms", "group / each at 100 x 16"]  # fmt: skip
    return _table(header, rows)


def _fanout(data: dict[str, Any]) -> list[str]:
    cells = {(r["rate"], m["mode"]): r for m in data["modes"] for r in m["results"]}
    rows = []
    for rate, mode in sorted(cells, key=lambda k: (k[0], k[1])):
        r = cells[(rate, mode)]
        lat = r["latency_ms"]
        rows.append([str(rate), mode, f"{r['deliveries_per_second']:,.0f}",
                     f"{lat['p50']:.0f} ms", f"{lat['p99']:.0f} ms"
                     + ("" if r.get("complete", True) else " (incomplete)")])  # fmt: skip
    return _table(["messages/s published", "mode", "deliveries/s", "p50", "p99"], rows)


GATEWAY_LOADS = {"lone": "1 x 1", "c100_f1": "100 x 1", "c100_f16": "100 x 16"}


def _gateway(data: dict[str, Any]) -> list[str]:
    rows = []
    for kind, loads in data["kinds"].items():
        for name, label in GATEWAY_LOADS.items():
            if name not in loads:
                continue
            d, g = loads[name]["direct"], loads[name]["gateway"]
            rows.append([
                {"grpc": "gRPC", "http": "HTTP"}.get(kind, kind), label,
                _spread(d["calls_per_s"], d.get("calls_per_s_runs", [])),
                _spread(g["messages_per_s"], g.get("messages_per_s_runs", [])),
                f"{_num(d['p50_ms'])} / {_num(g['p50_ms'])}" if d["p50_ms"] is not None else "-",
                f"{_num(d['p99_ms'])} / {_num(g['p99_ms'])}" if d["p99_ms"] is not None else "-",
                f"{d['client_cpu_us_per_call']} / {g['gateway_cpu_us_per_message']}",
            ])  # fmt: skip
    header = ["upstream", "clients x in flight", "direct calls/s", "gateway messages/s",
              "p50 ms direct / gateway", "p99 ms direct / gateway",
              "CPU µs per call: direct client / gateway"]  # fmt: skip
    return _table(header, rows)


def _pipeline_flood(data: dict[str, Any]) -> list[str]:
    f = data["flood"]
    c = next(v for k, v in data.items() if k.startswith("concurrency_"))
    lines = f.get("flood_lines", 1_000_000)
    rows = [
        [f"server RSS while a client pipelines {lines:,} lines into a 10 ms `async def`",
         (f"{f['rss_start_kib'] / 1024:.1f} MiB -> {f['rss_during_kib'] / 1024:.1f} MiB "
          f"(+{f['rss_growth_mib']} MiB)")],
        ["another client's round trips meanwhile: p50 / p99 / max",
         (f"{f['probe_p50_ms']} / {f['probe_p99_ms']} / {f['probe_max_ms']} ms "
          f"({f['probe_round_trips']:,} round trips)")],
        [f"{c.get('messages', c['replies']):,} pipelined messages, --handler-concurrency 16",
         (f"{c['replies']:,} replies, {'in order' if c['in_order'] else 'OUT OF ORDER'}, "
          f"{c['seconds']} s (one at a time: {c['sequential_would_take_s']:g} s)")],
    ]  # fmt: skip
    return _table(["pipeline_flood.py", "measured"], rows)


EMFILE_LABELS = {
    "aiotcp": "aiotcp serve --loop asyncio (100 accepts per turn)",
    "asyncio": "asyncio's create_server, backlog 4096 (its accept loop's default)",
}


def _emfile(data: dict[str, Any]) -> list[str]:
    rows = [[EMFILE_LABELS.get(name, name), f"{r['round_trips']:,}", f"{r['p50_ms']} ms",
             f"{r['p99_ms']} ms", f"{r['max_ms']} ms"]
            for name, r in data["servers"].items()]  # fmt: skip
    return _table(["server, fds exhausted (RLIMIT_NOFILE 64)", "round trips", "p50", "p99",
                   "max"], rows)  # fmt: skip


KIND_LABELS = {
    "prefix": "the ack app (`reply_prefix`, answered on bytes)",
    "inline": "a user's `def handle`",
    "batch": "a user's `batch(messages, conn)`",
    "sequential": "a user's `async def handle` (with the loop's turns)",
    "async-batch": "a user's `async def batch` (with the loop's turns)",
}


def _instructions(data: dict[str, Any]) -> list[str]:
    figures = data["instructions_per_read"]
    columns = sorted({c for kind in figures.values() for c in kind}, key=lambda c: int(c.split("-")[0]))
    rows = [[KIND_LABELS.get(kind, kind),
             *(f"{counts[c]:,}" if counts.get(c) is not None else "-" for c in columns)]
            for kind, counts in figures.items()]  # fmt: skip
    header = ["connection kind (callgrind, instructions per read)",
              *(f"{c.split('-')[0]} x 64-byte line(s) per read" for c in columns)]  # fmt: skip
    return _table(header, rows)


def _resp(data: dict[str, Any]) -> list[str]:
    rows = []
    for pk, servers in data["medians"].items():
        tests = list(servers["redis-server"])
        ratios = data["ratio_aiotcp_to_redis"][pk]
        for name, label in (("aiotcp redis app", "the redis app"), ("redis-server", "redis-server")):
            rows.append([f"`-{pk[0]} {pk[1:]}`, {label}",
                         *(f"{servers[name][t]['rps']:,.0f}" for t in tests),
                         " / ".join(f"{ratios[t]:.2f}" for t in tests) if name != "redis-server" else ""])
    tests = list(next(iter(data["medians"].values()))["redis-server"])
    return _table(["", *(f"{t} req/s" for t in tests),
                   f"ratio to redis-server ({' / '.join(tests)})"], rows)  # fmt: skip


PARTITION_COLUMNS = {
    "readyz_503_s": "`/readyz` 503", "pub_in_flight_s": "PUB in flight answered",
    "pub_while_down_s": "PUB sent while down", "ready_after_heal_s": "ready again after heal",
}


def _partition(data: dict[str, Any]) -> list[str]:
    rows = [[r["mode"], f"{r['broker_timeout']:g}",
             *(f"{r['median'][k]:.2f} / {r['max'][k]:.2f}" for k in PARTITION_COLUMNS)]
            for r in data["runs"]]  # fmt: skip
    return _table(["mode", "`--broker-timeout`", *PARTITION_COLUMNS.values()], rows)


def _hold_row(label: str, run: dict[str, Any]) -> list[str]:
    c = run["config"]
    flags = f"--connections {c['connections']} --procs {c['procs']} --rounds {c['rounds']} " \
            f"--round-seconds {c['round_seconds']:g}" + (f" --churn {c['churn']:g}" if c["churn"] else "")
    before, held = run["server_before"], run["server_held"]
    worst = max(run["rounds"], key=lambda r: r["latency_ms"]["p99"] or 0)["latency_ms"]
    fails = run["failures"]
    return [f"{run['held']:,} ({held['processes'] - 1} workers){label}", f"`{flags}`",
            f"{run['connect_rate']:,.0f}/s",
            f"{before['rss_kib'] / 1024:.1f} → {held['rss_kib'] / 1024:.1f} MiB",
            f"{run['kib_per_conn']:.2f}",
            f"{worst['p50']:.2f} / {worst['p99']:.2f} / {worst['max']:.1f} ms", f"{fails:,}"]


#: The hold runs the README shows, in its order, and what each row adds to its name.
HOLD_RUNS = {"hold-10k": "", "hold-100k": "", "hold-118k": ", every worker at its limit",
             "hold-155k": "", "hold-soak": ", churn soak",
             "hold-100k-no-pause": ", full workers accepting (the rule switched off)"}


def _hold(data: dict[str, Any]) -> list[str]:
    files = data["files"]
    rows = [_hold_row(label, files[stem]) for stem, label in HOLD_RUNS.items() if stem in files]
    rows += [_hold_row("", run) for stem, run in files.items() if stem not in HOLD_RUNS]
    return _table(["connections held", "`aiotcp bench --mode hold --port P --server-pid PID`",
                   "connect rate", "server RSS before → held", "KiB per connection",
                   "ping p50 / p99 / max (worst round)", "failures"], rows)  # fmt: skip


#: Every README figure: block name -> (result file, renderer).
FIGURES: dict[str, Figure] = {
    "compare": Figure("results.json", _compare),
    "compare-ladder": Figure("results.json", _ladder),
    "tls": Figure("tls_memory.json", _tls),
    "ingest": Figure("ingest.json", _ingest),
    "ingest-commits": Figure("ingest.json", _ingest_commits),
    "fanout": Figure("fanout.json", _fanout),
    "gateway": Figure("gateway.json", _gateway),
    "pipeline-flood": Figure("pipeline_flood.json", _pipeline_flood),
    "emfile": Figure("emfile_stall.json", _emfile),
    "instructions": Figure("instructions.json", _instructions),
    "resp": Figure("resp.json", _resp),
    "partition": Figure("partition.json", _partition),
    "hold": Figure("hold/", _hold),
}


def block(name: str, results: Path = RESULTS) -> str:
    """The body of README block ``name``: its table(s), then the stamp line.

    Raises FigureError for an unknown name. A missing result file is a block that says
    how to make it.
    """
    if name not in FIGURES:
        raise FigureError(f"README block figures:{name}: no such figure "
                          f"(known: {', '.join(FIGURES)})")  # fmt: skip
    figure = FIGURES[name]
    path = results / figure.source
    if figure.source.endswith("/"):
        runs = {p.stem: json.loads(p.read_text()) for p in sorted(path.glob("*.json"))}
        if not runs:
            return (f"Not measured yet: benchmarks/results/{figure.source} holds no result "
                    "file (`make figures` makes them).\n")  # fmt: skip
        stamps = [f"- {stem}: " + stamp_line(run.get("stamp")) for stem, run in runs.items()]
        return "\n".join([*figure.render({"files": runs}), "", *stamps]) + "\n"
    if not path.exists():
        return (f"Not measured yet: benchmarks/results/{figure.source} is missing "
                "(`make figures` makes it).\n")  # fmt: skip
    data = json.loads(path.read_text())
    meta = data.get("meta", {})
    when = str(meta.get("date") or data.get("when") or "")
    lines = figure.render(data)
    return "\n".join([*lines, "", stamp_line(data.get("stamp"), when)]) + "\n"


def render(text: str, results: Path = RESULTS) -> str:
    """``text`` (a README) with every figures block rewritten from ``results``.

    Raises FigureError if a marker opens a block that never closes or names no figure.
    """
    opened = re.findall(r"<!-- figures:([\w-]+) -->", text)
    closed = re.findall(r"<!-- /figures:([\w-]+) -->", text)
    if opened != closed:
        raise FigureError(f"README figure markers do not pair up: opened {opened}, "
                          f"closed {closed}")  # fmt: skip
    return BLOCK.sub(lambda m: m[1] + block(m[2], results) + m[4], text)


def main(argv: list[str] | None = None) -> int:
    """``python -m aiotcp.bench.figures [--check] [--readme PATH] [--results DIR]``."""
    p = argparse.ArgumentParser(prog="python -m aiotcp.bench.figures",
                                description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--readme", type=Path, default=README)
    p.add_argument("--results", type=Path, default=RESULTS)
    p.add_argument("--check", action="store_true",
                   help="change nothing; exit 1 if the README's figures are not current")
    args = p.parse_args(argv)
    text = args.readme.read_text()
    try:
        new = render(text, args.results)
    except (FigureError, KeyError, ValueError) as e:
        print(f"figures: {e}", file=sys.stderr)
        return 2
    if args.check:
        if new != text:
            print(f"figures: {args.readme} is not what {args.results} makes; run "
                  "`python -m aiotcp.bench.figures`", file=sys.stderr)
            return 1
        return 0
    if new != text:
        args.readme.write_text(new)
    print(f"figures: {args.readme} rewritten from {args.results} "
          f"({len(BLOCK.findall(new))} blocks)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
