"""TLS cost per connection and TLS throughput: aiotcp's front door against the loops' own ssl=.

    .venv/bin/python benchmarks/tls_memory.py                 # memory + throughput (~8 min)
    .venv/bin/python benchmarks/tls_memory.py --only memory --connections 2000
    .venv/bin/python benchmarks/tls_memory.py --smoke --out /tmp/tls.json   # seconds

Servers (each a fresh process running aiotcp's ack app, the same Connection class):
  asyncio-ssl     asyncio loop, TLS by loop.create_server(..., ssl=ctx)
  uvloop-ssl      uvloop, TLS by loop.create_server(..., ssl=ctx)
  frontdoor-asyncio / frontdoor-uvloop   aiotcp serve --tls-cert (ssl.SSLObject over MemoryBIO)

Memory: warm up with 200 TLS connections (one round trip each, then closed), read the
server's VmRSS, open N connections with one round trip each and hold them, read VmRSS
again: (after - before) / N. Throughput: 100 TLS connections, closed loop with 1 or 16
64-byte lines in flight each, server pinned to CPU 0, the client (one process, uvloop
and its built-in TLS) to CPU 1; CPU shares read from /proc.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import resource
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from aiotcp.bench.scripts import parse, parser, write_result
from aiotcp.bench.stamp import Recorder

HERE = Path(__file__).resolve().parent
MODES = ("asyncio-ssl", "uvloop-ssl", "frontdoor-asyncio", "frontdoor-uvloop")
MESSAGE = b"x" * 63 + b"\n"  # 64-byte lines, as in the compare workloads
WARMUP_CONNECTIONS = 200
CONNECT_CONCURRENCY = 100
SETTLE = 1.0
# The throughput client's connections, and its warm-up before the measured window (s).
LOAD_CONNECTIONS = 100
LOAD_WARMUP = 1.0
SMOKE = {"connections": 20, "warmup_connections": 10, "settle": 0.2, "duration": 0.3,
         "rounds": 1, "in_flight_list": "16", "load_connections": 10, "load_warmup": 0.2}


# ---- server process -------------------------------------------------------------------

def serve(mode: str, cert: str) -> None:
    from aiotcp.apps import load_app
    from aiotcp.config import Config
    from aiotcp.frontdoor.context import build_server_context
    from aiotcp.runner import loop_factory, raise_nofile_limit
    from aiotcp.server import Server

    raise_nofile_limit()
    # asyncio's ssl= warns per connection that the ack app's eof_received() (half-close
    # support) has no effect under TLS: true, and not what is measured here.
    logging.getLogger("asyncio").setLevel(logging.ERROR)
    loop_kind = "asyncio" if "asyncio" in mode else "uvloop"
    builtin = mode.endswith("-ssl")
    tls = {"tls_cert": cert, "tls_key": cert}
    config = Config(host="127.0.0.1", port=0, loop=loop_kind, access_log=False,
                    idle_timeout=0, log_level="warning", **({} if builtin else tls))

    async def main() -> None:
        server = Server(load_app(config), config)
        # Started in every mode, so the lifespan, dispatch and the deadline sweep run as
        # they do under `aiotcp serve`; the ssl= modes add a TLS listener of their own.
        await server.start()
        if builtin:
            # The same connection class as aiotcp serve's (server.connection_class, the
            # kind chosen once for the app), with TLS by the loop's own ssl=.
            loop = asyncio.get_running_loop()
            ctx = build_server_context(config.replace(**tls))
            listener = await loop.create_server(
                server.connection_class, "127.0.0.1", 0, ssl=ctx, backlog=4096
            )
            port = listener.sockets[0].getsockname()[1]
        else:
            port = server.addresses[0][1]
        print(port, flush=True)
        await asyncio.Event().wait()

    with asyncio.Runner(loop_factory=loop_factory(config)) as runner:
        runner.run(main())


class Server:
    def __init__(self, mode: str, cert: str, cpu: int | None = None) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--serve", mode, "--cert", cert],
            stdout=subprocess.PIPE, text=True,
        )
        assert self.proc.stdout is not None
        self.port = int(self.proc.stdout.readline())
        if cpu is not None:
            os.sched_setaffinity(self.proc.pid, {cpu})

    def rss_kib(self) -> int:
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        raise RuntimeError("no VmRSS")

    def cpu_seconds(self) -> float:
        return _cpu_seconds(self.proc.pid)

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait()


def _cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# ---- memory ---------------------------------------------------------------------------

async def open_round_trip(port: int, ctx: ssl.SSLContext, n: int) -> list[asyncio.StreamWriter]:
    """n TLS connections, each after one round trip, held open."""
    sem = asyncio.Semaphore(CONNECT_CONCURRENCY)

    async def one() -> asyncio.StreamWriter:
        async with sem:
            r, w = await asyncio.open_connection("127.0.0.1", port, ssl=ctx,
                                                 server_hostname="localhost")
            w.write(MESSAGE)
            await r.readline()
            return w

    return list(await asyncio.gather(*(one() for _ in range(n))))


async def close_all(writers: list[asyncio.StreamWriter]) -> None:
    for w in writers:
        w.transport.abort()
    await asyncio.sleep(0.2)


def measure_memory(mode: str, cert: str, ca: str, n: int, warmup: int = WARMUP_CONNECTIONS,
                   settle: float = SETTLE) -> dict[str, Any]:
    server = Server(mode, cert)
    ctx = ssl.create_default_context(cafile=ca)

    async def main() -> dict[str, Any]:
        await close_all(await open_round_trip(server.port, ctx, warmup))
        await asyncio.sleep(settle)
        before = server.rss_kib()
        held = await open_round_trip(server.port, ctx, n)
        await asyncio.sleep(settle)
        after = server.rss_kib()
        await close_all(held)
        return {"mode": mode, "connections": n, "rss_before_kib": before,
                "rss_after_kib": after, "kib_per_connection": round((after - before) / n, 2)}

    try:
        return _run_uvloop(main())
    finally:
        server.stop()


# ---- throughput -----------------------------------------------------------------------

class LoadProtocol(asyncio.Protocol):
    """Keeps ``in_flight`` lines outstanding: every reply completed sends one more."""

    def __init__(self, in_flight: int, counter: list[int]) -> None:
        self.in_flight = in_flight
        self.counter = counter
        self.transport: Any = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self.transport.write(MESSAGE * self.in_flight)

    def data_received(self, data: bytes) -> None:
        n = data.count(b"\n")
        if n:
            self.counter[0] += n
            self.transport.write(MESSAGE * n)


def load(port: int, ca: str, connections: int, in_flight: int, duration: float,
         warmup: float) -> None:
    """Client process: print JSON {replies, seconds, cpu_seconds} for the timed window."""
    ctx = ssl.create_default_context(cafile=ca)

    async def main() -> dict[str, float]:
        loop = asyncio.get_running_loop()
        counter = [0]
        for _ in range(connections):
            await loop.create_connection(lambda: LoadProtocol(in_flight, counter), "127.0.0.1",
                                         port, ssl=ctx, server_hostname="localhost")
        await asyncio.sleep(warmup)
        start, replies, cpu = time.perf_counter(), counter[0], time.process_time()
        await asyncio.sleep(duration)
        return {"replies": counter[0] - replies, "seconds": time.perf_counter() - start,
                "cpu_seconds": time.process_time() - cpu}

    print(json.dumps(_run_uvloop(main())), flush=True)
    os._exit(0)


def measure_throughput(mode: str, cert: str, ca: str, in_flight: int, duration: float,
                       connections: int = LOAD_CONNECTIONS, warmup: float = LOAD_WARMUP
                       ) -> dict[str, Any]:
    cpus = sorted(os.sched_getaffinity(0))
    server = Server(mode, cert, cpu=cpus[0])
    try:
        client = subprocess.Popen(
            [sys.executable, __file__, "--load", str(server.port), "--ca", ca,
             "--in-flight", str(in_flight), "--duration", str(duration),
             "--load-connections", str(connections), "--load-warmup", str(warmup)],
            stdout=subprocess.PIPE, text=True,
        )
        if len(cpus) > 1:
            os.sched_setaffinity(client.pid, {cpus[1]})
        time.sleep(warmup + 0.5)  # connects and warm-up, then the window starts
        cpu0 = server.cpu_seconds()
        out, _ = client.communicate(timeout=duration + 60)
        server_cpu = server.cpu_seconds() - cpu0
        result = json.loads(out)
    finally:
        server.stop()
    seconds = result["seconds"]
    return {"mode": mode, "in_flight": in_flight,
            "messages_per_second": round(result["replies"] / seconds),
            # Load-independent: what one message costs the server (the machine is shared).
            "server_cpu_us_per_message": round(server_cpu * 1e6 / max(1, result["replies"]), 2),
            "server_cpu_share": round(server_cpu / seconds, 2),
            "client_cpu_share": round(result["cpu_seconds"] / seconds, 2)}


def median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run with the median throughput, with every round's figures attached."""
    ordered = sorted(runs, key=lambda r: r["messages_per_second"])
    median = dict(ordered[len(ordered) // 2])
    median["rounds_messages_per_second"] = [r["messages_per_second"] for r in runs]
    median["rounds_cpu_us_per_message"] = [r["server_cpu_us_per_message"] for r in runs]
    return median


# ---- main -----------------------------------------------------------------------------

def _run_uvloop(coro: Any) -> Any:
    import uvloop

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coro)


def make_certs(directory: Path) -> tuple[str, str]:
    import trustme

    ca = trustme.CA()
    server = directory / "server.pem"
    ca.issue_cert("localhost", "127.0.0.1").private_key_and_cert_chain_pem.write_to_path(
        str(server))
    ca.cert_pem.write_to_path(str(directory / "ca.pem"))
    return str(server), str(directory / "ca.pem")


def main() -> int:
    p = parser(__doc__, str(HERE / "results" / "tls_memory.json"))
    p.add_argument("--only", choices=("memory", "throughput"))
    p.add_argument("--connections", type=int, default=2000, help="TLS connections held")
    p.add_argument("--warmup-connections", type=int, default=WARMUP_CONNECTIONS,
                   help="opened and closed before the memory is read")
    p.add_argument("--settle", type=float, default=SETTLE,
                   help="seconds to wait before each memory reading")
    p.add_argument("--duration", type=float, default=5.0, help="seconds per throughput run")
    p.add_argument("--modes", default=",".join(MODES), help="comma-separated, from the list above")
    p.add_argument("--rounds", type=int, default=3,
                   help="throughput rounds, modes interleaved; the median is reported")
    p.add_argument("--in-flight-list", default="1,16", help="throughput: lines in flight per "
                   "connection, comma-separated")
    p.add_argument("--load-connections", type=int, default=LOAD_CONNECTIONS,
                   help="throughput: TLS connections of the client")
    p.add_argument("--load-warmup", type=float, default=LOAD_WARMUP,
                   help="throughput: seconds of load before the measured window")
    p.add_argument("--serve", help=argparse.SUPPRESS)
    p.add_argument("--load", type=int, help=argparse.SUPPRESS)
    p.add_argument("--cert", help=argparse.SUPPRESS)
    p.add_argument("--ca", help=argparse.SUPPRESS)
    p.add_argument("--in-flight", type=int, default=1, help=argparse.SUPPRESS)
    args = parse(p, SMOKE)
    if args.serve:
        serve(args.serve, args.cert)
        return 0
    if args.load:
        load(args.load, args.ca, args.load_connections, args.in_flight, args.duration,
             args.load_warmup)
        return 0
    modes = args.modes.split(",")
    unknown = sorted(set(modes) - set(MODES))
    if unknown:
        p.error(f"unknown mode(s) {', '.join(unknown)}; choose from {', '.join(MODES)}")
    try:
        in_flights = [int(f) for f in args.in_flight_list.split(",")]
    except ValueError:
        p.error(f"--in-flight-list: not a list of integers: {args.in_flight_list!r}")
    recorder = Recorder(" ".join(sys.argv))
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    results: dict[str, list[dict[str, Any]]] = {"memory": [], "throughput": []}
    with tempfile.TemporaryDirectory() as tmp:
        cert, ca = make_certs(Path(tmp))
        if args.only in (None, "memory"):
            for mode in modes:
                r = measure_memory(mode, cert, ca, args.connections, args.warmup_connections,
                                   args.settle)
                results["memory"].append(r)
                print(f"memory  {mode:18} {r['kib_per_connection']:8.2f} KiB/conn "
                      f"({r['rss_before_kib']} -> {r['rss_after_kib']} KiB)", flush=True)
        if args.only in (None, "throughput"):
            for in_flight in in_flights:
                runs: dict[str, list[dict[str, Any]]] = {m: [] for m in modes}
                for _ in range(args.rounds):
                    for mode in modes:
                        runs[mode].append(measure_throughput(
                            mode, cert, ca, in_flight, args.duration, args.load_connections,
                            args.load_warmup))
                for mode in modes:
                    r = median_run(runs[mode])
                    results["throughput"].append(r)
                    print(f"thruput {mode:18} f{in_flight:<3} {r['messages_per_second']:8} msg/s"
                          f"  {r['server_cpu_us_per_message']:6.2f} us server CPU/msg"
                          f"  server cpu {r['server_cpu_share']:.2f}"
                          f"  client cpu {r['client_cpu_share']:.2f}", flush=True)
    settings = {"connections": args.connections, "duration_s": args.duration,
                "rounds": args.rounds, "load_connections": args.load_connections,
                "smoke": args.smoke}
    write_result(args.out, {"settings": settings, **results}, recorder)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
