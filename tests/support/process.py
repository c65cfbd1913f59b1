"""``aiotcp serve`` started as a user starts it: a child process, learnt from its log.

The server binds 127.0.0.1 port 0 and announces ``aiotcp listening on HOST:PORT``; a
thread reads its stderr into a list of lines as they come, so a test can wait for a log
line with a deadline and read the whole log after the exit. The apps in ``apps/`` are on
the child's PYTHONPATH (``--app fault_apps:slow``). Inherited ``AIOTCP_*`` variables are
dropped, so a setting in the developer's shell cannot change what a test sees.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Self

from .waiting import HANG_GUARD

APPS = Path(__file__).resolve().parent / "apps"
SRC = Path(__file__).resolve().parents[2] / "src"
SERVE = (sys.executable, "-m", "aiotcp", "serve")
LISTENING = re.compile(r"aiotcp listening on (\S+):(\d+)")
# What a process tells a test about a timeout or exit it was not expecting.
LOG_TAIL_LINES = 40


def child_env(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """This process's environment without ``AIOTCP_*``, the apps on PYTHONPATH, plus ``env``."""
    out = {k: v for k, v in os.environ.items() if not k.startswith("AIOTCP_")}
    paths = [str(APPS), str(SRC)]
    if out.get("PYTHONPATH"):
        paths.append(out["PYTHONPATH"])
    out["PYTHONPATH"] = os.pathsep.join(paths)
    out["PYTHONUNBUFFERED"] = "1"
    out.update(env or {})
    return out


def run_aiotcp(
    *args: str, env: Mapping[str, str] | None = None, timeout: float = HANG_GUARD
) -> subprocess.CompletedProcess[str]:
    """``python -m aiotcp ARGS`` run to its exit (bad input, ``--print-config``)."""
    return subprocess.run(
        [sys.executable, "-m", "aiotcp", *args],
        capture_output=True, text=True, timeout=timeout, env=child_env(env), check=False,
    )  # fmt: skip


# ``aiotcp`` with one library made unimportable, as if its extra were not installed.
WITHOUT = (
    "import sys\n"
    "sys.modules['{module}'] = None\n"
    "from aiotcp.cli import main\n"
    "raise SystemExit(main(sys.argv[1:]))\n"
)


def run_without(module: str, *args: str) -> subprocess.CompletedProcess[str]:
    """``aiotcp ARGS`` run to its exit with ``module`` unimportable."""
    return subprocess.run(
        [sys.executable, "-c", WITHOUT.format(module=module), *args],
        capture_output=True, text=True, timeout=HANG_GUARD, env=child_env(), check=False,
    )  # fmt: skip


class ServerProcess:
    """``python -m aiotcp serve --host 127.0.0.1 --port 0 [--loop LOOP] ARGS``, running.

    ``port`` is known when the constructor returns; it raises AssertionError (with the
    log) if the server exits or does not announce its address within ``HANG_GUARD``.
    With ``listening=False`` it returns at once (``port`` 0): a test of what happens
    before the listener, or of a server that must fail to start, calls
    :meth:`wait_listening` or :meth:`wait` itself.
    """

    def __init__(
        self,
        args: Sequence[str] = (),
        *,
        loop: str | None = None,
        preexec_fn: Callable[[], None] | None = None,
        env: Mapping[str, str] | None = None,
        listening: bool = True,
    ) -> None:
        loop_args = ["--loop", loop] if loop else []
        self.cmd = [*SERVE, "--host", "127.0.0.1", "--port", "0", *loop_args, *args]
        self.lines: list[str] = []
        self._cond = threading.Condition()
        self._stderr_closed = False
        self.proc = subprocess.Popen(
            self.cmd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=child_env(env),
            preexec_fn=preexec_fn,  # noqa: PLW1509 (only setrlimit, for the fd tests)
        )
        self._reader = threading.Thread(target=self._read_stderr, daemon=True)
        self._reader.start()
        self.host, self.port = "127.0.0.1", 0
        if listening:
            try:
                self.wait_listening()
            except AssertionError:
                self.kill()
                raise

    def wait_listening(self, timeout: float = HANG_GUARD) -> int:
        """Wait for ``aiotcp listening on HOST:PORT``; set and return ``port``."""
        m = LISTENING.search(self.wait_for_log(LISTENING.pattern, timeout))
        assert m is not None
        self.host, self.port = m.group(1), int(m.group(2))
        return self.port

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        for raw in self.proc.stderr:
            with self._cond:
                self.lines.append(raw.decode("utf-8", "replace").rstrip("\n"))
                self._cond.notify_all()
        with self._cond:
            self._stderr_closed = True
            self._cond.notify_all()

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def log(self) -> str:
        """Everything the server has written to stderr so far."""
        with self._cond:
            return "\n".join(self.lines)

    def _tail(self) -> str:
        return "\n".join(self.lines[-LOG_TAIL_LINES:])

    def wait_for_log(self, pattern: str, timeout: float = HANG_GUARD, start: int = 0) -> str:
        """The first log line from index ``start`` matching the regex ``pattern``.

        Raises AssertionError if none comes within ``timeout`` or stderr closes first.
        """
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._cond:
            i = start
            while True:
                while i < len(self.lines):
                    if rx.search(self.lines[i]):
                        return self.lines[i]
                    i += 1
                left = deadline - time.monotonic()
                if left <= 0 or self._stderr_closed:
                    why = "stderr closed" if self._stderr_closed else f"{timeout:g}s passed"
                    raise AssertionError(
                        f"no log line matching {pattern!r} ({why}); log:\n{self._tail()}"
                    )
                self._cond.wait(min(left, 0.1))

    def signal(self, sig: int = signal.SIGTERM) -> None:
        self.proc.send_signal(sig)

    def wait(self, timeout: float = HANG_GUARD) -> int:
        """The exit code; AssertionError if the process is still running after ``timeout``."""
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"server still running after {timeout:g}s; log:\n{self._tail()}"
            ) from None
        self._reader.join(HANG_GUARD)
        return code

    def stop(self, timeout: float = HANG_GUARD) -> int:
        """SIGTERM and the exit code; the whole log is then in ``log``."""
        if self.proc.poll() is None:
            self.signal(signal.SIGTERM)
        return self.wait(timeout)

    def kill(self) -> None:
        """SIGKILL if still running; reap it and close its pipe. Idempotent."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(HANG_GUARD)
        self._reader.join(HANG_GUARD)
        if self.proc.stderr is not None:
            self.proc.stderr.close()

    def alive(self) -> bool:
        return self.proc.poll() is None

    def rss_kib(self) -> int:
        """Resident set size in KiB, from /proc/PID/status (VmRSS)."""
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        raise AssertionError("no VmRSS in /proc status")

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.kill()


# The ``spawn_server`` fixture: ``spawn_server(args, preexec_fn=None, env=None)``.
SpawnServer = Callable[..., ServerProcess]


def pid_alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(") ", 1)[1][0] != "Z"
    except (FileNotFoundError, IndexError):
        return False
