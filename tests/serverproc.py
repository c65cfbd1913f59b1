"""Start ``aiotcp serve`` as a real process and learn its port from its log."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

LISTENING = re.compile(r"listening on (\S+):(\d+)")
TESTS = Path(__file__).parent


class ServerProcess:
    """A running server; ``stderr_lines`` fills from a reader thread."""

    def __init__(self, args: list[str], preexec_fn: Callable[[], None] | None = None,
                 env: dict[str, str] | None = None, wait: bool = True) -> None:
        full_env = dict(os.environ)
        full_env["PYTHONPATH"] = os.pathsep.join([str(TESTS), full_env.get("PYTHONPATH", "")])
        full_env.update(env or {})
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "aiotcp", "serve", "--host", "127.0.0.1", "--port", "0", *args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=full_env,
            preexec_fn=preexec_fn,
        )
        self.stderr_lines: list[str] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._read, daemon=True).start()
        self.port = self._wait_port() if wait else 0

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            with self._lock:
                self.stderr_lines.append(line.rstrip("\n"))

    def _wait_port(self, timeout: float = 20.0) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                for line in self.stderr_lines:
                    m = LISTENING.search(line)
                    if m:
                        return int(m.group(2))
            if self.proc.poll() is not None:
                break
            time.sleep(0.02)
        self.kill()
        raise RuntimeError("server did not start:\n" + "\n".join(self.stderr_lines))

    def wait_for(self, text: str, timeout: float = 20.0) -> None:
        """Wait until a log line contains ``text``; AssertionError at the deadline."""
        deadline = time.monotonic() + timeout
        while text not in self.log():
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise AssertionError(f"{text!r} not logged; log:\n{self.log()}")
            time.sleep(0.02)

    def log(self) -> str:
        with self._lock:
            return "\n".join(self.stderr_lines)

    def wait(self, timeout: float = 20.0) -> int:
        return self.proc.wait(timeout)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.kill()
