"""The gateway app's throughput and added latency, against calling the upstream directly.

    .venv/bin/python benchmarks/gateway.py                      # gRPC and HTTP, 3 s per run, 2 rounds
    .venv/bin/python benchmarks/gateway.py --kinds grpc --duration 5 --repeat 3
    .venv/bin/python benchmarks/gateway.py --smoke --out /tmp/gateway.json   # seconds

For each upstream kind (a grpc.aio echo server, an aiohttp echo server: a process each,
uvloop when installed) and each load (1 client with 1 call in flight; 100 connections
with 1 and with 16 in flight), two runs:

* direct: one client process calls the upstream itself, connections x in-flight callers
  (grpc.aio: one channel; aiohttp: one session), at most 100 calls at the upstream at
  once (the gateway's default --upstream-concurrency; aiohttp's pool of 100);
* gateway: ``aiotcp bench`` (the compiled load engine, every reply verified) sends
  64-byte lines to ``aiotcp serve --app gateway --upstream URL``, which makes the calls.

Added latency is the gateway run's p50 (p99) less the direct run's at the same load.
Everything shares this machine's cores (client, gateway, upstream), so read the ratios
and the spread, not the digits. Writes benchmarks/results/gateway.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from aiotcp.bench.scripts import parse, parser, write_result
from aiotcp.bench.serverproc import aiotcp_argv, start_server
from aiotcp.bench.stamp import Recorder

HERE = Path(__file__).parent
SERVICE_METHOD = "/bench.Echo/Say"
PREFIX = "echo "
SIZE = 64
# (name, connections, in flight per connection)
LOADS = (("lone", 1, 1), ("c100_f1", 100, 1), ("c100_f16", 100, 16))
WARMUP = 0.5
# Calls in flight at the upstream at most, on both sides: the gateway's default
# --upstream-concurrency, the direct client's semaphore (gRPC) or pool (HTTP). Unbounded,
# 1,600 calls at once make a grpc.aio server cancel some (grpc-core keeps at most 1,000
# calls pending for the application by default).
UPSTREAM_CONCURRENCY = 100
KINDS = ("grpc", "http")
SMOKE = {"duration": 0.3, "loads": "lone", "repeat": 1}


# ---- the upstream (a child process: --serve-upstream KIND) ------------------------------

async def serve_upstream(kind: str) -> None:
    """An echo upstream on a free loopback port; prints ``port N`` and serves until killed."""
    if kind == "grpc":
        import grpc
        from google.protobuf import wrappers_pb2

        value = wrappers_pb2.StringValue

        async def say(request: Any, context: Any) -> Any:
            return value(value=PREFIX + request.value)

        server = grpc.aio.server()
        handler = grpc.unary_unary_rpc_method_handler(
            say, request_deserializer=value.FromString, response_serializer=value.SerializeToString
        )
        server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler("bench.Echo", {"Say": handler}),)
        )
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
    else:
        from aiohttp import web

        async def echo(request: web.Request) -> web.Response:
            return web.Response(text=PREFIX + await request.text())

        app = web.Application()
        app.router.add_post("/echo", echo)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    print(f"port {port}", flush=True)
    await asyncio.Event().wait()


def upstream_url(kind: str, port: int) -> str:
    if kind == "grpc":
        return f"grpc://127.0.0.1:{port}{SERVICE_METHOD}"
    return f"http://127.0.0.1:{port}/echo"


# ---- the direct client (a child process: --direct KIND PORT C F DURATION) --------------

async def direct(kind: str, port: int, connections: int, in_flight: int, duration: float
                 ) -> dict[str, Any]:
    """Closed loop: connections x in_flight callers, each one call at a time."""
    message = "x" * SIZE
    latencies: list[float] = []
    clock = time.perf_counter  # uvloop's loop.time() counts whole milliseconds
    start = clock() + WARMUP
    stop = start + duration
    errors: dict[str, int] = {}
    if kind == "grpc":
        import grpc
        from google.protobuf import wrappers_pb2

        value = wrappers_pb2.StringValue
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
        method = channel.unary_unary(SERVICE_METHOD, request_serializer=value.SerializeToString,
                                     response_deserializer=value.FromString)
        places = asyncio.Semaphore(UPSTREAM_CONCURRENCY)

        async def call() -> bool:
            async with places:
                return bool((await method(value(value=message))).value == PREFIX + message)

        async def close() -> None:
            await channel.close()
    else:
        import aiohttp

        session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=UPSTREAM_CONCURRENCY)
        )
        url = upstream_url(kind, port)

        async def call() -> bool:
            async with session.post(url, data=message.encode()) as answer:
                return answer.status == 200 and await answer.text() == PREFIX + message

        async def close() -> None:
            await session.close()

    async def caller() -> None:
        while (t0 := clock()) < stop:
            try:
                ok = await call()
            except Exception as e:  # counted, as aiotcp bench counts a wrong reply
                why = getattr(e, "code", lambda: type(e).__name__)()
                errors[str(why)] = errors.get(str(why), 0) + 1
                continue
            t1 = clock()
            if not ok:
                errors["wrong reply"] = errors.get("wrong reply", 0) + 1
            elif start <= t1 <= stop:  # every call answered in the window, as aiotcp bench
                latencies.append(t1 - t0)

    cpu0, t0 = time.process_time(), clock()
    await asyncio.gather(*(caller() for _ in range(connections * in_flight)))
    cpu = (time.process_time() - cpu0) / (clock() - t0) * 100
    await close()
    return summary(latencies, duration, errors, cpu)


def summary(latencies: list[float], duration: float, errors: dict[str, int], cpu: float
            ) -> dict[str, Any]:
    latencies.sort()
    n = len(latencies)
    return {
        "calls_per_s": round(n / duration),
        "p50_ms": round(statistics.median(latencies) * 1e3, 3) if n else None,
        "p99_ms": round(latencies[max(0, int(n * 0.99) - 1)] * 1e3, 3) if n else None,
        "client_cpu_pct": round(cpu),
        "errors": errors,
    }


# ---- the runs ---------------------------------------------------------------------------

def child(*args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True,
                          timeout=timeout, check=False)


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far (/proc/PID/stat)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start_upstream(kind: str) -> tuple[subprocess.Popen[str], int]:
    proc = subprocess.Popen([sys.executable, __file__, "--serve-upstream", kind],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.startswith("port "):
        proc.kill()
        raise SystemExit(f"the {kind} upstream did not start")
    return proc, int(line.split()[1])


def with_upstream_cpu(upstream: int, run: Any, *args: Any) -> dict[str, Any]:
    """``run(*args)`` and the upstream's CPU share (%) meanwhile."""
    cpu0, t0 = cpu_seconds(upstream), time.monotonic()
    result: dict[str, Any] = run(*args)
    result["upstream_cpu_pct"] = round((cpu_seconds(upstream) - cpu0) / (time.monotonic() - t0) * 100)
    return result


