"""A real HAProxy (TCP mode) on loopback in front of a server, started like a user would:
a generated config file and ``haproxy -f CONFIG -db`` (foreground)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

from support.ports import free_port

HAPROXY_PATHS = ("/usr/sbin/haproxy", "/usr/local/sbin/haproxy")
MISSING = "HAProxy is not installed: apt-get install haproxy (make test installs it)"

CONFIG = """\
global
    maxconn 256

defaults
    mode tcp
    timeout connect 5s
    timeout client 30s
    timeout server 30s

frontend aiotcp_front
    bind 127.0.0.1:{listen_port}
    default_backend aiotcp_back

backend aiotcp_back
    server aiotcp1 127.0.0.1:{backend_port} {send_proxy}
"""


def haproxy_binary() -> str:
    """The haproxy executable; fails the test (not skips it) if there is none."""
    found = shutil.which("haproxy") or next(
        (p for p in HAPROXY_PATHS if Path(p).exists()), None
    )
    if found is None:
        pytest.fail(MISSING)
    return found


class HAProxy:
    """HAProxy forwarding 127.0.0.1:``port`` to ``backend_port`` with ``send_proxy``
    (``send-proxy`` for v1, ``send-proxy-v2`` for v2)."""

    def __init__(self, backend_port: int, send_proxy: str, directory: Path) -> None:
        self.port = free_port()
        config = directory / f"haproxy-{self.port}.cfg"
        config.write_text(CONFIG.format(
            listen_port=self.port, backend_port=backend_port, send_proxy=send_proxy,
        ))
        self.proc = subprocess.Popen(
            [haproxy_binary(), "-f", str(config), "-db"],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )
        self._await_listening()

    def _await_listening(self, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                out = self.proc.stdout.read().decode() if self.proc.stdout else ""
                raise AssertionError(f"haproxy exited with {self.proc.returncode}:\n{out}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise AssertionError(f"haproxy did not listen on {self.port} within {timeout}s")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if self.proc.stdout is not None:
            self.proc.stdout.close()

    def __enter__(self) -> HAProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
