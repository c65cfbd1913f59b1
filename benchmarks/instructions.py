"""Instructions per read of each connection kind, counted by callgrind (deterministic).

Wall-clock figures on a shared 2-core machine drift by tens of percent; an instruction
count does not: the same code, input and interpreter give the same count whatever else
the machine does. This drives one connection of each kind through N reads of a chunk of
L lines over a transport that discards what it is given, under
``valgrind --tool=callgrind``, once with N reads and once with none, and reports
(count(N) - count(0)) / N: the Python and C work of one read, start-up excluded. For the
queued kinds each read is followed by the loop turns that answer it (included).

    .venv/bin/python benchmarks/instructions.py                    # every kind, 1 and 16 lines
    .venv/bin/python benchmarks/instructions.py --kinds inline --lines 16 --reads 20000
    .venv/bin/python benchmarks/instructions.py --smoke --out /tmp/instructions.json  # seconds

Needs valgrind (Debian: apt-get install valgrind). Writes --out (JSON) and prints the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from aiotcp.bench.scripts import parse, parser, write_result
from aiotcp.bench.stamp import Recorder

KINDS = ("prefix", "inline", "batch", "sequential", "async-batch")
COLLECTED = re.compile(r"Collected\s*:\s*(\d+)")
HERE = Path(__file__).resolve().parent
# Smoke: every kind driven for real but not counted (callgrind's start-up alone takes
# tens of seconds), so a change to the connection API still fails it.
SMOKE = {"lines": "16", "reads": 10, "counter": "none"}


class NullTransport:
    """Takes writes and forgets them; never pauses, never closes."""

    def write(self, data: bytes) -> None:
        pass

    def get_write_buffer_size(self) -> int:
        return 0

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        pass

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 50000) if name == "peername" else default

    def is_closing(self) -> bool:
        return False

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


def handler_for(kind: str) -> Any:
    import aiotcp

    prefix = "已收到: "

    def handle(message: Any, conn: Any) -> Any:
        return prefix + message

    async def ahandle(message: Any, conn: Any) -> Any:
        return prefix + message

    class Batch:
        def __call__(self, message: Any, conn: Any) -> Any:
            return prefix + message

        def batch(self, messages: list[Any], conn: Any) -> list[Any]:
            return [prefix + m for m in messages]

    class AsyncBatch(Batch):
        async def batch(self, messages: list[Any], conn: Any) -> list[Any]:  # type: ignore[override]
            return [prefix + m for m in messages]

    return {
        "prefix": aiotcp.Ack(),
        "inline": handle,
        "batch": Batch(),
        "sequential": ahandle,
        "async-batch": AsyncBatch(),
    }[kind]


def drive(kind: str, reads: int, lines: int) -> None:
    """The measured program: ``reads`` reads of ``lines`` 64-byte lines on one connection."""
    from aiotcp.config import Config
    from aiotcp.server import Server

    chunk = (b"m" * 63 + b"\n") * lines

    async def main() -> None:
        server = Server(handler_for(kind), Config(access_log=False, port=0))
        assert server.kind == kind, server.kind
        await server.start()
        try:
            conn = server.connection_class()
            conn.connection_made(NullTransport())  # type: ignore[arg-type]
            queued = kind in ("sequential", "async-batch")
            data_received = conn.data_received
            for _ in range(reads):
                data_received(chunk)
                if queued:
                    while conn.busy:  # the loop turns that answer it
                        await asyncio.sleep(0)
            conn.connection_lost(None)
        finally:
            await server.shutdown()

    asyncio.run(main())


def count(kind: str, reads: int, lines: int) -> int:
    """Instructions of the whole program with ``reads`` reads, from callgrind."""
    cmd = [
        "valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null",
        sys.executable, __file__, "--drive", kind, "--reads", str(reads), "--lines", str(lines),
    ]
    env = dict(os.environ, PYTHONHASHSEED="0")
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    match = COLLECTED.search(proc.stderr)
    if proc.returncode != 0 or match is None:
        raise SystemExit(f"callgrind run failed ({' '.join(cmd)}):\n{proc.stderr[-2000:]}")
    return int(match.group(1))


def drive_only(kind: str, reads: int, lines: int) -> None:
    """Run the measured program without callgrind (``--counter none``)."""
    cmd = [sys.executable, __file__, "--drive", kind, "--reads", str(reads), "--lines", str(lines)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"driving {kind} failed ({' '.join(cmd)}):\n{proc.stderr[-2000:]}")


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__, str(HERE / "results" / "instructions.json"))
    p.add_argument("--kinds", default=",".join(KINDS), help="comma-separated connection kinds")
    p.add_argument("--lines", default="1,16", help="lines per read, comma-separated")
    p.add_argument("--reads", type=int, default=5000, help="reads per measured run")
    p.add_argument("--json", action="store_true", help="print the figures as JSON")
    p.add_argument("--counter", choices=("callgrind", "none"), default="callgrind",
                   help="none: drive each kind without counting (figures null)")
    p.add_argument("--drive", help=argparse.SUPPRESS)  # the program callgrind runs
    args = parse(p, SMOKE, argv)
    if args.drive:
        drive(args.drive, args.reads, int(args.lines))
        return 0
    kinds = [k for k in args.kinds.split(",") if k]
    unknown = sorted(set(kinds) - set(KINDS))
    if unknown:
        p.error(f"unknown kind(s): {', '.join(unknown)} (choose from {', '.join(KINDS)})")
    if args.reads < 1:
        p.error("--reads must be >= 1")
    if args.counter == "callgrind" and shutil.which("valgrind") is None:
        print(f"{p.prog}: valgrind is not installed (Debian: apt-get install valgrind)",
              file=sys.stderr)
        return 2
    recorder = Recorder(" ".join(sys.argv))
    figures: dict[str, dict[str, int | None]] = {}
    for kind in kinds:
        for lines in (int(n) for n in args.lines.split(",")):
            if args.counter == "none":
                drive_only(kind, args.reads, lines)
                figures.setdefault(kind, {})[f"{lines}-line"] = None
                continue
            base = count(kind, 0, lines)
            total = count(kind, args.reads, lines)
            per_read = (total - base) // args.reads
            figures.setdefault(kind, {})[f"{lines}-line"] = per_read
            if not args.json:
                print(f"{kind:12} {lines:3} line(s)/read  {per_read:9,} instructions per read")
    if args.json:
        print(json.dumps(figures, indent=2))
    settings = {"reads": args.reads, "counter": args.counter, "smoke": args.smoke}
    write_result(args.out, {"settings": settings, "instructions_per_read": figures}, recorder)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
