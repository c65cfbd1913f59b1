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
from typing import IO, Self

import pytest

from aiotcp.core import ENV_NO_EXTENSIONS

from .waiting import HANG_GUARD

APPS = Path(__file__).resolve().parent / "apps"
SRC = Path(__file__).resolve().parents[2] / "src"
SERVE = (sys.executable, "-m", "aiotcp", "serve")
# The ``aiotcp`` console script beside this Python: unlike ``python -m``, it does not put
# the current directory on sys.path by itself.
CONSOLE_SERVE = (str(Path(sys.executable).with_name("aiotcp")), "serve")
LISTENING = re.compile(r"aiotcp listening on (\S+):(\d+)")
# What a process tells a test about a timeout or exit it was not expecting.
LOG_TAIL_LINES = 40


def child_env(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """This process's environment without ``AIOTCP_*`` settings (the core chosen,
    ``AIOTCP_NO_EXTENSIONS``, is kept), the apps on PYTHONPATH, plus ``env``."""
    out = {k: v for k, v in os.environ.items()
           if not k.startswith("AIOTCP_") or k == ENV_NO_EXTENSIONS}
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


class PipeLines:
    """The lines of a child's pipe, read by a thread as they come, waited for with a
    deadline. ``what`` names them in a failure (``log line``, ``output``)."""

    def __init__(self, pipe: IO[bytes], what: str) -> None:
        self.lines: list[str] = []
        self.what = what
        self.closed = False
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._read, args=(pipe,), daemon=True)
        self._thread.start()

    def _read(self, pipe: IO[bytes]) -> None:
        for raw in pipe:
            with self._cond:
                self.lines.append(raw.decode("utf-8", "replace").rstrip("\n"))
                self._cond.notify_all()
        with self._cond:
            self.closed = True
            self._cond.notify_all()

    def text(self) -> str:
        with self._cond:
            return "\n".join(self.lines)

    def tail(self) -> str:
        return "\n".join(self.lines[-LOG_TAIL_LINES:])

    def wait_for(self, pattern: str, timeout: float = HANG_GUARD, start: int = 0) -> str:
        """The first line from index ``start`` matching the regex ``pattern``.

        Raises AssertionError if none comes within ``timeout`` or the pipe closes first.
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
                if left <= 0 or self.closed:
                    why = "pipe closed" if self.closed else f"{timeout:g}s passed"
                    raise AssertionError(
                        f"no {self.what} matching {pattern!r} ({why}); so far:\n{self.tail()}"
                    )
                self._cond.wait(min(left, 0.1))

    def join(self, timeout: float = HANG_GUARD) -> None:
        self._thread.join(timeout)


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
    :meth:`wait_listening` or :meth:`wait` itself. ``serve`` is the command before the
    flags (:data:`CONSOLE_SERVE` runs the installed ``aiotcp`` script, as a user does);
    ``cwd`` the directory it starts in.
    """

    def __init__(
        self,
        args: Sequence[str] = (),
        *,
        loop: str | None = None,
        preexec_fn: Callable[[], None] | None = None,
        env: Mapping[str, str] | None = None,
        listening: bool = True,
        pass_fds: Sequence[int] = (),
        prefix: Sequence[str] = (),
        serve: Sequence[str] = SERVE,
        cwd: Path | None = None,
    ) -> None:
        loop_args = ["--loop", loop] if loop else []
        # ``prefix``: a program that execs the server (e.g. systemd-socket-activate).
        self.cmd = [*prefix, *serve, "--host", "127.0.0.1", "--port", "0", *loop_args, *args]
        self.proc = subprocess.Popen(
            self.cmd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=child_env(env),
            cwd=cwd,
            preexec_fn=preexec_fn,  # noqa: PLW1509 (only setrlimit, for the fd tests)
            pass_fds=pass_fds,
        )
        assert self.proc.stderr is not None
        self._stderr = PipeLines(self.proc.stderr, "log line")
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

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def lines(self) -> list[str]:
        """The server's stderr lines so far (the list grows as they come)."""
        return self._stderr.lines

    @property
    def log(self) -> str:
        """Everything the server has written to stderr so far."""
        return self._stderr.text()

    def wait_for_log(self, pattern: str, timeout: float = HANG_GUARD, start: int = 0) -> str:
        """The first log line from index ``start`` matching the regex ``pattern``.

        Raises AssertionError if none comes within ``timeout`` or stderr closes first.
        """
        return self._stderr.wait_for(pattern, timeout, start)

    def signal(self, sig: int = signal.SIGTERM) -> None:
        self.proc.send_signal(sig)

    def wait(self, timeout: float = HANG_GUARD) -> int:
        """The exit code; AssertionError if the process is still running after ``timeout``."""
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"server still running after {timeout:g}s; log:\n{self._stderr.tail()}"
            ) from None
        self._stderr.join()
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
        self._stderr.join()
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


class ClientProcess:
    """``python -m aiotcp client ARGS`` with its stdin held open by the test.

    ``stdin`` is a pipe by default (:meth:`send` writes to it, :meth:`end_input` closes
    it) or a descriptor the test owns (a pty's terminal end). A thread collects stdout
    lines so that a test can wait for a reply with a deadline; stderr is read at the exit.
    """

    def __init__(self, args: Sequence[str], stdin: int | None = None) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "aiotcp", "client", *args],
            stdin=subprocess.PIPE if stdin is None else stdin,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=child_env(),
        )
        assert self.proc.stdout is not None
        self._stdout = PipeLines(self.proc.stdout, "output")
        self.stderr = ""

    @property
    def lines(self) -> list[str]:
        """The client's stdout lines so far."""
        return self._stdout.lines

    def send(self, text: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(text.encode())
        self.proc.stdin.flush()

    def end_input(self) -> None:
        if self.proc.stdin is not None and not self.proc.stdin.closed:
            self.proc.stdin.close()

    def wait_for_output(self, pattern: str, timeout: float = HANG_GUARD) -> str:
        """The first stdout line matching ``pattern``; AssertionError if none comes."""
        return self._stdout.wait_for(pattern, timeout)

    def wait(self, timeout: float = HANG_GUARD) -> int:
        """The exit code (stdin left as it is); AssertionError if still running."""
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise AssertionError(f"client still running after {timeout:g}s: {self.lines}") from None
        self._stdout.join()
        assert self.proc.stderr is not None
        self.stderr = self.proc.stderr.read().decode("utf-8", "replace")
        return code

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(HANG_GUARD)
        self.end_input()
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()


# The ``spawn_server`` fixture: ``spawn_server(args, preexec_fn=None, env=None, ...)``.
SpawnServer = Callable[..., ServerProcess]


def pid_alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(") ", 1)[1][0] != "Z"
    except (FileNotFoundError, IndexError):
        return False


def selected_params(request: pytest.FixtureRequest, test: str, param: str) -> list[str]:
    """The values of ``param`` of the ``test`` rows this session runs (sorted): what a
    module fixture starts side by side before the first of them."""
    return sorted({
        str(item.callspec.params[param]) for item in request.session.items
        if getattr(item, "originalname", "") == test and hasattr(item, "callspec")
    })  # fmt: skip
