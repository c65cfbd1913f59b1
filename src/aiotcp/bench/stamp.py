"""Where a benchmark figure came from: the commit, the machine, and how busy it was.

Every result file (``aiotcp compare``'s results.json and each ``benchmarks/`` script's
JSON) carries a stamp, and the README prints it next to each table, so a reader can tell a
stale figure from a current one and a quiet machine from a contended one:

* ``commit``: ``git rev-parse HEAD`` of the source tree that ran, ``dirty`` when it had
  uncommitted changes outside ``benchmarks/results/`` (``None`` outside a git checkout);
* ``machine``: CPU model, usable cores, kernel, Python, uvloop and OpenSSL versions, and
  aiotcp's core (``compiled`` or ``pure``: ``aiotcp.core.CORE``);
* ``other_cpu_pct``: what processes other than this run's took during it, in % of one
  core: the machine's process time (/proc/stat) minus this process's and its
  descendants' (servers, clients, load engines, reaped or alive) over the run's wall time.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import ssl
import subprocess
import time
from pathlib import Path
from typing import Any

#: The source tree the stamp's commit is read from (``src/aiotcp/bench/`` -> the checkout).
ROOT = Path(__file__).resolve().parents[3]
#: Where result files are written, relative to ROOT (changes there do not make a tree dirty).
RESULTS_DIR = "benchmarks/results"


def machine_busy_seconds() -> float:
    """CPU seconds all cores spent in processes (user, nice, system, steal) since boot.

    Busy minus the run's own CPU over a run is what other processes (and the hypervisor)
    took: a run where that is high measured a contended machine. Interrupt and softirq
    time is left out: the kernel accounts it apart from any process, and on loopback most
    of it is the run's own traffic.
    """
    try:
        with open("/proc/stat") as f:
            ticks = [int(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return 0.0
    user, nice, system, steal = ticks[0], ticks[1], ticks[2], ticks[7] if len(ticks) > 7 else 0
    return (user + nice + system + steal) / os.sysconf("SC_CLK_TCK")


def children(pid: int) -> list[int]:
    """The child pids of ``pid`` (every thread's, from /proc); [] if it is gone."""
    out: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                out.extend(int(c) for c in f.read().split())
        except OSError:
            pass
    return out


def _tree_cpu_seconds(pid: int) -> float:
    """utime + stime + cutime + cstime (reaped children included) of ``pid``."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return sum(int(x) for x in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def own_cpu_seconds() -> float:
    """CPU seconds of this process and every descendant, alive or already reaped."""
    total, todo = 0.0, [os.getpid()]
    while todo:
        pid = todo.pop()
        total += _tree_cpu_seconds(pid)
        todo.extend(children(pid))
    return total


def commit(root: Path = ROOT) -> dict[str, Any]:
    """``{"sha": HEAD, "dirty": bool}`` of the checkout at ``root``; ``sha`` None outside git."""

    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(
                ["git", "-C", str(root), *args], capture_output=True, text=True, timeout=10,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired):
            return None
        return out.stdout.strip() if out.returncode == 0 else None

    sha = git("rev-parse", "HEAD")
    # The results themselves are left out: `make figures` rewrites them as it goes, and a
    # later script of the same run must not call the tree that ran it dirty.
    status = git("status", "--porcelain", "--untracked-files=no", "--", ".",
                 f":(exclude){RESULTS_DIR}") if sha else None  # fmt: skip
    return {"sha": sha, "dirty": bool(status)}


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (the machine type where it has none)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith(("model name", "Model", "cpu model")):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.machine() or "unknown"


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def machine() -> dict[str, Any]:
    """What ran the benchmark: CPU, cores, kernel, Python, uvloop, OpenSSL, aiotcp's core."""
    from aiotcp.core import CORE

    return {
        "cpu": cpu_model(),
        "cores": len(os.sched_getaffinity(0)),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "uvloop": _version("uvloop"),
        "openssl": ssl.OPENSSL_VERSION,
        "aiotcp_core": CORE,
    }


class Recorder:
    """Started when made; :meth:`stamp` describes the run from then until the call."""

    def __init__(self, command: str = "") -> None:
        self.command = command
        self.started = time.time()
        self._wall0 = time.monotonic()
        self._busy0 = machine_busy_seconds()
        self._own0 = own_cpu_seconds()

    def stamp(self) -> dict[str, Any]:
        """The stamp of the run so far (see the module docstring)."""
        wall = time.monotonic() - self._wall0
        other = machine_busy_seconds() - self._busy0 - (own_cpu_seconds() - self._own0)
        return {
            "command": self.command,
            "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.started)),
            "seconds": round(wall, 1),
            "commit": commit(),
            "machine": machine(),
            "other_cpu_pct": round(max(0.0, 100.0 * other / wall), 1) if wall > 0 else 0.0,
        }


def stamp_line(stamp: dict[str, Any] | None, when: str = "") -> str:
    """One line for the README under a table: where its figures came from (``when``: the
    date a result file without a stamp gives)."""
    if not stamp:
        date = f"measured {when[:10]}; " if when else ""
        return (f"*Stamp: none ({date}this result file predates stamps: commit, machine and "
                "load not recorded; `make figures` regenerates it).*")  # fmt: skip
    c, m = stamp["commit"], stamp["machine"]
    sha = (c["sha"] or "unknown")[:10] + (" (dirty)" if c.get("dirty") else "")
    return (
        f"*Stamp: commit {sha}, {stamp['date'][:10]}; {m['cpu']}, {m['cores']} cores, "
        f"Linux {m['kernel']}, Python {m['python']}, uvloop {m['uvloop'] or 'absent'}, "
        f"{m['openssl']}, {m['aiotcp_core']} core; other processes took "
        f"{stamp['other_cpu_pct']:.0f}% of a core during the run.*"
    )