def run_direct(kind: str, port: int, connections: int, f: int, duration: float
               ) -> dict[str, Any]:
    out = child("--direct", kind, str(port), str(connections), str(f), str(duration),
                timeout=duration * 4 + 60)
    if not out.stdout.strip():
        raise SystemExit(f"the direct client failed: {out.stderr.strip()[-2000:]}")
    result: dict[str, Any] = json.loads(out.stdout)
    return result


def run_gateway(kind: str, port: int, connections: int, f: int, duration: float
                ) -> dict[str, Any]:
    upstream_concurrency = UPSTREAM_CONCURRENCY
    server = start_server(aiotcp_argv([
        "--app", "gateway", "--upstream", upstream_url(kind, port),
        "--handler-concurrency", str(f), "--upstream-concurrency", str(upstream_concurrency),
        "--handler-timeout", "10",
    ]))
    try:
        cpu0, t0 = server.cpu_seconds(), time.monotonic()
        out = subprocess.run(
            [sys.executable, "-m", "aiotcp", "bench", "--port", str(server.port), "-c",
             str(connections), "-f", str(f), "-d", str(duration), "-s", str(SIZE), "--prefix",
             PREFIX, "--json"],
            capture_output=True, text=True, timeout=duration * 4 + 60, check=False,
        )  # fmt: skip
        gateway_cpu = (server.cpu_seconds() - cpu0) / (time.monotonic() - t0) * 100
    finally:
        server.stop()
    if not out.stdout.strip():
        raise SystemExit(f"aiotcp bench failed: {out.stderr.strip()[-2000:]}")
    r = json.loads(out.stdout)
    return {
        "messages_per_s": round(r["throughput"]),
        "p50_ms": round(r["latency_ms"]["p50"], 3),
        "p99_ms": round(r["latency_ms"]["p99"], 3),
        "gateway_cpu_pct": round(gateway_cpu),
        "client_cpu_pct": [round(c) for c in r["client_cpu"]],
        "engine": r.get("engine"),
        "ok": r["ok"],
        "errors": r["errors"],
        "upstream_concurrency": upstream_concurrency,
    }


