"""A client pipelining a million lines into an async handler that sleeps 10 ms.

Measures what the bounded queued path promises: the server's RSS stays near its start
(reading pauses at --max-pipeline), and other clients' round trips stay short meanwhile.
Then one connection pipelining 1000 messages with --handler-concurrency 16: all replies,
in order, and how long they took.

    .venv/bin/python benchmarks/pipeline_flood.py          # about 30 s, loopback only
    .venv/bin/python benchmarks/pipeline_flood.py --smoke --out /tmp/flood.json   # seconds

Writes one JSON result (--out) and prints it. The handlers are in benchmarks/flood_apps.py.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from aiotcp.bench.scripts import parse, parser, write_result
from aiotcp.bench.stamp import Recorder

HERE = Path(__file__).resolve().parent
LINES = 1_000_000
PROBE_SECONDS = 10.0
MESSAGES = 1000
CONCURRENCY = 16
SETTLE = 1.0
HANDLER_SECONDS = 0.01  # flood_apps.sleepy
ACK = "已收到: "
SMOKE = {"lines": 20_000, "probe_seconds": 0.5, "messages": 100, "settle": 0.2}


def start(*args: str) -> tuple[subprocess.Popen[str], int]:
    path = os.pathsep.join(p for p in (str(HERE), os.environ.get("PYTHONPATH", "")) if p)
    env = dict(os.environ, PYTHONPATH=path)
    proc = subprocess.Popen(
        [sys.executable, "-m", "aiotcp", "serve", "--port", "0", "--no-access-log", *args],
        stderr=subprocess.PIPE, text=True, env=env,
    )
    assert proc.stderr is not None
    for line in proc.stderr:
        m = re.search(r"listening on \S+:(\d+)", line)
        if m:
            return proc, int(m.group(1))
    raise RuntimeError("server did not start")


def rss_kib(pid: int) -> int:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS"):
            return int(line.split()[1])
    return 0


def flood(port: int, stop: threading.Event, lines: int) -> int:
    """Write ``lines`` lines as fast as the server lets us; never read. Bytes sent."""
    sock = socket.create_connection(("127.0.0.1", port))
    sock.settimeout(0.5)
    payload = b"".join(b"%d\n" % i for i in range(lines))
    sent = 0
    while sent < len(payload) and not stop.is_set():
        try:
            sent += sock.send(payload[sent : sent + 65536])
        except TimeoutError:
            continue  # the server stopped reading from us: keep trying until told to stop
    sock.close()
    return sent


async def probe(port: int, seconds: float) -> list[float]:
    """Round trips of another client, one at a time, for ``seconds``."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    times: list[float] = []
    end = time.monotonic() + seconds
    i = 0
    while time.monotonic() < end:
        t0 = time.perf_counter()
        writer.write(f"p{i}\n".encode())
        line = await reader.readline()
        times.append(time.perf_counter() - t0)
        assert line.decode() == f"{ACK}p{i}\n"
        i += 1
    writer.close()
    return times


async def flood_run(lines: int, probe_seconds: float, settle: float) -> dict[str, object]:
    proc, port = start("--app", "flood_apps:sleepy", "--handler-concurrency", "1")
    try:
        await asyncio.sleep(settle / 2)
        before = rss_kib(proc.pid)
        stop = threading.Event()
        flooder = asyncio.create_task(asyncio.to_thread(flood, port, stop, lines))
        await asyncio.sleep(settle)
        times = await probe(port, probe_seconds)
        peak = rss_kib(proc.pid)
        stop.set()
        sent = await flooder
    finally:
        proc.terminate()
        proc.wait(30)
    times.sort()
    return {
        "flood_bytes_sent": sent,
        "flood_lines": lines,
        "flood_bytes_total": sum(len(b"%d\n" % i) for i in range(lines)),
        "rss_start_kib": before,
        "rss_during_kib": peak,
        "rss_growth_mib": round((peak - before) / 1024, 1),
        "probe_round_trips": len(times),
        "probe_p50_ms": round(times[len(times) // 2] * 1000, 2),
        "probe_p99_ms": round(times[int(len(times) * 0.99)] * 1000, 2),
        "probe_max_ms": round(times[-1] * 1000, 2),
    }


async def concurrency_run(messages: int) -> dict[str, object]:
    proc, port = start("--app", "flood_apps:sleepy", "--handler-concurrency", str(CONCURRENCY))
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        t0 = time.perf_counter()
        writer.write(b"".join(b"%d\n" % i for i in range(messages)))
        replies = [await reader.readline() for _ in range(messages)]
        elapsed = time.perf_counter() - t0
        writer.close()
    finally:
        proc.terminate()
        proc.wait(30)
    in_order = replies == [f"{ACK}{i}\n".encode() for i in range(messages)]
    return {"messages": messages, "replies": len(replies), "in_order": in_order,
            "seconds": round(elapsed, 3),
            "sequential_would_take_s": round(messages * HANDLER_SECONDS, 3)}


def main() -> int:
    p = parser(__doc__, str(HERE / "results" / "pipeline_flood.json"))
    p.add_argument("--lines", type=int, default=LINES, help="lines the flooding client writes")
    p.add_argument("--probe-seconds", type=float, default=PROBE_SECONDS,
                   help="seconds of the other client's round trips during the flood")
    p.add_argument("--messages", type=int, default=MESSAGES,
                   help=f"messages pipelined on one connection, --handler-concurrency {CONCURRENCY}")
    p.add_argument("--settle", type=float, default=SETTLE,
                   help="seconds of flood before the probe starts")
    args = parse(p, SMOKE)
    if args.lines < 1 or args.messages < 1:
        p.error("--lines and --messages must be >= 1")
    recorder = Recorder(" ".join(sys.argv))

    async def run() -> dict[str, object]:
        return {"flood": await flood_run(args.lines, args.probe_seconds, args.settle),
                f"concurrency_{CONCURRENCY}": await concurrency_run(args.messages)}

    out = asyncio.run(run())
    print(json.dumps(out, indent=2))
    write_result(args.out, {"settings": {"smoke": args.smoke}, **out}, recorder)
    return 0


if __name__ == "__main__":
    sys.exit(main())
