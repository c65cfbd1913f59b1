"""``aiotcp compare``: run every server through the same workloads, write a report.

Each run gets a fresh server process on loopback. With two or more cores the server is
pinned to CPU 0 and the load generator (the compiled engine when it builds) to CPU 1, so
the two never steal each other's core; every row records the client's CPU share, and the
report warns where the client was above 90 % of its core (then it was the bottleneck).

Runs are interleaved (server A, B, C, A, B, C, ... per workload) so that drift on a shared
machine touches every server alike; each figure is the median of ``--runs`` runs with its
min and max. Workload names are described in ``aiotcp.bench.workloads`` (``connect<N>``, the
connection rate, runs the compiled ``native/connrate.c`` client whatever ``--engine``
says). After the main
workloads comes the payload ladder (``--ladder``: message sizes in line and length
framing) against the ladder servers (``--ladder-servers``), in a table of its own.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import os
import platform
import shlex
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from aiotcp.bench import lineup, workloads
from aiotcp.bench.aggregate import add_ratios, combine
from aiotcp.bench.cengine import choose_engine, run_c_connrate, run_c_load
from aiotcp.bench.loadgen import LoadConfig, run_load
from aiotcp.bench.misbehave import MisbehaveResult, open_clients
from aiotcp.bench.native import CompilerUnavailable
from aiotcp.bench.results import finish
from aiotcp.bench.serverproc import ServerProcess, start_server
from aiotcp.bench.stamp import Recorder, machine_busy_seconds
from aiotcp.bench.workloads import Workload, parse_workload

__all__ = ["CompareOptions", "Workload", "compare_cli", "machine_busy_seconds", "parse_workload",
           "run_compare"]

#: The seed reads 100 bytes at a time; larger messages make its replies unverifiable.
SEED_READ = 100
#: Interleaved runs per (server, workload); the report shows their median and spread.
DEFAULT_RUNS = 3


@dataclass
class CompareOptions:
    """What ``run_compare`` runs and where the report goes."""

    servers: list[str] = field(default_factory=lambda: list(lineup.QUICK))
    workloads: list[Workload] = field(default_factory=list)
    out_dir: str = "compare-report"
    aiotcp_args: list[str] = field(default_factory=list)
    pin: bool = True
    runs: int = DEFAULT_RUNS
    engine: str = "auto"
    command: str = ""
    #: The payload ladder (workloads.LADDER) and the servers it runs (lineup.LADDER).
    ladder: list[Workload] = field(default_factory=list)
    ladder_servers: list[str] = field(default_factory=lambda: list(lineup.LADDER))


def _pin_cpus(pin: bool) -> tuple[int | None, str]:
    """Pin this process to CPU 1 when 2+ cores are usable; return (server CPU, note)."""
    cpus = sorted(os.sched_getaffinity(0))
    if not pin or len(cpus) < 2:
        return None, f"not pinned ({len(cpus)} usable core(s)); client and server share cores"
    os.sched_setaffinity(0, {cpus[1]})
    return cpus[0], f"server pinned to CPU {cpus[0]}, load generator to CPU {cpus[1]}"


def _applicable(name: str, wl: Workload, engine: str = "c") -> str:
    """Return why ``wl`` does not apply to server ``name`` (``engine``: the load generator
    compare chose), or "" if it does."""
    if wl.kind == "connect" and engine != "c":
        return "n/a: the connection-rate client is compiled C and no C compiler builds it here"
    if lineup.is_loose(name) and wl.kind == "load" and wl.size + 1 > SEED_READ:
        return f"n/a: the seed reads {SEED_READ} bytes at a time; {wl.size} B messages exceed it"
    if wl.kind == "load" and wl.framing not in lineup.framings(name):
        return f"n/a: {name} serves {' and '.join(lineup.framings(name))} framing only"
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


def _load(server: ServerProcess, wl: Workload, loose: bool, engine: str) -> dict[str, Any]:
    """One closed-loop (or, for ``connect`` workloads, connection-rate) run against ``server``;
    the server's CPU is read over the window only."""
    cfg = LoadConfig(
        host=server.host, port=server.port, connections=wl.connections, duration=wl.duration,
        size=wl.size, in_flight=wl.in_flight, verify="loose" if loose else "strict",
        framing=wl.framing,
    )  # fmt: skip
    mark: list[float] = []

    def ready() -> None:
        mark.extend((time.monotonic(), server.cpu_seconds(), machine_busy_seconds()))

    if wl.kind == "connect":
        result = run_c_connrate(cfg, ready=ready)
    elif engine == "c":
        result = run_c_load(cfg, ready=ready)
    else:
        result = finish(_runner()(run_load(cfg, ready=ready)))
    wall = time.monotonic() - mark[0] if mark else 0.0
    cpu = server.cpu_seconds() - mark[1] if mark else 0.0
    busy = machine_busy_seconds() - mark[2] if mark else 0.0
    client = sum(result.client_cpu) / 100.0 * result.duration
    row = result.to_dict()
    row.pop("histogram", None)
    row.pop("config", None)
    row["server_cpu_pct"] = round(100.0 * cpu / wall, 1) if wall > 0 else 0.0
    if wl.kind == "connect" and result.messages_acked:
        # What a connection costs the server: steadier than the rate on a shared machine,
        # where the cycle's wake-ups, not the server's CPU, can bound the rate.
        row["server_us_per_conn"] = round(1e6 * cpu / result.messages_acked, 2)
    row["other_cpu_pct"] = round(max(0.0, 100.0 * (busy - cpu - client) / wall), 1) if wall else 0.0
    return row


