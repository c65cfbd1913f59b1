"""``aiotcp compare``: run every baseline and aiotcp through the same workloads, write a report.

Each (server, workload) pair gets a fresh server process on loopback. With two or more
cores the server is pinned to CPU 0 and this process (the load generator) to CPU 1, so the
two never steal each other's core; the report says when the client was the bottleneck.

Workload names: ``c<connections>-f<in flight>-s<size>[-d<seconds>]`` for a closed-loop load
run (e.g. ``c100-f16-s64``), ``hold<N>`` for N held idle connections (server memory per
connection: VmRSS after minus before, divided by N).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import os
import platform
import re
import shlex
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from aiotcp.bench.baselines import BASELINES, LOOSE_BASELINES, REQUIRES
from aiotcp.bench.loadgen import LoadConfig, run_load
from aiotcp.bench.misbehave import MisbehaveResult, open_clients
from aiotcp.bench.results import finish
from aiotcp.bench.serverproc import ServerProcess, aiotcp_argv, baseline_argv, start_server

ALL_SERVERS: tuple[str, ...] = (*BASELINES, "aiotcp")
QUICK_SERVERS: tuple[str, ...] = ("seed", "streams", "uvloop_protocol", "aiotcp")
FULL_WORKLOADS: tuple[str, ...] = (
    "c1-f1-s64", "c1-f16-s64", "c100-f1-s64", "c100-f16-s64", "c1000-f1-s64", "c1000-f16-s64",
    "c10000-f1-s64", "c10000-f16-s64", "c100-f1-s1024", "c100-f16-s1024", "hold10000",
)  # fmt: skip
QUICK_WORKLOADS: tuple[str, ...] = ("c100-f1-s64-d1", "c100-f16-s64-d1", "hold1000")
#: The seed reads 100 bytes at a time; larger messages make its replies unverifiable.
SEED_READ = 100
_LOAD = re.compile(r"^c(\d+)-f(\d+)-s(\d+)(?:-d([\d.]+))?$")
_HOLD = re.compile(r"^hold(\d+)$")


@dataclass(frozen=True)
class Workload:
    """One workload: a closed-loop load run, or N held idle connections (``hold``)."""

    name: str
    kind: str  # "load" | "hold"
    connections: int
    in_flight: int = 1
    size: int = 64
    duration: float = 3.0


def parse_workload(spec: str, default_duration: float) -> Workload:
    """Parse a workload name (see module docstring). Raises ValueError on a bad name."""
    if m := _LOAD.match(spec):
        dur = float(m[4]) if m[4] else default_duration
        return Workload(spec, "load", int(m[1]), int(m[2]), int(m[3]), dur)
    if m := _HOLD.match(spec):
        return Workload(spec, "hold", int(m[1]))
    raise ValueError(f"bad workload {spec!r}: use c<conns>-f<in flight>-s<bytes>[-d<s>] or hold<N>")


@dataclass
class CompareOptions:
    """What ``run_compare`` runs and where the report goes."""

    servers: list[str] = field(default_factory=lambda: list(QUICK_SERVERS))
    workloads: list[Workload] = field(default_factory=list)
    out_dir: str = "compare-report"
    aiotcp_args: list[str] = field(default_factory=list)
    pin: bool = True
    processes: int = 1
    command: str = ""


def _pin_cpus(pin: bool) -> tuple[int | None, str]:
    """Pin this process to CPU 1 when 2+ cores are usable; return (server CPU, note)."""
    cpus = sorted(os.sched_getaffinity(0))
    if not pin or len(cpus) < 2:
        return None, f"not pinned ({len(cpus)} usable core(s)); client and server share cores"
    os.sched_setaffinity(0, {cpus[1]})
    return cpus[0], f"server pinned to CPU {cpus[0]}, load generator to CPU {cpus[1]}"


def server_argv(name: str, aiotcp_args: list[str]) -> list[str]:
    """Command line for server ``name`` (a baseline or ``aiotcp``)."""
    return aiotcp_argv(aiotcp_args) if name == "aiotcp" else baseline_argv(name)


def _applicable(name: str, wl: Workload) -> str:
    """Return why ``wl`` does not apply to server ``name``, or "" if it does."""
    if name in LOOSE_BASELINES and wl.kind == "load" and wl.size + 1 > SEED_READ:
        return f"n/a: the seed reads {SEED_READ} bytes at a time; {wl.size} B messages exceed it"
    return ""


async def _hold(server: ServerProcess, wl: Workload) -> dict[str, Any]:
    """Open ``wl.connections`` idle connections; measure the server's RSS growth per connection."""
    await asyncio.sleep(0.3)
    before_kib, fds0 = server.rss_kib(), server.open_fds()
    probe = MisbehaveResult(mode="idle", connections=wl.connections)
    cfg = LoadConfig(host=server.host, port=server.port, connections=wl.connections)
    clients = await open_clients(cfg, False, probe)
    deadline = time.monotonic() + 15
    while server.open_fds() < fds0 + len(clients) and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    await asyncio.sleep(0.5)  # let lazily allocated per-connection state settle
    after_kib = server.rss_kib()
    still = sum(1 for c in clients if c.closed_at is None)
    for c in clients:
        if c.transport is not None:
            c.transport.abort()
    row: dict[str, Any] = {
        "held": still,
        "rss_before_kib": before_kib,
        "rss_after_kib": after_kib,
        "kib_per_conn": round((after_kib - before_kib) / max(1, len(clients)), 2),
        "errors": probe.errors,
        "error_samples": probe.error_samples,
    }
    if still < wl.connections:
        row["errors"] = {**probe.errors, "dropped": wl.connections - still}
    return row


