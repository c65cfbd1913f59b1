"""``aiotcp serve --app redis`` against redis-server itself, driven by redis-benchmark.

    .venv/bin/python benchmarks/resp.py                     # 3 rounds, -n 100000
    .venv/bin/python benchmarks/resp.py --runs 5 --requests 200000 --pipelines 1,16,64
    .venv/bin/python benchmarks/resp.py --smoke --out /tmp/resp.json   # seconds

Both servers run on this machine: the redis app (uvloop when installed) and a private
``redis-server`` (a free port, ``--save '' --appendonly no``: nothing on disk) started by
this script. With two or more usable cores the servers are pinned to the first and
redis-benchmark to the second, as ``aiotcp compare`` pins its rows. Each round runs
``redis-benchmark -q --csv -t set,get -c CLIENTS -P P -n N`` against each server in turn
(interleaved, so a slow minute of a shared machine hits both alike); the figures are the
medians of the rounds, and the ratio is the redis app's requests per second over
redis-server's in the same rounds.

``--parser`` also times the request parser against hiredis's C reader (``pip install
hiredis`` for that part), the measurement that chose aiotcp's own parser.

Writes benchmarks/results/resp.json (``--out``), stamped (``aiotcp.bench.stamp``).
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import time
import timeit
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))

from aiotcp.bench.scripts import parse, parser, write_result
from aiotcp.bench.serverproc import aiotcp_argv, start_server
from aiotcp.bench.stamp import Recorder

TESTS = "set,get"
#: --smoke: one short round, unpipelined (checks the script; its figures mean nothing).
SMOKE = {"runs": 1, "requests": 2000, "clients": 5, "pipelines": "1"}
# A redis-server that does not answer PING within this did not start.
START_TIMEOUT = 20.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pin(cpu: int | None) -> Any:
    """A preexec_fn pinning the child to ``cpu`` (None: no pinning)."""
    if cpu is None:
        return None
    return lambda: os.sched_setaffinity(0, {cpu})


def start_redis(cpu: int | None) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    proc = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", "/tmp"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=pin(cpu),
    )
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), 1) as s:
                s.sendall(b"PING\r\n")
                if s.recv(16).startswith(b"+PONG"):
                    return proc, port
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise SystemExit(f"redis-server on port {port} did not start")


def benchmark(port: int, clients: int, pipeline: int, requests: int, cpu: int | None
              ) -> dict[str, dict[str, float]]:
    """One redis-benchmark run: test name -> {rps, p50_ms, p99_ms}."""
    done = subprocess.run(
        ["redis-benchmark", "-h", "127.0.0.1", "-p", str(port), "-q", "--csv", "-t", TESTS,
         "-c", str(clients), "-P", str(pipeline), "-n", str(requests)],
        capture_output=True, text=True, timeout=600, preexec_fn=pin(cpu), check=False,
    )
    if done.returncode != 0 or "rror" in done.stdout + done.stderr:
        raise SystemExit(f"redis-benchmark failed on port {port}: {done.stdout}{done.stderr}")
    out: dict[str, dict[str, float]] = {}
    for row in csv.DictReader(io.StringIO(done.stdout)):
        out[row["test"]] = {"rps": float(row["rps"]), "p50_ms": float(row["p50_latency_ms"]),
                            "p99_ms": float(row["p99_latency_ms"])}
    return out


def parser_figures() -> dict[str, Any]:
    """Microseconds per read for aiotcp's parser and hiredis's reader, interleaved."""
    from aiotcp.resp import RespCodec

    try:
        import hiredis
    except ImportError:
        return {"skipped": "hiredis is not installed (pip install hiredis)"}

    def hiredis_feed(reader: Any, data: bytes) -> list[Any]:
        reader.feed(data)
        out = []
        while (m := reader.gets()) is not False:
            out.append(m)
        return out

    cases = {
        "GET x1": b"*2\r\n$3\r\nGET\r\n$16\r\nkey:__rand_int__\r\n",
        "GET x16": b"*2\r\n$3\r\nGET\r\n$16\r\nkey:__rand_int__\r\n" * 16,
        "SET x16": b"*3\r\n$3\r\nSET\r\n$16\r\nkey:__rand_int__\r\n$3\r\nxxx\r\n" * 16,
        "MSET 10 keys": b"*21\r\n$4\r\nMSET\r\n" + b"$16\r\nkey:__rand_int__\r\n$3\r\nxxx\r\n" * 10,
    }
    out: dict[str, Any] = {}
    for name, data in cases.items():
        codec, reader = RespCodec(), hiredis.Reader()
        assert codec.feed(data) == hiredis_feed(reader, data)
        own, hi = [], []
        for _ in range(7):
            own.append(min(timeit.repeat(lambda: codec.feed(data), number=3000, repeat=3)) / 3000)
            hi.append(min(timeit.repeat(lambda: hiredis_feed(reader, data), number=3000,
                                        repeat=3)) / 3000)
        o, h = statistics.median(own) * 1e6, statistics.median(hi) * 1e6
        out[name] = {"aiotcp_us": round(o, 2), "hiredis_us": round(h, 2), "ratio": round(o / h, 2)}
    return out


def main() -> int:
    p = parser(__doc__, str(HERE / "results" / "resp.json"))
    p.add_argument("--runs", type=int, default=3, help="interleaved rounds (default 3)")
    p.add_argument("--requests", type=int, default=100_000, help="redis-benchmark -n")
    p.add_argument("--clients", type=int, default=50, help="redis-benchmark -c")
    p.add_argument("--pipelines", default="1,16", help="redis-benchmark -P values, comma-separated")
    p.add_argument("--no-pin", action="store_true", help="do not pin servers and client")
    p.add_argument("--parser", action="store_true", help="also time the parser against hiredis")
    args = parse(p, SMOKE)
    recorder = Recorder(" ".join(sys.argv))
    for tool in ("redis-server", "redis-benchmark"):
        if shutil.which(tool) is None:
            print(f"resp.py: {tool} is not on PATH (apt-get install redis-server redis-tools)",
                  file=sys.stderr)
            return 2
    pipelines = [int(p) for p in args.pipelines.split(",")]
    cpus = sorted(os.sched_getaffinity(0))
    server_cpu = client_cpu = None
    note = f"not pinned ({len(cpus)} usable core(s)); client and servers share cores"
    if not args.no_pin and len(cpus) >= 2:
        server_cpu, client_cpu = cpus[0], cpus[1]
        note = f"servers pinned to CPU {server_cpu}, redis-benchmark to CPU {client_cpu}"

    app = start_server(aiotcp_argv(["--app", "redis"]), cpu=server_cpu)
    redis_proc, redis_port = start_redis(server_cpu)
    servers = {"aiotcp redis app": app.port, "redis-server": redis_port}
    runs: list[dict[str, Any]] = []
    try:
        for r in range(args.runs):
            for p in pipelines:
                for name, port in servers.items():
                    figures = benchmark(port, args.clients, p, args.requests, client_cpu)
                    runs.append({"round": r, "server": name, "pipeline": p, "tests": figures})
                    print(f"round {r} -P {p:<3} {name:18s} " + "  ".join(
                        f"{t} {v['rps']:>10,.0f}/s" for t, v in figures.items()), flush=True)
    finally:
        app.stop()
        redis_proc.kill()
        redis_proc.wait()

    medians: dict[str, Any] = {}
    for p in pipelines:
        for name in servers:
            rows = [x["tests"] for x in runs if x["pipeline"] == p and x["server"] == name]
            medians.setdefault(f"P{p}", {})[name] = {
                t: {k: statistics.median(row[t][k] for row in rows) for k in rows[0][t]}
                for t in rows[0]
            }
    ratios = {
        pk: {t: round(v["aiotcp redis app"][t]["rps"] / v["redis-server"][t]["rps"], 3)
             for t in v["redis-server"]}
        for pk, v in medians.items()
    }
    result: dict[str, Any] = {
        "what": "redis-benchmark -q --csv -t set,get against aiotcp serve --app redis and "
                "redis-server on one machine, interleaved; medians of the rounds",
        "pinning": note,
        "params": {"runs": args.runs, "requests": args.requests, "clients": args.clients,
                   "pipelines": pipelines},
        "medians": medians, "ratio_aiotcp_to_redis": ratios, "runs": runs,
    }
    if args.parser:
        result["parser_us_per_read"] = parser_figures()
    write_result(args.out, result, recorder)
    print(note)
    for pk, v in ratios.items():
        print(f"-{pk}: " + "  ".join(
            f"{t} {medians[pk]['aiotcp redis app'][t]['rps']:,.0f} vs "
            f"{medians[pk]['redis-server'][t]['rps']:,.0f} req/s (x{r})" for t, r in v.items()))
    if args.parser:
        print(json.dumps(result["parser_us_per_read"], indent=2))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
