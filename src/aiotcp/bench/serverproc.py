"""Start a server under test as a child process, learn its port, read its CPU and memory.

A server is any command that prints ``listening on HOST:PORT`` to stderr once bound (the
baselines and ``aiotcp serve`` both do). Its stderr goes to a temporary file (so a chatty
server can never block on a full pipe); stdout goes to /dev/null unless asked otherwise.
CPU and memory come from /proc and include every descendant process (pre-fork servers).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from typing import IO

from aiotcp.bench.stamp import children

LISTENING = re.compile(r"listening on (\S+):(\d+)")


class ServerStartError(RuntimeError):
    """The server exited or did not announce ``listening on HOST:PORT`` in time."""


def baseline_argv(name: str) -> list[str]:
    """Command line of baseline ``name`` on a free loopback port."""
    return [
        sys.executable,
        "-m",
        f"aiotcp.bench.baselines.{name}",
        "--host",
        "127.0.0.1",
        "--port",
        "0",
    ]


def aiotcp_argv(extra: list[str] | None = None) -> list[str]:
    """Command line of ``aiotcp serve`` on a free loopback port, quiet except the ready line."""
    return [
        sys.executable, "-m", "aiotcp", "serve", "--host", "127.0.0.1", "--port", "0",
        "--log-level", "info", "--no-access-log", *(extra or []),
    ]  # fmt: skip


def descendants(pid: int) -> list[int]:
    """``pid`` and all its descendants (via /proc/<pid>/task/*/children)."""
    out = [pid]
    i = 0
    while i < len(out):
        out.extend(children(out[i]))
        i += 1
    return out


def _status_kib(pid: int, key: str) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _cpu_seconds(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def rss_kib(pid: int) -> int:
    """Resident memory (VmRSS) of the one process ``pid``, KiB (0 if it is gone)."""
    return _status_kib(pid, "VmRSS")


def tree_rss_kib(pid: int) -> int:
    """Resident memory (VmRSS) of ``pid`` and its descendants, KiB (0 if it is gone)."""
    return sum(rss_kib(p) for p in descendants(pid))


def open_fds(pid: int) -> int:
    """Open file descriptors of the one process ``pid`` (0 if it is gone)."""
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return 0


def tree_open_fds(pid: int) -> int:
    """Open file descriptors of ``pid`` and its descendants (accepted sockets included)."""
    return sum(open_fds(p) for p in descendants(pid))


@dataclass
class ServerProcess:
    """A running server under test; use ``start_server`` to make one."""

    proc: subprocess.Popen[bytes]
    host: str
    port: int
    stderr_path: str
    _stderr: IO[bytes] = field(repr=False)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def rss_kib(self) -> int:
        """Current resident memory (VmRSS) of the server and its descendants, KiB."""
        return tree_rss_kib(self.pid)

    def peak_rss_kib(self) -> int:
        """Peak resident memory (VmHWM) summed over the server and its descendants, KiB."""
        return sum(_status_kib(p, "VmHWM") for p in descendants(self.pid))

    def cpu_seconds(self) -> float:
        """User + system CPU seconds used so far by the server and its live descendants."""
        return sum(_cpu_seconds(p) for p in descendants(self.pid))

    def open_fds(self) -> int:
        """Open file descriptors of the server and its descendants (accepted sockets included)."""
        return tree_open_fds(self.pid)

    def stderr_text(self) -> str:
        """Everything the server wrote to stderr so far."""
        with open(self.stderr_path, "rb") as f:
            return f.read().decode(errors="replace")

    def stop(self, timeout: float = 10.0) -> int:
        """SIGTERM, wait up to ``timeout`` s, then SIGKILL; return the exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._stderr.close()
        os.unlink(self.stderr_path)
        return self.proc.returncode

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_server(
    argv: list[str], timeout: float = 20.0, cpu: int | None = None, stdout_devnull: bool = True
) -> ServerProcess:
    """Start ``argv``, wait for its ready line, return it. Pins it to CPU ``cpu`` if given.

    Raises ServerStartError (with the server's stderr) if it exits or stays silent.
    """
    fd, path = tempfile.mkstemp(prefix="aiotcp-server-", suffix=".err")
    err = os.fdopen(fd, "wb")
    env = dict(os.environ)
    src = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env["PYTHONPATH"] = src + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.setdefault("PYTHONUNBUFFERED", "0")
    proc = subprocess.Popen(
        argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL if stdout_devnull else None,
        stderr=err, env=env, start_new_session=True,
    )  # fmt: skip
    if cpu is not None:
        try:
            os.sched_setaffinity(proc.pid, {cpu})
        except OSError:
            pass
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with open(path, "rb") as f:
            m = LISTENING.search(f.read().decode(errors="replace"))
        if m:
            return ServerProcess(proc, m[1], int(m[2]), path, err)
        if proc.poll() is not None:
            break
        time.sleep(0.02)
    text = open(path, "rb").read().decode(errors="replace")
    proc.kill()
    proc.wait()
    err.close()
    os.unlink(path)
    raise ServerStartError(
        f"{' '.join(argv)} did not start (exit {proc.returncode}): {text[-2000:]}"
    )
