"""The ingest app on a real loopback port, against each real store."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import subprocess
import sys
import uuid
from collections.abc import Callable
from typing import Any

import pytest

from aiotcp.apps import load_app
from aiotcp.config import Config
from aiotcp.stores import parse_store_url
from aiotcp.stores.sqlite import DIR_MODE
from aiotcp.testing import Client, TestServer
from support.services import (
    STARTUP_TIMEOUT,
    execute,
    rows,
    serve_expecting_failure,
    service_url,
    with_table,
)

ACK = "已收到: "


def ingest(url: str, **settings: Any) -> tuple[Any, dict[str, Any]]:
    """The ingest app for ``url`` and the server settings to serve it with (``app`` is
    not among them: ``aiotcp_run`` takes the app object itself)."""
    return load_app(Config(app="ingest", store=url, **settings)), settings


def local_peer(client: Client) -> str:
    host, port = client.writer.get_extra_info("sockname")[:2]
    return f"{host}:{port}"


def test_every_message_is_a_row_and_acked_after_its_commit(
    store_url: str, loop: str, aiotcp_run: Callable[..., Any]
) -> None:
    async def check(server: TestServer) -> list[str]:
        async with server.client() as a, server.client() as b:
            await a.send("你好", "", "second")
            await b.send("from b")
            assert [await a.recv() for _ in range(3)] == [ACK + "你好", ACK, ACK + "second"]
            assert await b.recv() == ACK + "from b"
            stored = rows(store_url)  # acked, so committed: visible to another connection
            assert sorted(stored) == sorted(
                [(local_peer(a), "你好"), (local_peer(a), ""), (local_peer(a), "second"),
                 (local_peer(b), "from b")]
            )
            return [body for _, body in stored]

    app, settings = ingest(store_url, loop=loop)
    assert aiotcp_run(app, check, **settings)


@pytest.mark.parametrize("commit", ["group", "each"])
def test_pipelined_messages_from_many_clients_are_all_stored_and_acked_in_order(
    store_url: str, commit: str, aiotcp_run: Callable[..., Any]
) -> None:
    clients, each = 20, 50
    n = clients * each

    async def check(server: TestServer) -> None:
        async def one(i: int) -> None:
            async with server.client() as c:
                msgs = [f"c{i}-{j}" for j in range(each)]
                await c.send(*msgs)
                assert [await c.recv() for _ in msgs] == [ACK + m for m in msgs]

        await asyncio.gather(*(one(i) for i in range(clients)))
        bodies = [b for _, b in rows(store_url)]
        assert sorted(bodies) == sorted(f"c{i}-{j}" for i in range(clients) for j in range(each))

    app, settings = ingest(f"{store_url}&commit={commit}", handler_concurrency=4)
    aiotcp_run(app, check, **settings)
    commits = app.target.committer.commits
    if commit == "each":
        assert commits == n
    else:  # each read is one append, appends meanwhile share a commit: far fewer than n
        assert commits <= n // 10, commits


def test_a_failed_commit_is_err_unavailable_then_the_store_recovers(
    store_url: str, aiotcp_run: Callable[..., Any], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="aiotcp.ingest")
    table = parse_store_url(store_url).table

    async def check(server: TestServer) -> dict[str, int]:
        async with server.client() as c:
            assert await c.request("before") == ACK + "before"
            execute(store_url, f"DROP TABLE {table}")
            await c.send("lost-1", "lost-2")
            replies = [await c.recv(), await c.recv()]
            assert all(r.startswith("ERR unavailable ") for r in replies), replies
            assert await c.request("after") == ACK + "after"  # reconnected, table made again
        assert [b for _, b in rows(store_url)] == ["after"]
        return dict(server.server.stats.errors)

    app, settings = ingest(store_url)
    assert aiotcp_run(app, check, **settings) == {"unavailable": 2}  # aiotcp_errors_total
    logged = [(r.levelname, r.getMessage()) for r in caplog.records if r.name == "aiotcp.ingest"]
    shown = parse_store_url(store_url).shown
    assert [level for level, _ in logged] == ["ERROR", "INFO"], logged
    assert logged[0][1].startswith(f"store {shown} commits failing: "), logged
    assert logged[1][1].startswith(f"store {shown} recovered after "), logged


def test_sqlite_locked_by_another_writer_is_err_unavailable_until_released(
    tmp_path: Any, aiotcp_run: Callable[..., Any]
) -> None:
    url = f"sqlite:///{tmp_path / 'locked.db'}"

    async def check(server: TestServer) -> None:
        async with server.client() as c:
            assert await c.request("one") == ACK + "one"
            other = sqlite3.connect(parse_store_url(url).path, isolation_level=None)
            other.execute("BEGIN IMMEDIATE")  # holds the write lock
            try:
                reply = await c.request("two")
                assert reply.startswith("ERR unavailable ") and "locked" in reply, reply
            finally:
                other.execute("ROLLBACK")
                other.close()
            assert await c.request("three") == ACK + "three"
        assert [b for _, b in rows(url)] == ["one", "three"]

    app, settings = ingest(url)
    aiotcp_run(app, check, **settings)


def test_postgres_connection_killed_then_the_next_batches_reconnect(
    aiotcp_run: Callable[..., Any],
) -> None:
    tag = uuid.uuid4().hex[:16]
    table, name = f"t_{tag}", f"aiotcp_{tag}"
    url = with_table(service_url("postgres") + f"?application_name={name}", table)

    async def check(server: TestServer) -> None:
        async with server.client() as c:
            assert await c.request("one") == ACK + "one"
            killed = execute(url, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                  f"WHERE application_name = '{name}' "
                                  "AND pid <> pg_backend_pid()")
            assert killed == [(True,)]
            replies = [await c.request(f"m{i}") for i in range(3)]
            # The loss is seen at the first use or before it: at most one batch fails.
            assert replies[1:] == [ACK + "m1", ACK + "m2"], replies
            assert replies[0] in (ACK + "m0",) or replies[0].startswith("ERR unavailable ")
        stored = [b for _, b in rows(url)]
        assert stored[0] == "one" and stored[-2:] == ["m1", "m2"]

    try:
        app, settings = ingest(url)
        aiotcp_run(app, check, **settings)
    finally:
        execute(url, f"DROP TABLE IF EXISTS {table}")


def umask() -> int:
    with open("/proc/self/status") as f:
        return int(next(x for x in f if x.startswith("Umask:")).split()[1], 8)


def test_a_sqlite_file_in_a_directory_not_made_yet_gets_the_directory(
    tmp_path: Any, aiotcp_run: Callable[..., Any]
) -> None:
    db = tmp_path / "var" / "lib" / "aiotcp" / "ingest.db"
    url = f"sqlite:///{db}"

    async def check(server: TestServer) -> None:
        async with server.client() as c:
            assert await c.request("first") == ACK + "first"

    app, settings = ingest(url)
    aiotcp_run(app, check, **settings)
    assert [b for _, b in rows(url)] == ["first"]
    for made in (db.parent, db.parent.parent, db.parent.parent.parent):
        assert made.stat().st_mode & 0o777 == DIR_MODE & ~umask(), made


@pytest.mark.parametrize("store, words", [
    ("foo://user:s3cret@h/d", "unknown scheme 'foo'"),
    ("postgresql://postgres:s3cret@127.0.0.1:1/test", "cannot be opened"),
    ("mysql://root:s3cret@127.0.0.1:1/test", "cannot be opened"),
    ("sqlite:////dev/null/x.db", "cannot be opened: /dev/null is not a directory"),
])
def test_a_store_that_cannot_be_used_stops_startup_with_one_line(store: str, words: str) -> None:
    rc, log = serve_expecting_failure(["--app", "ingest", "--store", store])
    errors = [line for line in log.splitlines() if "ERROR" in line]
    assert rc == 1 and len(errors) == 1 and words in errors[0], log
    assert "Traceback" not in log and "s3cret" not in log, log


@pytest.mark.parametrize("driver, extra, store", [
    ("asyncpg", "postgres", "postgresql://postgres:s3cret@127.0.0.1:5432/test"),
    ("aiomysql", "mysql", "mysql://root:s3cret@127.0.0.1:3306/test"),
])
def test_a_missing_driver_stops_startup_naming_the_extra(
    driver: str, extra: str, store: str
) -> None:
    code = (
        f"import sys; sys.modules[{driver!r}] = None\n"  # as if it were not installed
        "from aiotcp.cli import main\n"
        f"sys.exit(main(['serve', '--port', '0', '--app', 'ingest', '--store', {store!r}]))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=STARTUP_TIMEOUT, check=False)
    errors = [line for line in done.stderr.splitlines() if "ERROR" in line]
    assert done.returncode == 1 and len(errors) == 1, done.stderr
    assert f"needs {driver}: pip install 'aiotcp[{extra}]'" in errors[0], done.stderr
    assert "Traceback" not in done.stderr and "s3cret" not in done.stderr, done.stderr