def one_round(kinds: list[str], duration: float, loads: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for kind in kinds:
        proc, port = start_upstream(kind)
        try:
            for name, connections, f in (load for load in LOADS if load[0] in loads):
                cell = {
                    side: with_upstream_cpu(proc.pid, run, kind, port, connections, f, duration)
                    for side, run in (("direct", run_direct), ("gateway", run_gateway))
                }
                out.setdefault(kind, {})[name] = cell
                print(f"{kind:5} {name:9} {json.dumps(cell)}", flush=True)
        finally:
            proc.kill()
            proc.wait()
    return out


def median_cell(cells: list[dict[str, Any]]) -> dict[str, Any]:
    """Per side, the run with the median rate, every run's rate beside it; added latency."""
    out: dict[str, Any] = {}
    for side, rate in (("direct", "calls_per_s"), ("gateway", "messages_per_s")):
        runs = sorted((c[side] for c in cells), key=lambda r: r[rate])
        out[side] = {**runs[(len(runs) - 1) // 2], f"{rate}_runs": [r[rate] for r in runs]}
    d, g = out["direct"], out["gateway"]
    # CPU per call: less sensitive than rates to the other work sharing the machine
    d["client_cpu_us_per_call"] = round(d["client_cpu_pct"] * 1e4 / max(d["calls_per_s"], 1))
    g["gateway_cpu_us_per_message"] = round(
        g["gateway_cpu_pct"] * 1e4 / max(g["messages_per_s"], 1)
    )
    if d["p50_ms"] is not None:
        out["added_ms"] = {q: round(g[f"{q}_ms"] - d[f"{q}_ms"], 3) for q in ("p50", "p99")}
        out["gateway_vs_direct_rate"] = round(g["messages_per_s"] / max(d["calls_per_s"], 1), 2)
    return out


def main() -> int:
    p = parser(__doc__, str(HERE / "results" / "gateway.json"))
    p.add_argument("--kinds", default=",".join(KINDS), help="upstream kinds: grpc, http")
    p.add_argument("--duration", type=float, default=3.0, help="seconds per run")
    p.add_argument("--repeat", type=int, default=2, help="rounds; each cell reports its median")
    p.add_argument("--loads", default=",".join(name for name, _, _ in LOADS),
                   help="comma-separated, from the default")
    p.add_argument("--serve-upstream", metavar="KIND", help=argparse.SUPPRESS)
    p.add_argument("--direct", nargs=5, metavar="ARG", help=argparse.SUPPRESS)
    args = parse(p, SMOKE)
    runner = asyncio.run
    try:
        import uvloop

        runner = uvloop.run
    except ImportError:
        pass
    if args.serve_upstream:
        runner(serve_upstream(args.serve_upstream))
        return 0
    if args.direct:
        kind, port, c, f, d = args.direct
        print(json.dumps(runner(direct(kind, int(port), int(c), int(f), float(d)))))
        return 0
    kinds, chosen = args.kinds.split(","), args.loads.split(",")
    if bad := sorted(set(kinds) - set(KINDS)):
        p.error(f"unknown kind(s) {', '.join(bad)}; choose from {', '.join(KINDS)}")
    if bad := sorted(set(chosen) - {name for name, _, _ in LOADS}):
        p.error(f"unknown load(s) {', '.join(bad)}; choose from "
                f"{', '.join(name for name, _, _ in LOADS)}")
    recorder = Recorder(" ".join(sys.argv))
    loads = [os.getloadavg()[0]]
    rounds = []
    for _ in range(args.repeat):  # rounds interleave the cells: a noisy minute hits them all
        rounds.append(one_round(kinds, args.duration, chosen))
        loads.append(os.getloadavg()[0])
    names = [name for name, _, _ in LOADS if name in chosen]
    results = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "load_average": [min(loads), max(loads)],
        "message_bytes": SIZE, "duration_s": args.duration, "repeat": args.repeat,
        "loads": {name: {"connections": c, "in_flight": f} for name, c, f in LOADS
                  if name in chosen},
        "kinds": {
            kind: {name: median_cell([r[kind][name] for r in rounds]) for name in names}
            for kind in kinds
        },
        "smoke": args.smoke,
    }  # fmt: skip
    write_result(args.out, results, recorder)
    print(json.dumps(results["kinds"], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
