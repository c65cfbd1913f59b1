"""Round trips of an open client while the server is out of fds and connects keep coming.

Each server runs on asyncio's loop with RLIMIT_NOFILE 64; 200 connects exhaust its fds
and wait in the backlog. asyncio's accept loop retries up to ``backlog`` accepts per
turn on EMFILE, so the accepts per turn (not the kernel backlog) decide how long every
open connection stalls. Servers:

  aiotcp    aiotcp serve --loop asyncio (it binds its own listeners: 100 accepts per turn,
            kernel backlog 4096)
  asyncio   a plain asyncio Protocol with loop.create_server(backlog=4096): asyncio's own
            accept loop, 4096 accept attempts per turn

    .venv/bin/python benchmarks/emfile_stall.py                   # both servers, ~20 s
    .venv/bin/python benchmarks/emfile_stall.py --src /old/src    # aiotcp from another tree
    .venv/bin/python benchmarks/emfile_stall.py --smoke --out /tmp/emfile.json
"""

from __future__ import annotations

import os
import re
import resource
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import IO, Any

from aiotcp.bench.scripts import parse, parser, write_result
from aiotcp.bench.stamp import Recorder

HERE = Path(__file__).resolve().parent
FD_LIMIT = 64
BACKLOG = 4096
SERVERS = {
    "aiotcp": ["-m", "aiotcp", "serve", "--port", "0", "--loop", "asyncio", "--no-access-log",
               "--block-threshold", "0", "--max-connections", "1000"],
    "asyncio": ["-m", "aiotcp.bench.baselines.asyncio_protocol", "--port", "0",
                "--backlog", str(BACKLOG)],
}  # fmt: skip
SMOKE = {"connections": 100, "settle": 0.3, "seconds": 0.5}


def limit() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (FD_LIMIT, FD_LIMIT))


def measure(name: str, src: str, connections: int, settle: float, seconds: float
            ) -> dict[str, Any]:
    """Exhaust server ``name``'s fds, then time one open client's round trips."""
    # --src replaces the aiotcp under test; the asyncio baseline always runs from this tree.
    env = dict(os.environ, PYTHONPATH=src) if src and name == "aiotcp" else dict(os.environ)
    # stderr to a file: the server's EMFILE log lines must never block it on a full pipe.
    with tempfile.TemporaryFile() as log:
        return _measure(name, env, log, connections, settle, seconds)


def _measure(name: str, env: dict[str, str], log: IO[bytes], connections: int, settle: float,
             seconds: float) -> dict[str, Any]:
    p = subprocess.Popen([sys.executable, *SERVERS[name]], stderr=log, env=env,
                         preexec_fn=limit)  # noqa: PLW1509 - this process has one thread
    held: list[socket.socket] = []
    try:
        port = 0
        deadline = time.monotonic() + 20
        while not port and p.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
            log.seek(0)
            if m := re.search(rb"listening on \S+:(\d+)", log.read()):
                port = int(m.group(1))
        if not port:
            raise SystemExit(f"emfile_stall: the {name} server did not start")
        probe = socket.create_connection(("127.0.0.1", port))
        f = probe.makefile("rb")
        for _ in range(connections):  # exhaust the server's fds; the rest wait in the backlog
            try:
                held.append(socket.create_connection(("127.0.0.1", port), timeout=2))
            except OSError:
                break
        time.sleep(settle)
        rtts: list[float] = []
        end = time.monotonic() + seconds
        i = 0
        while time.monotonic() < end:
            t0 = time.perf_counter()
            probe.sendall(b"p%d\n" % i)
            if not f.readline():
                raise SystemExit(f"emfile_stall: the {name} server closed the probe")
            rtts.append(time.perf_counter() - t0)
            i += 1
            time.sleep(0.01)
        probe.close()
    finally:
        for s in held:
            s.close()
        p.kill()
        p.wait()
    rtts.sort()
    return {"connects": len(held), "round_trips": len(rtts),
            "p50_ms": round(rtts[len(rtts) // 2] * 1e3, 2),
            "p99_ms": round(rtts[int(len(rtts) * 0.99)] * 1e3, 2),
            "max_ms": round(rtts[-1] * 1e3, 2)}  # fmt: skip


def main() -> int:
    p = parser(__doc__, str(HERE / "results" / "emfile_stall.json"))
    p.add_argument("--servers", default=",".join(SERVERS), help="comma-separated: aiotcp, asyncio")
    p.add_argument("--src", default="", help="an aiotcp src/ directory to run instead of this one")
    p.add_argument("--connections", type=int, default=200, help="connects after the probe's")
    p.add_argument("--settle", type=float, default=1.5, help="seconds before the round trips")
    p.add_argument("--seconds", type=float, default=6.0, help="seconds of round trips")
    args = parse(p, SMOKE)
    names = args.servers.split(",")
    if unknown := sorted(set(names) - set(SERVERS)):
        p.error(f"unknown server(s) {', '.join(unknown)}; choose from {', '.join(SERVERS)}")
    if args.src and not os.path.isdir(args.src):
        p.error(f"--src {args.src}: not a directory")
    recorder = Recorder(" ".join(sys.argv))
    results = {}
    for name in names:
        r = results[name] = measure(name, args.src, args.connections, args.settle, args.seconds)
        print(f"{name:8} round trips: {r['round_trips']}  p50 {r['p50_ms']:.2f} ms  "
              f"p99 {r['p99_ms']:.2f} ms  max {r['max_ms']:.2f} ms", flush=True)
    settings = {"fd_limit": FD_LIMIT, "connections": args.connections, "seconds": args.seconds,
                "src": args.src, "smoke": args.smoke}
    write_result(args.out, {"settings": settings, "servers": results}, recorder)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
