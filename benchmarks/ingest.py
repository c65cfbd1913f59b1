"""Durable acks per second of ``aiotcp serve --app ingest``, per store, group commit vs
one commit per message, and ack latency against a single commit's latency.

    .venv/bin/python benchmarks/ingest.py                 # every store, 5 s per run, 3 rounds
    .venv/bin/python benchmarks/ingest.py --stores sqlite --duration 3
    .venv/bin/python benchmarks/ingest.py --smoke --out /tmp/ingest.json   # seconds

For each store (SQLite in WAL with synchronous=FULL in a temporary directory, the local
PostgreSQL and MariaDB in a table of the run's own, dropped afterwards), each commit mode
(``group``; ``each``: one transaction per message) and each load (100 connections with 1
and with 16 messages in flight), a fresh server is started and loaded with ``aiotcp
bench`` (closed loop, every reply verified), all on loopback. A single commit's latency
is measured apart: one-row transactions one after another through the same store code.

Writes benchmarks/results/ingest.json (--out) and ingest.md beside it. Bounded: 15 runs of
--duration s per round (--repeat rounds).
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from aiotcp.bench.scripts import parse, parser, write_result
from aiotcp.bench.serverproc import aiotcp_argv, start_server
from aiotcp.bench.stamp import Recorder, stamp_line
from aiotcp.stores import parse_store_url, store_from_url

HERE = Path(__file__).parent
URLS = {
    "postgres": os.environ.get("AIOTCP_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test"),
    "mysql": os.environ.get("AIOTCP_TEST_MYSQL", "mysql://root@127.0.0.1:3306/test"),
}
CONNECTIONS = 100
IN_FLIGHT = (1, 16)
# Single-commit latency: this many one-row transactions, one after another.
SINGLE_COMMITS = 200
# Every cell: (name, commit mode, in flight, connections).
CELLS = [("lone_client", "group", 1, 1)] + [
    (f"{commit}_{f}", commit, f, CONNECTIONS) for commit in ("group", "each") for f in IN_FLIGHT
]
SMOKE = {"stores": "sqlite", "duration": 0.3, "cells": "lone_client,group_16", "repeat": 1,
         "single_commits": 20}


def store_url(kind: str, tmp: str, commit: str) -> str:
    table = "bench_" + uuid.uuid4().hex[:12]
    base = f"sqlite:///{tmp}/{table}.db" if kind == "sqlite" else URLS[kind]
    sep = "&" if "?" in base else "?"
    return f"{base}{sep}table={table}&commit={commit}"


async def drop(url: str) -> None:
    parsed = parse_store_url(url)
    if parsed.scheme == "sqlite":
        for suffix in ("", "-wal", "-shm"):
            Path(parsed.path + suffix).unlink(missing_ok=True)
        return
    store: Any = store_from_url(url)
    await store.open()
    conn = await store._connection()  # the benchmark reaches in to clean up its table
    if parsed.scheme == "mysql":
        async with conn.cursor() as cur:
            await cur.execute(f"DROP TABLE IF EXISTS {parsed.table}")
        await conn.commit()
    else:
        await conn.execute(f"DROP TABLE IF EXISTS {parsed.table}")
    await store.close()


async def single_commit_ms(url: str, commits: int) -> dict[str, float]:
    store = store_from_url(url)
    await store.open()
    times = []
    try:
        for i in range(commits):
            t = time.perf_counter()
            await store.append([(time.time(), "127.0.0.1:1", f"single {i}")])
            times.append((time.perf_counter() - t) * 1e3)
    finally:
        await store.close()
    times.sort()
    return {"p50": statistics.median(times), "p99": times[int(len(times) * 0.99) - 1]}


def load(url: str, in_flight: int, duration: float, connections: int = CONNECTIONS
         ) -> dict[str, Any]:
    server = start_server(aiotcp_argv(
        ["--app", "ingest", "--store", url, "--handler-concurrency", "16"]
    ))
    try:
        cpu0, t0 = server.cpu_seconds(), time.monotonic()
        out = subprocess.run(
            [sys.executable, "-m", "aiotcp", "bench", "--port", str(server.port),
             "-c", str(connections), "-f", str(in_flight), "-d", str(duration), "--json"],
            capture_output=True, text=True, timeout=duration * 4 + 60, check=False,
        )
        server_cpu = (server.cpu_seconds() - cpu0) / (time.monotonic() - t0) * 100
    finally:
        server.stop()
    if not out.stdout.strip():
        raise SystemExit(f"aiotcp bench failed: {out.stderr.strip()}")
    r = json.loads(out.stdout)
    return {
        "acks_per_s": round(r["throughput"]),
        "p50_ms": round(r["latency_ms"]["p50"], 2),
        "p99_ms": round(r["latency_ms"]["p99"], 2),
        "client_cpu_pct": [round(c) for c in r["client_cpu"]],
        "server_cpu_pct": round(server_cpu),
        "ok": r["ok"],
        "errors": r["errors"],
    }


def one_round(stores: list[str], duration: float, tmp: str, cells: list[str],
              single_commits: int) -> dict[str, dict[str, Any]]:
    """Every chosen cell once: {store: {cell: result}}."""
    out: dict[str, dict[str, Any]] = {}
    for kind in stores:
        entry: dict[str, Any] = {}
        url = store_url(kind, tmp, "group")
        entry["single_commit_ms"] = asyncio.run(single_commit_ms(url, single_commits))
        asyncio.run(drop(url))
        for name, commit, f, conns in (c for c in CELLS if c[0] in cells):
            url = store_url(kind, tmp, commit)
            try:
                entry[name] = r = load(url, f, duration, connections=conns)
            finally:
                asyncio.run(drop(url))
            print(f"{kind:8} {name:12} {r}", flush=True)
        out[kind] = entry
    return out


def median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run with the median throughput, with every run's throughput beside it."""
    if "acks_per_s" not in runs[0]:  # single-commit latency: medians of each figure
        return {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    ordered = sorted(runs, key=lambda r: r["acks_per_s"])
    return {**ordered[(len(ordered) - 1) // 2], "acks_per_s_runs": [r["acks_per_s"] for r in runs]}


def run(stores: list[str], duration: float, repeat: int, cells: list[str],
        single_commits: int) -> dict[str, Any]:
    loads = [os.getloadavg()[0]]
    rounds = []
    with tempfile.TemporaryDirectory(prefix="aiotcp-ingest-bench-") as tmp:
        for _ in range(repeat):  # rounds interleave the cells: a noisy minute hits them all
            rounds.append(one_round(stores, duration, tmp, cells, single_commits))
            loads.append(os.getloadavg()[0])
    return {
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "load_average": [min(loads), max(loads)],
        "connections": CONNECTIONS, "duration_s": duration, "repeat": repeat,
        "stores": {
            kind: {cell: median_run([r[kind][cell] for r in rounds]) for cell in rounds[0][kind]}
            for kind in stores
        },
    }  # fmt: skip


def markdown(results: dict[str, Any]) -> str:
    lines = [
        f"# ingest: durable acks ({results['when']})", "", stamp_line(results.get("stamp")), "",
        (f"{results['connections']} connections, 64-byte lines, closed loop, "
        f"{results['duration_s']:g} s per run, median of {results['repeat']} round(s) "
        "(acks/s of every round in brackets); client and server share the machine."), "",
        "| store | commit | in flight | acks/s | p50 ms | p99 ms | server CPU | client CPU |",
        "|---|---|---|---|---|---|---|---|",
    ]  # fmt: skip
    for kind, e in results["stores"].items():
        for commit in ("group", "each"):
            for f in IN_FLIGHT:
                if f"{commit}_{f}" not in e:
                    continue
                r = e[f"{commit}_{f}"]
                runs = "/".join(f"{x:,}" for x in r["acks_per_s_runs"])
                lines.append(
                    f"| {kind} | {commit} | {f} | {r['acks_per_s']:,} [{runs}] | {r['p50_ms']} | "
                    f"{r['p99_ms']} | {r['server_cpu_pct']}% | "
                    f"{'/'.join(str(c) for c in r['client_cpu_pct'])}% |"
                )
    lines += [
        "", ("| store | single commit p50 / p99 ms | 1 client: ack p50 / p99 ms | "
        "100 x 1: ack p99 / single p99 | group / each at 100 x 16 |"), "|---|---|---|---|---|",
    ]  # fmt: skip
    for kind, e in results["stores"].items():
        if not {"lone_client", "group_1", "group_16", "each_16"} <= set(e):
            continue
        s, lone = e["single_commit_ms"], e["lone_client"]
        gain = e["group_16"]["acks_per_s"] / max(e["each_16"]["acks_per_s"], 1)
        ratio = e["group_1"]["p99_ms"] / s["p99"]
        lines.append(
            f"| {kind} | {s['p50']:.2f} / {s['p99']:.2f} | {lone['p50_ms']} / {lone['p99_ms']} | "
            f"{ratio:.1f}x | {gain:.1f}x |"
        )
    return "\n".join(lines) + "\n"


def main() -> int:
    p = parser(__doc__, str(HERE / "results" / "ingest.json"))
    p.add_argument("--stores", default="sqlite,postgres,mysql", help="sqlite, postgres, mysql")
    p.add_argument("--duration", type=float, default=5.0, help="seconds per run")
    p.add_argument("--repeat", type=int, default=3, help="rounds; each cell reports its median")
    p.add_argument("--cells", default=",".join(c[0] for c in CELLS),
                   help="comma-separated, from the default")
    p.add_argument("--single-commits", type=int, default=SINGLE_COMMITS,
                   help="one-row transactions timed for the single-commit latency")
    args = parse(p, SMOKE)
    stores, cells = args.stores.split(","), args.cells.split(",")
    if bad := sorted(set(stores) - {"sqlite", *URLS}):
        p.error(f"unknown store(s) {', '.join(bad)}; choose from sqlite, {', '.join(URLS)}")
    if bad := sorted(set(cells) - {c[0] for c in CELLS}):
        p.error(f"unknown cell(s) {', '.join(bad)}; choose from {', '.join(c[0] for c in CELLS)}")
    recorder = Recorder(" ".join(sys.argv))
    results = run(stores, args.duration, args.repeat, cells, args.single_commits)
    results["smoke"] = args.smoke
    written = write_result(args.out, results, recorder)
    Path(args.out).with_suffix(".md").write_text(markdown(written))
    print(markdown(written))
    return 0


if __name__ == "__main__":
    sys.exit(main())