async def _load(server: ServerProcess, wl: Workload, loose: bool, processes: int) -> dict[str, Any]:
    cfg = LoadConfig(
        host=server.host, port=server.port, connections=wl.connections, duration=wl.duration,
        size=wl.size, in_flight=wl.in_flight, verify="loose" if loose else "strict",
    )  # fmt: skip
    mark: list[float] = []

    def ready() -> None:
        mark.extend((time.monotonic(), server.cpu_seconds()))

    result = finish(await run_load(cfg, ready=ready))
    wall = time.monotonic() - mark[0] if mark else 0.0
    cpu = server.cpu_seconds() - mark[1] if mark else 0.0
    row = result.to_dict()
    row.pop("histogram", None)
    row["server_cpu_pct"] = round(100.0 * cpu / wall, 1) if wall > 0 else 0.0
    return row


def run_one(
    name: str, wl: Workload, opts: CompareOptions, server_cpu: int | None
) -> dict[str, Any]:
    """Start server ``name``, run ``wl`` against it, stop it; return one result row."""
    row: dict[str, Any] = {"server": name, "workload": wl.name, "kind": wl.kind, **asdict(wl)}
    reason = _applicable(name, wl)
    if reason:
        return row | {"status": "n/a", "note": reason}
    try:
        server = start_server(server_argv(name, opts.aiotcp_args), cpu=server_cpu)
    except Exception as exc:  # noqa: BLE001 - a server that cannot start is a result, not a crash
        return row | {"status": "error", "note": str(exc)[-300:]}
    try:
        runner: Callable[..., Any] = asyncio.run
        if importlib.util.find_spec("uvloop"):
            import uvloop

            runner = uvloop.run
        if wl.kind == "hold":
            row |= runner(_hold(server, wl))
        else:
            row |= runner(_load(server, wl, name in LOOSE_BASELINES, opts.processes))
        row["peak_rss_kib"] = server.peak_rss_kib()
    finally:
        status = server.stop()
    row["status"] = "ok" if not row.get("errors") else "errors"
    row["server_exit"] = status
    return row


def add_ratios(rows: list[dict[str, Any]]) -> None:
    """Add ``vs_uvloop_protocol`` and ``vs_seed`` throughput ratios to each load row."""
    base: dict[tuple[str, str], float] = {}
    for r in rows:
        if r.get("throughput"):
            base[(r["server"], r["workload"])] = r["throughput"]
    for r in rows:
        for ref, key in (("uvloop_protocol", "vs_uvloop_protocol"), ("seed", "vs_seed")):
            ref_tp = base.get((ref, r["workload"]))
            if r.get("throughput") and ref_tp:
                r[key] = round(r["throughput"] / ref_tp, 2)