def _runner() -> Callable[..., Any]:
    if importlib.util.find_spec("uvloop"):
        import uvloop

        return uvloop.run
    return asyncio.run


def run_one(
    name: str, wl: Workload, opts: CompareOptions, server_cpu: int | None, engine: str
) -> dict[str, Any]:
    """Start server ``name``, run ``wl`` against it once, stop it; return the run's result."""
    try:
        argv = lineup.server_argv(name, opts.aiotcp_args, wl.framing)
        server = start_server(argv, cpu=server_cpu)
    except Exception as exc:  # noqa: BLE001 - a server that cannot start is a result, not a crash
        return {"status": "error", "note": str(exc)[-300:]}
    try:
        row: dict[str, Any]
        if wl.kind == "hold":
            row = _runner()(_hold(server, wl))
        else:
            row = _load(server, wl, lineup.is_loose(name), engine)
        row["peak_rss_kib"] = server.peak_rss_kib()
    finally:
        row_status = server.stop()
    row["server_exit"] = row_status
    row["status"] = "ok" if not row.get("errors") else "errors"
    return row


def _shown(row: dict[str, Any], wl: Workload) -> str:
    if row.get("throughput"):
        unit = "conn/s" if wl.kind == "connect" else "msg/s"
        return (
            f"{row['throughput']:,.0f} {unit} p99 {row['latency_ms']['p99']:.2f} ms "
            f"client CPU {max(row['client_cpu'] or [0]):.0f}%"
        )
    if "kib_per_conn" in row:
        return f"{row['kib_per_conn']} KiB/conn"
    return str(row.get("note", ""))


def _run_all(
    opts: CompareOptions, server_cpu: int | None, engine: str, log: Callable[[str], None]
) -> list[dict[str, Any]]:
    """Interleaved runs (every server once, then again, ...) per workload; one row per pair.

    The main workloads run on ``opts.servers``, then the ladder's (those not already run)
    on ``opts.ladder_servers``.
    """
    rows: list[dict[str, Any]] = []
    live = []
    for name in dict.fromkeys([*opts.servers, *opts.ladder_servers] if opts.ladder
                              else opts.servers):  # fmt: skip
        why = lineup.unavailable(name)
        if why:
            rows.append({"server": name, "workload": "*", "status": "skipped", "note": why})
            log(f"{name}: skipped ({why})")
        else:
            live.append(name)
    main = [n for n in live if n in opts.servers]
    ladder_servers = [n for n in live if n in opts.ladder_servers]
    done = {w.name for w in opts.workloads}
    plan = [(wl, main) for wl in opts.workloads]
    plan += [(wl, ladder_servers) for wl in opts.ladder if wl.name not in done]
    for wl, servers in plan:
        rows.extend(_run_workload(wl, servers, opts, server_cpu, engine, log))
    return rows


def _run_workload(
    wl: Workload, live: list[str], opts: CompareOptions, server_cpu: int | None, engine: str,
    log: Callable[[str], None],
) -> list[dict[str, Any]]:
    """``opts.runs`` interleaved runs of ``wl`` on every server in ``live``; a row each."""
    rows: list[dict[str, Any]] = []
    base = {name: {"server": name, "workload": wl.name, **asdict(wl)} for name in live}
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in live}
    todo = [n for n in live if not _applicable(n, wl, engine)]
    for name in live:
        if name not in todo:
            rows.append(base[name] | {"status": "n/a", "note": _applicable(name, wl, engine)})
    for index in range(opts.runs):
        for name in todo:
            t0 = time.monotonic()
            run = run_one(name, wl, opts, server_cpu, engine)
            runs[name].append(run)
            log(
                f"{name:16s} {wl.name:16s} run {index + 1}/{opts.runs} {run['status']:7s} "
                f"{_shown(run, wl)} ({time.monotonic() - t0:.1f}s)"
            )
    rows.extend(combine(base[name], runs[name]) for name in todo)
    return rows


