"""Fault-suite support: run ``aiotcp serve`` as a real process and talk to it over loopback.

Test modules import ``loop_fixture`` and ``spawn_server_fixture`` to get the fixtures
``loop`` (each test runs on asyncio and on uvloop) and ``spawn_server``.

The server's stderr is read by a thread into a list of lines, so a test can wait for a
log line with a deadline (never sleep and hope) and read the whole log after exit.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

TESTS_DIR = Path(__file__).resolve().parent
REPO = TESTS_DIR.parent
PYTHON = sys.executable
LISTENING = re.compile(r"listening on (\S+):(\d+)")
ACK = "已收到: "


def wait_until(predicate: Callable[[], Any], timeout: float, interval: float = 0.02) -> Any:
    """Poll ``predicate`` until it returns something truthy; raise AssertionError at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(interval)


class ServerProcess:
    """``python -m aiotcp serve --host 127.0.0.1 --port 0 --loop LOOP ARGS`` as a child process."""

    def __init__(
        self,
        loop: str,
        args: Sequence[str] = (),
        preexec_fn: Callable[[], None] | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        full_env = dict(os.environ)
        paths = [str(TESTS_DIR), str(REPO / "src")]
        if full_env.get("PYTHONPATH"):
            paths.append(full_env["PYTHONPATH"])
        full_env["PYTHONPATH"] = os.pathsep.join(paths)
        full_env["PYTHONUNBUFFERED"] = "1"
        full_env.update(env or {})
        cmd = [PYTHON, "-m", "aiotcp", "serve", "--host", "127.0.0.1", "--port", "0",
               "--loop", loop, *args]
        self.cmd = cmd
        self.lines: list[str] = []
        self._cond = threading.Condition()
        self.proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=full_env,
            preexec_fn=preexec_fn,  # noqa: PLW1509 (only setrlimit, for the fd tests)
        )
        self._reader = threading.Thread(target=self._read_stderr, daemon=True)
        self._reader.start()
        self.port = self._await_port()

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        for raw in self.proc.stderr:
            with self._cond:
                self.lines.append(raw.decode("utf-8", "replace").rstrip("\n"))
                self._cond.notify_all()
        with self._cond:
            self.lines.append("")  # sentinel: stderr closed
            self._cond.notify_all()

    def _await_port(self, timeout: float = 15.0) -> int:
        line = self.wait_for_log(LISTENING.pattern, timeout)
        m = LISTENING.search(line)
        assert m is not None
        return int(m.group(2))

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def log(self) -> str:
        with self._cond:
            return "\n".join(self.lines)

    def wait_for_log(self, pattern: str, timeout: float = 10.0, start: int = 0) -> str:
        """The first log line (from index ``start``) matching ``pattern``; AssertionError if none."""
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
                if left <= 0 or (self.proc.poll() is not None and self._stderr_done()):
                    raise AssertionError(
                        f"no log line matching {pattern!r} within {timeout}s; log:\n"
                        + "\n".join(self.lines[-40:])
                    )
                self._cond.wait(min(left, 0.1))

    def _stderr_done(self) -> bool:
        return bool(self.lines) and self.lines[-1] == "" and not self._reader.is_alive()

    def signal(self, sig: int = signal.SIGTERM) -> None:
        self.proc.send_signal(sig)

    def wait(self, timeout: float) -> int:
        """The exit code; AssertionError if the process is still running after ``timeout``."""
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"server still running after {timeout}s") from None
        self._reader.join(5)
        return code

    def stop(self, timeout: float = 10.0) -> int:
        """SIGTERM and wait for the exit code; the whole log is then in ``self.log``."""
        if self.proc.poll() is None:
            self.signal(signal.SIGTERM)
        return self.wait(timeout)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        self._reader.join(5)
        if self.proc.stderr is not None:
            self.proc.stderr.close()

    def rss_kib(self) -> int:
        """The server's resident set size in KiB, from /proc/PID/status (VmRSS)."""
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        raise AssertionError("no VmRSS in /proc status")

    def alive(self) -> bool:
        return self.proc.poll() is None


LOOPS = ["asyncio", "uvloop"]


@pytest.fixture(name="loop", params=LOOPS)
def loop_fixture(request: pytest.FixtureRequest) -> str:
    """Every server test that takes this fixture runs once on each event loop."""
    return str(request.param)


@pytest.fixture(name="spawn_server")
def spawn_server_fixture() -> Iterator[Callable[..., ServerProcess]]:
    """A factory of server processes; every one it started is killed at teardown."""
    servers: list[ServerProcess] = []

    def spawn(loop: str, args: Sequence[str] = (), **kw: Any) -> ServerProcess:
        server = ServerProcess(loop, args, **kw)
        servers.append(server)
        return server

    yield spawn
    for server in servers:
        server.kill()


class LineClient:
    """A blocking line client over a real socket, every read bounded by a timeout."""

    def __init__(self, port: int, timeout: float = 5.0, source: str | None = None) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        if source is not None:
            self.sock.bind((source, 0))
        self.sock.connect(("127.0.0.1", port))
        self._buf = b""

    def send(self, data: str | bytes) -> None:
        self.sock.sendall(data.encode() if isinstance(data, str) else data)

    def line(self) -> str | None:
        """The next line without its newline, or None at EOF (a reset counts as EOF too)."""
        while b"\n" not in self._buf:
            try:
                chunk = self.sock.recv(65536)
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                if self._buf:
                    rest, self._buf = self._buf, b""
                    return rest.decode()
                return None
            self._buf += chunk
        raw, self._buf = self._buf.split(b"\n", 1)
        return raw.decode()

    def ask(self, message: str) -> str | None:
        self.send(message + "\n")
        return self.line()

    def eof(self) -> bool:
        """True if the peer has closed (EOF or reset) with nothing more to read."""
        try:
            chunk = self.sock.recv(65536)
        except ConnectionResetError:
            return True
        self._buf += chunk
        return not chunk

    def reset(self) -> None:
        """Close abruptly: SO_LINGER 0 makes close() send RST instead of FIN."""
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.sock.close()

    def close(self) -> None:
        self.sock.close()


def served(port: int, timeout: float = 2.0) -> bool:
    """True if a new client gets an ack for one message (not ERR busy, not a closed socket)."""
    try:
        c = LineClient(port, timeout=timeout)
    except OSError:
        return False
    try:
        return c.ask("ping") == ACK + "ping"
    except OSError:
        return False
    finally:
        c.close()