def _run_all(
    opts: CompareOptions, server_cpu: int | None, log: Callable[[str], None]
) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for name in opts.servers:
        lib = REQUIRES.get(name)
        if lib and importlib.util.find_spec(lib) is None:
            rows.append(
                {
                    "server": name,
                    "workload": "*",
                    "status": "skipped",
                    "note": f"{lib} is not installed",
                }
            )
            log(f"{name}: skipped ({lib} is not installed)")
            continue
        for wl in opts.workloads:
            t0 = time.monotonic()
            row = run_one(name, wl, opts, server_cpu)
            rows.append(row)
            shown = (
                f"{row['throughput']:,.0f} msg/s p99 {row['latency_ms']['p99']:.2f} ms"
                if row.get("throughput")
                else (
                    f"{row['kib_per_conn']} KiB/conn"
                    if "kib_per_conn" in row
                    else row.get("note", "")
                )
            )
            log(
                f"{name:17s} {wl.name:16s} {row['status']:7s} {shown} ({time.monotonic() - t0:.1f}s)"
            )
    return rows


def run_compare(
    opts: CompareOptions, log: Callable[[str], None] = lambda s: None
) -> list[dict[str, Any]]:
    """Run every selected server through every selected workload; return result rows.

    Servers whose optional library is missing get one ``skipped`` row with a note.
    """
    saved_affinity = os.sched_getaffinity(0)
    server_cpu, pin_note = _pin_cpus(opts.pin)
    log(pin_note)
    try:
        rows = _run_all(opts, server_cpu, log)
    finally:
        os.sched_setaffinity(0, saved_affinity)  # callers (tests) keep their cores
    add_ratios(rows)
    meta = {
        "command": opts.command, "pinning": pin_note, "cores": os.cpu_count(),
        "python": platform.python_version(), "platform": platform.platform(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %z"), "aiotcp_args": opts.aiotcp_args,
    }  # fmt: skip
    from aiotcp.bench.report import write_report

    write_report(opts.out_dir, rows, meta, [w.name for w in opts.workloads], opts.servers)
    return rows


def compare_cli(argv: list[str]) -> int:
    """``aiotcp compare`` entry point; returns 0 when every run verified cleanly, else 1."""
    p = argparse.ArgumentParser(
        prog="aiotcp compare", description=__doc__.split("\n\n")[0] if __doc__ else None
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help=f"servers {','.join(QUICK_SERVERS)}; workloads {','.join(QUICK_WORKLOADS)} (< 2 min)",
    )
    p.add_argument(
        "--servers",
        help=f"comma-separated, from {','.join(ALL_SERVERS)} (default: all, or the quick set)",
    )
    p.add_argument(
        "--workloads",
        help="comma-separated workload names, e.g. c100-f16-s64,c10-f1-s64-d0.5,hold1000",
    )
    p.add_argument(
        "--duration",
        type=float,
        default=3.0,
        help="seconds per load workload without -d (default 3)",
    )
    p.add_argument(
        "--out", default="compare-report", help="report directory (default ./compare-report)"
    )
    p.add_argument(
        "--aiotcp-args", default="", help='extra flags for aiotcp serve, e.g. "--metrics-port 9100"'
    )
    p.add_argument(
        "--no-pin", action="store_true", help="do not pin server and client to separate cores"
    )
    args = p.parse_args(argv)
    servers = (
        args.servers.split(",")
        if args.servers
        else list(QUICK_SERVERS if args.quick else ALL_SERVERS)
    )
    unknown = [s for s in servers if s not in ALL_SERVERS]
    specs = (
        args.workloads.split(",")
        if args.workloads
        else list(QUICK_WORKLOADS if args.quick else FULL_WORKLOADS)
    )
    try:
        workloads = [parse_workload(s, args.duration) for s in specs]
    except ValueError as exc:
        print(f"aiotcp compare: {exc}", file=sys.stderr)
        return 2
    if unknown:
        print(
            f"aiotcp compare: unknown servers {unknown}; choose from {list(ALL_SERVERS)}",
            file=sys.stderr,
        )
        return 2
    opts = CompareOptions(
        servers=servers, workloads=workloads, out_dir=args.out, aiotcp_args=shlex.split(args.aiotcp_args),
        pin=not args.no_pin, command="aiotcp compare " + " ".join(shlex.quote(a) for a in argv),
    )  # fmt: skip
    rows = run_compare(opts, log=lambda s: print(s, file=sys.stderr, flush=True))
    print(
        f"report: {os.path.join(args.out, 'report.md')}, report.html, results.json", file=sys.stderr
    )
    return 0 if all(r["status"] in ("ok", "n/a", "skipped") for r in rows) else 1
