"""Compare workloads by name: ``c<connections>-f<in flight>-s<bytes>[-d<seconds>]`` or ``hold<N>``.

A load workload is a closed-loop run (e.g. ``c100-f16-s64``: 100 connections, 16 messages in
flight on each, 64-byte lines). ``hold<N>`` holds N idle connections and measures the
server's memory per connection (VmRSS after minus before, divided by N).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

#: The full run: about 15 minutes with every server, 3 runs each, on 2 cores (holding 10k
#: connections takes the thread and seed servers half a minute per run).
FULL: tuple[str, ...] = (
    "c100-f1-s64", "c100-f16-s64", "c1000-f16-s64", "c100-f16-s1024", "hold10000",
)  # fmt: skip
#: ``--quick`` (under two minutes with the quick servers).
QUICK: tuple[str, ...] = ("c100-f1-s64-d1", "c100-f16-s64-d1", "hold1000")
#: Workloads whose ratios head the report (the first two load workloads if these are absent).
HEADLINE: tuple[str, ...] = ("c100-f1-s64", "c100-f16-s64")
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
    duration: float = 1.5

    @property
    def base(self) -> str:
        """The name without its ``-d`` suffix (``c100-f1-s64-d1`` -> ``c100-f1-s64``)."""
        return self.name.split("-d")[0]


def parse_workload(spec: str, default_duration: float) -> Workload:
    """Parse a workload name (see the module docstring). Raises ValueError on a bad name."""
    if m := _LOAD.match(spec):
        dur = float(m[4]) if m[4] else default_duration
        if int(m[1]) < 1 or int(m[2]) < 1:
            raise ValueError(f"bad workload {spec!r}: connections and in flight must be >= 1")
        return Workload(spec, "load", int(m[1]), int(m[2]), int(m[3]), dur)
    if m := _HOLD.match(spec):
        return Workload(spec, "hold", int(m[1]))
    raise ValueError(f"bad workload {spec!r}: use c<conns>-f<in flight>-s<bytes>[-d<s>] or hold<N>")
