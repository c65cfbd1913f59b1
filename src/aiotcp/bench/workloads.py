"""Compare workloads by name: ``c<connections>-f<in flight>-s<bytes>[-length][-d<seconds>]``,
``connect<N>[-d<seconds>]`` or ``hold<N>``.

A load workload is a closed-loop run (e.g. ``c100-f16-s64``: 100 connections, 16 messages in
flight on each, 64-byte lines; ``c100-f1-s16384-length``: 16 KiB messages in length framing,
a 4-byte big-endian length before each). ``hold<N>`` holds N idle connections and measures
the server's memory per connection (VmRSS after minus before, divided by N).
``connect<N>`` measures the connection rate: N client loops each connect, send one 64-byte
line, read the whole reply (verified byte for byte), close, and start again until the
duration ends; the figure is new connections per second (completed cycles / s), with the
latency of a whole cycle (the compiled ``native/connrate.c`` client; ``connect50-d1``: 50
loops for one second).

The payload ladder (:data:`LADDER`) runs one closed loop at several message sizes in both
framings against a few servers (``lineup.LADDER``): a server's cost per byte shows there,
where 64-byte messages show only its cost per message.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

#: The framings a compare workload can use.
WorkloadFraming = Literal["line", "length"]

#: The full run: about 17 minutes with every server, 3 runs each, on 2 cores (holding 10k
#: connections takes the thread and seed servers half a minute per run).
FULL: tuple[str, ...] = (
    "c100-f1-s64", "c100-f16-s64", "c1000-f16-s64", "c100-f16-s1024", "connect50", "hold10000",
)  # fmt: skip
#: ``--quick`` (under two minutes with the quick servers: 115 s on 2 cores, 24 s of it the
#: connection rate).
QUICK: tuple[str, ...] = ("c100-f1-s64-d1", "c100-f16-s64-d1", "connect50-d1", "hold1000")
#: The payload ladder: 100 connections, 1 in flight, 64 B to 60 KB, line and length framing
#: (published echo benchmarks use such a ladder: uvloop's vmbench 1-100 KiB). About 3
#: minutes with the ladder servers, 3 runs each.
LADDER_SIZES: tuple[int, ...] = (64, 1024, 16384, 60000)
LADDER: tuple[str, ...] = tuple(
    f"c100-f1-s{size}{suffix}" for suffix in ("", "-length") for size in LADDER_SIZES
)
#: ``--quick``'s ladder: one rung.
QUICK_LADDER: tuple[str, ...] = ("c100-f1-s16384-length-d1",)
#: Workloads whose ratios head the report (the first two load workloads if these are absent).
HEADLINE: tuple[str, ...] = ("c100-f1-s64", "c100-f16-s64")
_SECONDS = r"(?:-d(\d+(?:\.\d*)?|\.\d+))?"  # an optional -d<seconds>: 2, 0.5, .5
_LOAD = re.compile(rf"^c(\d+)-f(\d+)-s(\d+)(?:-(line|length))?{_SECONDS}$")
_HOLD = re.compile(r"^hold(\d+)$")
_CONNECT = re.compile(rf"^connect(\d+){_SECONDS}$")
#: Bytes of the one line each connection-rate cycle sends (the load workloads' 64).
CONNECT_SIZE = 64


@dataclass(frozen=True)
class Workload:
    """One workload: a closed-loop load run, a connection-rate run (``connect``: ``connections``
    client loops), or N held idle connections (``hold``)."""

    name: str
    kind: str  # "load" | "connect" | "hold"
    connections: int
    in_flight: int = 1
    size: int = 64
    duration: float = 1.5
    framing: WorkloadFraming = "line"

    @property
    def base(self) -> str:
        """The name without its ``-d`` suffix (``c100-f1-s64-d1`` -> ``c100-f1-s64``)."""
        return self.name.split("-d")[0]


def parse_workload(spec: str, default_duration: float) -> Workload:
    """Parse a workload name (see the module docstring). Raises ValueError on a bad name."""
    if m := _LOAD.match(spec):
        dur = float(m[5]) if m[5] else default_duration
        if int(m[1]) < 1 or int(m[2]) < 1:
            raise ValueError(f"bad workload {spec!r}: connections and in flight must be >= 1")
        if m[4] == "length" and int(m[3]) < 1:
            raise ValueError(f"bad workload {spec!r}: length-framed messages need >= 1 byte")
        framing: WorkloadFraming = "length" if m[4] == "length" else "line"
        return Workload(spec, "load", int(m[1]), int(m[2]), int(m[3]), dur, framing)
    if m := _HOLD.match(spec):
        return Workload(spec, "hold", int(m[1]))
    if m := _CONNECT.match(spec):
        if int(m[1]) < 1:
            raise ValueError(f"bad workload {spec!r}: connect<N> needs N >= 1 client loops")
        dur = float(m[2]) if m[2] else default_duration
        if dur <= 0:
            raise ValueError(f"bad workload {spec!r}: the duration must be > 0")
        return Workload(spec, "connect", int(m[1]), size=CONNECT_SIZE, duration=dur)
    raise ValueError(
        f"bad workload {spec!r}: use c<conns>-f<in flight>-s<bytes>[-length][-d<s>], "
        "connect<N>[-d<s>] or hold<N>"
    )