def run_compare(
    opts: CompareOptions, log: Callable[[str], None] = lambda s: None
) -> list[dict[str, Any]]:
    """Run every selected server through every selected workload; return result rows.

    Servers that cannot run here (a missing library, no C compiler) get one ``skipped`` row
    with a note. Raises CompilerUnavailable if ``opts.engine`` is ``c`` and it cannot build.
    """
    recorder = Recorder(opts.command)
    engine, engine_note = choose_engine(opts.engine, LoadConfig())
    log(f"load generator: {'compiled C epoll engine' if engine == 'c' else 'Python engine'}")
    if engine_note:
        log(engine_note)
    saved_affinity = os.sched_getaffinity(0)
    server_cpu, pin_note = _pin_cpus(opts.pin)
    log(pin_note)
    try:
        rows = _run_all(opts, server_cpu, engine, log)
    finally:
        os.sched_setaffinity(0, saved_affinity)  # callers (tests) keep their cores
    add_ratios(rows)
    meta = {
        "command": opts.command, "pinning": pin_note, "cores": os.cpu_count(),
        "python": platform.python_version(), "platform": platform.platform(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %z"), "aiotcp_args": opts.aiotcp_args,
        "engine": engine, "engine_note": engine_note, "runs": opts.runs,
        "ladder": [w.name for w in opts.ladder], "ladder_servers": opts.ladder_servers,
        "stamp": recorder.stamp(),
    }  # fmt: skip
    from aiotcp.bench.report import write_report

    write_report(opts.out_dir, rows, meta, [w.name for w in opts.workloads], opts.servers)
    return rows


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="aiotcp compare", description=__doc__.split("\n\n")[0] if __doc__ else None
    )
    add = p.add_argument
    add("--quick", action="store_true",
        help=f"servers {','.join(lineup.QUICK)}; workloads {','.join(workloads.QUICK)}; ladder {','.join(workloads.QUICK_LADDER)} (~2 min)")
    add("--servers", help=f"comma-separated, from {','.join(lineup.ORDER)} (default: all)")
    add("--workloads",
        help="comma-separated workload names, e.g. c100-f16-s64,c10-f1-s64-d0.5,connect50,hold1000")
    add("--duration", type=float, default=1.5, help="seconds per load run without -d (default 1.5)")
    add("--runs", type=int, default=DEFAULT_RUNS,
        help=f"interleaved runs per server and workload; figures are medians (default {DEFAULT_RUNS})")
    add("--engine", choices=("auto", "c", "python"), default="auto",
        help="load generator: c (compiled), python, or auto (c when it builds)")
    add("--out", default="compare-report", help="report directory (default ./compare-report)")
    add("--aiotcp-args", default="", help='extra flags for aiotcp serve, e.g. "--max-pipeline 64"')
    add("--no-pin", action="store_true", help="do not pin server and client to separate cores")
    add("--ladder",
        help="payload-ladder workloads, comma-separated, or none (default: "
             f"{','.join(workloads.LADDER)}; with --quick {','.join(workloads.QUICK_LADDER)}; "
             "none when --workloads is given)")
    add("--ladder-servers",
        help=f"servers of the ladder (default {','.join(lineup.LADDER)}, those of them in "
             "--servers when it is given)")
    return p  # fmt: skip


def compare_cli(argv: list[str]) -> int:
    """``aiotcp compare`` entry point; 0 when every run verified cleanly, 1 if not, 2 on bad usage."""
    args = _parser().parse_args(argv)
    quick = args.quick
    names = args.servers.split(",") if args.servers else list(lineup.QUICK if quick else lineup.ORDER)
    specs = args.workloads.split(",") if args.workloads else list(workloads.QUICK if quick else workloads.FULL)
    if args.ladder is not None:
        ladder_specs = [] if args.ladder in ("", "none") else args.ladder.split(",")
    elif args.workloads:
        ladder_specs = []
    else:
        ladder_specs = list(workloads.QUICK_LADDER if quick else workloads.LADDER)
    try:
        servers = [lineup.resolve(n) for n in names]
        if args.ladder_servers:
            ladder_servers = [lineup.resolve(n) for n in args.ladder_servers.split(",")]
        else:
            ladder_servers = [n for n in lineup.LADDER if not args.servers or n in servers]
        wls = [parse_workload(s, args.duration) for s in specs]
        ladder = [parse_workload(s, args.duration) for s in ladder_specs]
        if any(w.kind != "load" for w in ladder):
            raise ValueError("--ladder takes load workloads only (c<conns>-f<in flight>-s<bytes>...)")
        if args.runs < 1:
            raise ValueError("--runs must be >= 1")
    except KeyError as exc:
        print(f"aiotcp compare: unknown server {exc}; choose from {list(lineup.ORDER)}", file=sys.stderr)
        return 2
    except ValueError as exc:
        print(f"aiotcp compare: {exc}", file=sys.stderr)
        return 2
    opts = CompareOptions(
        servers=servers, workloads=wls, out_dir=args.out, aiotcp_args=shlex.split(args.aiotcp_args),
        pin=not args.no_pin, runs=args.runs, engine=args.engine,
        command="aiotcp compare " + " ".join(shlex.quote(a) for a in argv),
        ladder=ladder, ladder_servers=ladder_servers,
    )  # fmt: skip
    try:
        rows = run_compare(opts, log=lambda s: print(s, file=sys.stderr, flush=True))
    except CompilerUnavailable as exc:
        print(f"aiotcp compare: {exc}", file=sys.stderr)
        return 2
    print(f"report: {os.path.join(args.out, 'report.md')}, report.html, results.json", file=sys.stderr)
    return 0 if all(r["status"] in ("ok", "n/a", "skipped") for r in rows) else 1
