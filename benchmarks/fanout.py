"""Fan-out benchmark of the pubsub app: 1 publisher, N subscribers over 3 instances.

    .venv/bin/python benchmarks/fanout.py                 # both modes, default rates
    .venv/bin/python benchmarks/fanout.py --modes streams --rates 50,100 --seconds 5
    .venv/bin/python benchmarks/fanout.py --smoke --out /tmp/fanout.json   # seconds

For each broker mode, three ``aiotcp serve --app pubsub`` instances share one Redis;
the subscribers (default 1,000) are spread evenly over them, all on one topic; one
publisher on the first instance publishes at a fixed rate (open loop, paced every
millisecond), each message carrying its send time. A rate passes if every subscriber
got every message. Reported per rate: deliveries per second (MSG lines received by all
subscribers / publishing time) and publish-to-delivery latency percentiles (send time
to the read that brought the line to the subscriber, same clock, one process).

Bounded: each rate runs ``--seconds`` plus at most ``--grace`` seconds to drain. The
clients and servers share this machine's cores (and Redis), so the figures are what
this machine gives, not a service limit. Writes JSON to ``--out``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from aiotcp.bench.scripts import parse, parser, write_result
from aiotcp.bench.serverproc import ServerProcess, aiotcp_argv, start_server
from aiotcp.bench.stamp import Recorder

HERE = Path(__file__).resolve().parent
INSTANCES = 3
SMOKE = {"subscribers": 6, "rates": "20", "seconds": 0.5, "grace": 5.0}
TICK = 0.001  # the publisher's pacing step, seconds
# A p99 above this means deliveries queue up (the rate is over capacity): stop there.
SATURATED_P99_MS = 1000.0


class Subscriber(asyncio.Protocol):
    """Counts MSG lines and records each one's latency (one clock read per read)."""

    def __init__(self, latencies: list[int], done: asyncio.Event, expected: list[int]) -> None:
        self.buf = b""
        self.latencies = latencies
        self.got = 0
        self.done = done
        self.expected = expected  # [messages per subscriber], shared; set per run
        self.ok = asyncio.get_running_loop().create_future()
        self.transport: Any = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        now = time.perf_counter_ns()
        lines = (self.buf + data).split(b"\n")
        self.buf = lines.pop()
        record = self.latencies.append
        for line in lines:
            if line.startswith(b"MSG "):
                record(now - int(line.rsplit(b" ", 1)[1]))
                self.got += 1
            elif line.startswith(b"OK SUB") and not self.ok.done():
                self.ok.set_result(None)
        if self.got >= self.expected[0] > 0:
            self.done.set()


async def run_rate(ports: list[int], subs: list[Subscriber], pub: tuple[Any, Any], t: str,
                   rate: int, seconds: float, grace: float) -> dict[str, Any]:
    latencies: list[int] = []
    n = int(rate * seconds)
    for s in subs:
        s.latencies, s.got = latencies, 0
    subs[0].expected[0] = n
    reader, writer = pub
    loop = asyncio.get_running_loop()
    acks = 0

    async def count_acks() -> None:
        nonlocal acks
        while acks < n:
            line = await reader.readline()
            if not line.startswith("已收到: ".encode()):
                raise RuntimeError(f"publisher got {line!r}")
            acks += 1

    acking = asyncio.ensure_future(count_acks())
    start = loop.time()
    sent = 0
    while sent < n:
        due = min(n, int((loop.time() - start) * rate) + 1)
        if due > sent:
            stamp = time.perf_counter_ns()
            writer.write(b"".join(f"PUB {t} {i} {stamp}\n".encode() for i in range(sent, due)))
            sent = due
        await asyncio.sleep(TICK)
    publish_time = loop.time() - start
    deadline = loop.time() + grace
    while loop.time() < deadline and (acks < n or any(s.got < n for s in subs)):
        await asyncio.sleep(0.05)
    acking.cancel()
    received = sum(s.got for s in subs)
    elapsed = loop.time() - start
    latencies.sort()

    def pct(p: float) -> float:
        return latencies[min(len(latencies) - 1, int(p * len(latencies)))] / 1e6 if latencies else 0

    return {
        "rate": rate,
        "messages": n,
        "expected_deliveries": n * len(subs),
        "deliveries": received,
        "acked": acks,
        "complete": received == n * len(subs) and acks == n,
        "publish_seconds": round(publish_time, 3),
        "deliveries_per_second": round(received / max(elapsed, publish_time), 1),
        "latency_ms": {"p50": pct(0.50), "p90": pct(0.90), "p99": pct(0.99), "max": pct(1.0)},
    }


