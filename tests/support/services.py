"""PostgreSQL, MariaDB/MySQL and Redis for the tests: where they are, and what is in them.

Each service is found at its default local address or at the URL in an environment
variable (AIOTCP_TEST_POSTGRES, AIOTCP_TEST_MYSQL, AIOTCP_TEST_REDIS). A test whose
service is not reachable fails, saying how to start it: never skipped.

The fixtures ``store_url`` and ``redis_url`` (in ``conftest.py``) use it. ``store_url`` (parametrized over sqlite, postgres and mysql) gives each test
a table of its own (``?table=t_<random>``), dropped afterwards, so parallel runs of the
suite never share rows.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import shutil
import signal
import socket
import sqlite3
import subprocess
import tempfile
import urllib.parse
import warnings
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from aiotcp.stores import parse_store_url, redact
from support.ports import free_port
from support.waiting import wait_until as _wait_until

# name -> (environment variable, default URL, how to start it on this machine)
SERVICES: dict[str, tuple[str, str, str]] = {
    "postgres": (
        "AIOTCP_TEST_POSTGRES",
        "postgresql://postgres@127.0.0.1:5432/test",
        "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start",
    ),
    "mysql": (
        "AIOTCP_TEST_MYSQL",
        "mysql://root@127.0.0.1:3306/test",
        "start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd",
    ),
    "redis": (
        "AIOTCP_TEST_REDIS",
        "redis://127.0.0.1:6379/0",
        'redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no',
    ),
}
DEFAULT_PORTS = {"postgres": 5432, "mysql": 3306, "redis": 6379}
# A local service answers a TCP connect at once; longer means it is not there.
PROBE_TIMEOUT = 3.0
STORES = ["sqlite", "postgres", "mysql"]
# A redis-server of a test's own listens within this (a hang guard, not a wait).
START_TIMEOUT = 20.0


def service_url(name: str) -> str:
    """The URL of a service, after checking it accepts connections; else the test fails."""
    import os

    env, default, start = SERVICES[name]
    url = os.environ.get(env, default)
    parts = urllib.parse.urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or DEFAULT_PORTS[name]
    try:
        socket.create_connection((host, port), PROBE_TIMEOUT).close()
    except OSError as e:
        pytest.fail(
            f"{name} is not reachable at {redact(url)} ({e}). Start it with:\n    {start}\n"
            f"or point {env} at a running one.",
            pytrace=False,
        )
    return url


def with_table(url: str, table: str) -> str:
    sep = "&" if "?" in url else "?"
    return f"{url}{sep}table={table}"


# ---- reading and changing a store from the test ------------------------------------

def _run(coro: Any) -> Any:
    """Run ``coro`` on a loop of its own in a thread: callable from sync tests and from
    inside a running loop alike (it blocks that loop, as a test may)."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


async def _pg(url: str, sql: str) -> list[tuple[Any, ...]]:
    import asyncpg

    conn = await asyncpg.connect(parse_store_url(url).driver_url)
    try:
        return [tuple(r) for r in await conn.fetch(sql)]
    finally:
        await conn.close()


async def _my(url: str, sql: str) -> list[tuple[Any, ...]]:
    import aiomysql

    parts = urllib.parse.urlsplit(url)
    conn = await aiomysql.connect(
        host=parts.hostname, port=parts.port or 3306, user=parts.username or "root",
        password=parts.password or "", db=parts.path.lstrip("/"), charset="utf8mb4",
        autocommit=True,
    )
    try:
        async with conn.cursor() as cur:
            with warnings.catch_warnings():  # "Unknown table" of DROP TABLE IF EXISTS
                warnings.simplefilter("ignore")
                await cur.execute(sql)
            return [tuple(r) for r in await cur.fetchall()]
    finally:
        conn.close()


def execute(url: str, sql: str) -> list[tuple[Any, ...]]:
    """Run ``sql`` on the store ``url`` names (its own connection); return the rows."""
    parsed = parse_store_url(url)
    if parsed.scheme == "sqlite":
        db = sqlite3.connect(parsed.path, isolation_level=None)
        try:
            return [tuple(r) for r in db.execute(sql).fetchall()]
        finally:
            db.close()
    if parsed.scheme in ("postgresql", "postgres"):
        return list(_run(_pg(url, sql)))
    return list(_run(_my(url, sql)))


def rows(url: str) -> list[tuple[str, str]]:
    """(peer, body) of every row of the store's table, in id order."""
    table = parse_store_url(url).table
    return [(str(p), str(b)) for p, b in execute(url, f"SELECT peer, body FROM {table} ORDER BY id")]


def kind_of(url: str) -> str:
    scheme = parse_store_url(url).scheme
    return {"postgresql": "postgres", "mariadb": "mysql"}.get(scheme, scheme)


# A server that cannot start exits within this (a hang guard).
STARTUP_TIMEOUT = 30.0


def serve_expecting_failure(args: list[str]) -> tuple[int, str]:
    """Run ``aiotcp serve ARGS`` on a free port; return its exit code and stderr once it
    exits (it is expected to fail at startup; a server that starts is a test failure)."""
    import sys

    try:
        done = subprocess.run(
            [sys.executable, "-m", "aiotcp", "serve", "--host", "127.0.0.1", "--port", "0",
             *args],
            check=False, capture_output=True, text=True, timeout=STARTUP_TIMEOUT,
        )
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"the server started instead of failing: {e.stderr!r}")
    return done.returncode, done.stderr


class OwnRedis:
    """A redis-server of our own on a free loopback port, to stop and start at will."""

    def __init__(self, appendonly: bool = False) -> None:
        if shutil.which("redis-server") is None:
            pytest.fail("redis-server is not on PATH; install it with: apt-get install redis-server")
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.dir = tempfile.mkdtemp(prefix="aiotcp-redis-")
        self.appendonly = appendonly
        self.proc: subprocess.Popen[bytes] | None = None
        self.start()

    def start(self) -> None:
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "yes" if self.appendonly else "no", "--appendfsync", "always",
             "--dir", self.dir],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        _wait_until(self._answers, what=f"redis-server on port {self.port}")

    def _answers(self) -> bool:
        try:
            return bool(self.client().ping())
        except redis.RedisError:
            return False

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, socket_connect_timeout=1, socket_timeout=5)

    def stop(self) -> None:
        """Kill it (SIGTERM: with appendonly, what was written survives a restart)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(10)
        self.proc = None

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        shutil.rmtree(self.dir, ignore_errors=True)


@contextlib.contextmanager
def own_redis(appendonly: bool = False) -> Iterator[OwnRedis]:
    r = OwnRedis(appendonly)
    try:
        yield r
    finally:
        r.close()
