"""Support for the pubsub tests: Redis (shared or our own), HAProxy, pubsub instances, clients.

The shared Redis is at 127.0.0.1:6379 (env ``AIOTCP_TEST_REDIS`` overrides); a test that
cannot reach it fails saying how to start it. Tests that stop Redis start their own
``redis-server`` on a free loopback port: the machine's Redis is never restarted.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import socket
import subprocess
import tempfile
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from aiotcp.testing import Client
from support import waiting
from support.haproxy import haproxy_binary
from support.ports import free_port
from support.process import ServerProcess
from support.services import SERVICES, service_url

METRICS_AT = re.compile(r"aiotcp metrics at http://[^:]+:(\d+)/metrics")
# Hang guards only: every wait ends as soon as its condition holds.
WAIT = 20.0
# What pub/sub mode logs when it is back on Redis (the README's delivery-guarantees table).
LOST_HINT = "messages published during the outage may have been lost"


def require_redis() -> str:
    """The shared Redis's URL (``service_url``) once it answers PING; else fail the test
    saying how to start it."""
    url = service_url("redis")
    try:
        redis.Redis.from_url(url, socket_connect_timeout=2).ping()
    except redis.RedisError as e:
        start = SERVICES["redis"][2]
        pytest.fail(f"Redis is not reachable at {url} ({e}); start it with: {start}")
    return url


def topic(name: str) -> str:
    """A topic name no other test (or run) uses."""
    return f"t-{name}-{uuid.uuid4().hex[:10]}"


def wait_until(check: Callable[[], object], what: str, timeout: float = WAIT) -> None:
    """Poll ``check`` until it is true; fail naming ``what`` after ``timeout``."""
    waiting.wait_until(check, timeout, what)


async def await_until(check: Callable[[], object], what: str, timeout: float = WAIT) -> None:
    await waiting.wait_until_async(check, timeout, what)


async def connect(port: int, host: str = "127.0.0.1") -> Client:
    reader, writer = await asyncio.open_connection(host, port)
    return Client(reader, writer, "line")


async def subscribe(port: int, *topics: str) -> Client:
    """A client subscribed to ``topics`` (each OK read)."""
    c = await connect(port)
    for t in topics:
        assert await c.request(f"SUB {t}") == f"OK SUB {t}"
    return c


async def recv_msgs(c: Client, n: int, timeout: float = WAIT) -> list[str]:
    """The next ``n`` lines ``c`` receives."""
    return [await c.recv(timeout) for _ in range(n)]


def http_status(port: int, path: str) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
            return int(r.status)
    except urllib.error.HTTPError as e:
        return int(e.code)


def metric(port: int, name: str) -> float:
    """The value of an unlabelled metric on the /metrics of ``port``."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        for line in r.read().decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
    raise AssertionError(f"{name} not in /metrics")


class Instance(ServerProcess):
    """``aiotcp serve --app pubsub`` as a process, with its metrics port."""

    def __init__(self, broker: str, mode: str = "pubsub", *extra: str) -> None:
        # --metrics-port 0 is "off": take a free port (and learn it back from the log).
        args = ["--app", "pubsub", "--metrics-port", str(free_port()), "--broker-mode", mode,
                *extra]
        if broker:
            args += ["--broker", broker]
        super().__init__(args)
        self.metrics_port = 0
        wait_until(self._metrics_logged, "the metrics port in the log")

    def _metrics_logged(self) -> bool:
        m = METRICS_AT.search(self.log)
        if m:
            self.metrics_port = int(m.group(1))
        return bool(m) or self.proc.poll() is not None

    def ready(self) -> int:
        return http_status(self.metrics_port, "/readyz")

    def metric(self, name: str) -> float:
        return metric(self.metrics_port, name)


class HAProxy:
    """A real HAProxy in TCP mode on loopback, with an admin stats socket.

    ``servers`` are (port, check port or None): with a check port, each is checked with
    ``GET /readyz`` there (option httpchk, ``check port``).
    """

    def __init__(self, servers: list[tuple[int, int | None]]) -> None:
        binary = haproxy_binary()  # fails the test, naming the install, if missing
        self.dir = Path(tempfile.mkdtemp(prefix="aiotcp-haproxy-"))
        self.port = free_port()
        self.socket_path = str(self.dir / "admin.sock")
        checked = any(check for _, check in servers)
        lines = [
            "global",
            f"    stats socket {self.socket_path} level admin",
            "    maxconn 8000",
            "defaults",
            "    mode tcp",
            "    timeout connect 2s",
            "    timeout client 120s",
            "    timeout server 120s",
            "    timeout check 1s",
            "    retries 3",
            "    option redispatch",
            "frontend fe",
            f"    bind 127.0.0.1:{self.port}",
            "    default_backend be",
            "backend be",
            "    balance roundrobin",
        ]
        if checked:
            lines += ["    option httpchk", "    http-check send meth GET uri /readyz",
                      "    http-check expect status 200",
                      "    default-server inter 200ms fall 2 rise 1"]
        for i, (port, check) in enumerate(servers):
            suffix = f" check port {check}" if check else ""
            lines.append(f"    server s{i} 127.0.0.1:{port}{suffix}")
        self.config = "\n".join(lines) + "\n"
        (self.dir / "haproxy.cfg").write_text(self.config)
        self.proc = subprocess.Popen(
            [binary, "-db", "-f", str(self.dir / "haproxy.cfg")],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        wait_until(lambda: os.path.exists(self.socket_path) or self.proc.poll() is not None,
                   "haproxy's admin socket")
        if self.proc.poll() is not None:
            out = self.proc.stdout.read() if self.proc.stdout else ""
            raise RuntimeError(f"haproxy did not start:\n{out}\n{self.config}")

    def admin(self, command: str) -> str:
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(5)
            s.connect(self.socket_path)
            s.sendall(command.encode() + b"\n")
            chunks = []
            while chunk := s.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks).decode()

    def statuses(self) -> dict[str, str]:
        """Server name -> status (UP, DOWN, MAINT...) in the backend."""
        rows = self.admin("show stat").splitlines()
        header = rows[0].lstrip("# ").split(",")
        out = {}
        for row in rows[1:]:
            cells = dict(zip(header, row.split(","), strict=False))
            if cells.get("pxname") == "be" and cells.get("svname", "").startswith("s"):
                out[cells["svname"]] = cells.get("status", "")
        return out

    def wait_status(self, server: str, status: str) -> None:
        wait_until(lambda: self.statuses().get(server, "").startswith(status),
                   f"haproxy to see {server} {status}")

    def cut(self) -> None:
        """No more traffic to the servers: maintenance mode, established sessions killed."""
        for name in self.statuses():
            self.admin(f"disable server be/{name}")
            self.admin(f"shutdown sessions server be/{name}")

    def restore(self) -> None:
        for name in self.statuses():
            self.admin(f"enable server be/{name}")

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        shutil.rmtree(self.dir, ignore_errors=True)


@contextlib.contextmanager
def haproxy(servers: list[tuple[int, int | None]]) -> Iterator[HAProxy]:
    h = HAProxy(servers)
    try:
        yield h
    finally:
        h.close()