async def bench_mode(mode: str, broker: str, subscribers: int, rates: list[int],
                     seconds: float, grace: float) -> dict[str, Any]:
    argv = aiotcp_argv(["--app", "pubsub", "--broker", broker, "--broker-mode", mode,
                        "--log-level", "warning"])
    with concurrent.futures.ThreadPoolExecutor(INSTANCES) as pool:  # started side by side
        started = [pool.submit(start_server, argv) for _ in range(INSTANCES)]
    servers: list[ServerProcess] = []
    for future in started:
        try:
            servers.append(future.result())
        except Exception:
            for s in servers:
                s.stop()
            raise
    loop = asyncio.get_running_loop()
    t = f"bench-{uuid.uuid4().hex[:8]}"
    subs: list[Subscriber] = []
    expected = [0]
    done = asyncio.Event()
    try:
        for i in range(subscribers):
            port = servers[i % INSTANCES].port
            _, proto = await loop.create_connection(
                lambda: Subscriber([], done, expected), "127.0.0.1", port)
            proto.transport.write(f"SUB {t}\n".encode())
            subs.append(proto)
        async with asyncio.timeout(30):
            await asyncio.gather(*(s.ok for s in subs))
        pub = await asyncio.open_connection("127.0.0.1", servers[0].port)
        results = []
        for rate in rates:
            r = await run_rate([s.port for s in servers], subs, pub, t, rate, seconds, grace)
            print(f"{mode:8} rate {rate:5}/s: {r['deliveries_per_second']:>10.0f} deliveries/s, "
                  f"p50 {r['latency_ms']['p50']:.2f} ms, p99 {r['latency_ms']['p99']:.2f} ms"
                  f"{'' if r['complete'] else '  INCOMPLETE'}", flush=True)
            results.append(r)
            if not r["complete"] or r["latency_ms"]["p99"] > SATURATED_P99_MS:
                break  # past what this machine delivers: higher rates only queue more
        pub[1].close()
        for s in subs:
            s.transport.close()
        return {"mode": mode, "results": results}
    finally:
        with concurrent.futures.ThreadPoolExecutor(INSTANCES) as pool:  # drained side by side
            list(pool.map(ServerProcess.stop, servers))


def main() -> int:
    p = parser(__doc__, str(HERE / "results" / "fanout.json"))
    p.add_argument("--broker", default=os.environ.get("AIOTCP_TEST_REDIS",
                                                      "redis://127.0.0.1:6379/0"),
                   help="the Redis the instances share (default $AIOTCP_TEST_REDIS or local)")
    p.add_argument("--modes", default="pubsub,streams", help="broker modes: pubsub, streams")
    p.add_argument("--subscribers", type=int, default=1000)
    p.add_argument("--rates", default="25,100,200,400,800",
                   help="messages per second to try, in order (stops at the first miss)")
    p.add_argument("--seconds", type=float, default=5.0, help="seconds of publishing per rate")
    p.add_argument("--grace", type=float, default=15.0,
                   help="seconds at most to wait for the deliveries after publishing")
    args = parse(p, SMOKE)
    try:
        rates = [int(r) for r in args.rates.split(",")]
    except ValueError:
        p.error(f"--rates: not a list of integers: {args.rates!r}")
    if bad := sorted(set(args.modes.split(",")) - {"pubsub", "streams"}):
        p.error(f"unknown mode(s) {', '.join(bad)}; choose from pubsub, streams")
    recorder = Recorder(" ".join(sys.argv))
    try:
        import uvloop
        runner = uvloop.run
    except ImportError:
        runner = asyncio.run
    report: dict[str, Any] = {
        "subscribers": args.subscribers, "instances": INSTANCES, "seconds": args.seconds,
        "modes": [],
    }
    for mode in args.modes.split(","):
        report["modes"].append(runner(bench_mode(mode, args.broker, args.subscribers, rates,
                                                 args.seconds, args.grace)))
    report["smoke"] = args.smoke
    write_result(args.out, report, recorder)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
