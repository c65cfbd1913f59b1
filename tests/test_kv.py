"""The kv app on a real loopback port against a real Redis."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis

from aiotcp.apps import kv as kv_module
from aiotcp.apps import load_app
from aiotcp.config import Config
from aiotcp.testing import TestServer
from support.clients import LineClient
from support.metrics import http_get, scrape
from support.process import SpawnServer
from support.services import (
    OwnRedis,
    free_port,
    own_redis,
    serve_expecting_failure,
)
from support.waiting import wait_until


def kv(url: str) -> Any:
    return load_app(Config(app="kv", redis=url))


@pytest.fixture
def key() -> str:
    """A key prefix of this test's own, so parallel runs never share keys."""
    return "aiotcp-test:" + uuid.uuid4().hex


@pytest.fixture
def private_redis() -> Iterator[OwnRedis]:
    with own_redis() as server:
        yield server


def test_get_set_del(redis_url: str, key: str, aiotcp_run: Callable[..., Any]) -> None:
    async def check(server: TestServer) -> None:
        async with server.client() as c:
            assert await c.request(f"GET {key}") == "NIL"
            assert await c.request(f"SET {key} 你好 world") == "OK"
            assert await c.request(f"get {key}") == "VALUE 你好 world"
            assert await c.request(f"SET {key} ") == "OK"  # an empty value
            assert await c.request(f"GET {key}") == "VALUE "
            assert await c.request(f"DEL {key}") == "OK"
            assert await c.request(f"GET {key}") == "NIL"
            assert await c.request(f"DEL {key}") == "OK"

    aiotcp_run(kv(redis_url), check)


@pytest.mark.parametrize("message", ["", "GET", "GET a b", "SET k", "DEL", "FLUSHALL", "GET  x"])
def test_anything_else_is_a_bad_command(
    redis_url: str, message: str, aiotcp_run: Callable[..., Any]
) -> None:
    async def check(server: TestServer) -> None:
        async with server.client() as c:
            assert await c.request(message) == f"ERR bad-command {message}"

    aiotcp_run(kv(redis_url), check)


@pytest.mark.parametrize("message", ["ſet k v", "ſET k v"])
def test_a_verb_is_ascii_in_any_case(message: str) -> None:
    # "ſ".upper() is "S": this was a SET (fuzz/kv.py's ASCII-verb property).
    assert kv_module.parse(message) is None
    assert kv_module.parse("sEt k v") == ("SET", "k", "v")


def test_pipelined_commands_are_answered_in_order(
    redis_url: str, key: str, aiotcp_run: Callable[..., Any]
) -> None:
    n = 200

    async def check(server: TestServer) -> None:
        async def one(i: int) -> None:
            async with server.client() as c:
                msgs: list[str] = []
                want: list[str] = []
                for j in range(n):
                    k = f"{key}:{i}:{j % 7}"
                    msgs += [f"SET {k} v{j}", f"GET {k}", "NOPE", f"DEL {k}", f"GET {k}"]
                    want += ["OK", f"VALUE v{j}", "ERR bad-command NOPE", "OK", "NIL"]
                await c.send(*msgs)
                assert [await c.recv() for _ in msgs] == want

        await asyncio.gather(*(one(i) for i in range(5)))

    app = load_app(Config(app="kv", redis=redis_url))
    aiotcp_run(app, check, handler_concurrency=4)


def test_values_live_in_redis_only(
    redis_url: str, key: str, aiotcp_run: Callable[..., Any]
) -> None:
    direct = redis.Redis.from_url(redis_url, decode_responses=True)

    async def check(server: TestServer) -> None:
        async with server.client() as c:
            assert await c.request(f"SET {key} mine") == "OK"
            assert direct.get(key) == "mine"
            direct.set(key, "theirs")
            assert await c.request(f"GET {key}") == "VALUE theirs"
            direct.delete(key)
            assert await c.request(f"GET {key}") == "NIL"
            direct.rpush(key, "a list")
            reply = await c.request(f"GET {key}")
            assert reply.startswith("ERR redis WRONGTYPE"), reply
            direct.delete(key)

    try:
        aiotcp_run(kv(redis_url), check)
    finally:
        direct.delete(key)
        direct.close()


def test_redis_lost_is_err_unavailable_and_the_app_recovers(
    private_redis: OwnRedis, aiotcp_run: Callable[..., Any]
) -> None:
    async def check(server: TestServer) -> None:
        async with server.client() as c:
            assert await c.request("SET k before") == "OK"
            private_redis.stop()
            await c.send("GET k", "bad", "SET k x")
            replies = [await c.recv() for _ in range(3)]
            assert replies[0].startswith("ERR unavailable ") and "\n" not in replies[0], replies
            assert replies[1:] == ["ERR bad-command bad", replies[0]]
            private_redis.start()  # an empty Redis on the same port
            assert await c.request("GET k") == "NIL"
            assert await c.request("SET k after") == "OK"
            assert await c.request("GET k") == "VALUE after"

    aiotcp_run(kv(private_redis.url), check)


def test_connections_killed_by_redis_are_replaced_without_an_error(
    private_redis: OwnRedis, aiotcp_run: Callable[..., Any]
) -> None:
    direct = redis.Redis.from_url(private_redis.url, decode_responses=True)

    async def check(server: TestServer) -> None:
        async with server.client() as c:
            assert await c.request("SET k v") == "OK"
            assert direct.client_kill_filter(_type="normal", skipme=True) >= 1
            assert await c.request("GET k") == "VALUE v"

    try:
        aiotcp_run(kv(private_redis.url), check)
    finally:
        direct.close()


@pytest.mark.parametrize("url, words", [
    ("redis://:s3cret@127.0.0.1:{port}/0", "cannot be reached"),
    ("memcached://127.0.0.1/0", "redis memcached://127.0.0.1/0:"),
])
def test_redis_unusable_at_startup_is_exit_1_with_one_line(url: str, words: str) -> None:
    rc, log = serve_expecting_failure(["--app", "kv", "--redis", url.format(port=free_port())])
    errors = [line for line in log.splitlines() if "ERROR" in line]
    assert rc == 1 and len(errors) == 1 and words in errors[0], log
    assert "Traceback" not in log and "s3cret" not in log, log


def test_err_replies_are_counted_by_code(
    redis_url: str, key: str, aiotcp_run: Callable[..., Any]
) -> None:
    direct = redis.Redis.from_url(redis_url, decode_responses=True)

    async def check(server: TestServer) -> dict[str, int]:
        direct.rpush(key, "a list")
        async with server.client() as c:
            await c.send("NOPE", f"GET {key}", "GET", f"SET {key}:s v")
            replies = [await c.recv() for _ in range(4)]
        assert [r.split(" ")[:2] for r in replies] == [
            ["ERR", "bad-command"], ["ERR", "redis"], ["ERR", "bad-command"], ["OK"]]
        return dict(server.server.stats.errors)

    try:
        errors = aiotcp_run(kv(redis_url), check)
    finally:
        direct.delete(key, f"{key}:s")
        direct.close()
    assert errors == {"bad-command": 2, "redis": 1}


def test_redis_down_is_counted_logged_once_and_not_ready_until_it_is_back(
    private_redis: OwnRedis, spawn_server: SpawnServer
) -> None:
    metrics = free_port()
    server = spawn_server(
        ["--app", "kv", "--redis", private_redis.url, "--metrics-port", str(metrics)]
    )

    def readyz() -> int:
        return http_get(metrics, "/readyz")[0]

    wait_until(lambda: readyz() == 200, what="/readyz 200 with Redis up")
    with LineClient(server.port) as c:
        private_redis.stop()
        # No command runs: the PING finds Redis gone.
        wait_until(lambda: readyz() == 503, what="/readyz 503 with Redis down")
        for _ in range(3):
            assert (c.ask("GET k") or "").startswith("ERR unavailable "), server.log
        assert c.ask("NOPE") == "ERR bad-command NOPE"
        private_redis.start()
        wait_until(lambda: readyz() == 200, what="/readyz 200 with Redis back")
        assert c.ask("SET k v") == "OK"
    got = scrape(metrics) or {}
    assert got['aiotcp_errors_total{code="unavailable"}'] == 3
    assert got['aiotcp_errors_total{code="bad-command"}'] == 1
    log = server.log.splitlines()
    down = [line for line in log if f"redis {private_redis.url} unreachable: " in line]
    back = [line for line in log if f"redis {private_redis.url} recovered after " in line]
    assert len(down) == 1 and "ERROR" in down[0], server.log
    assert len(back) == 1, server.log
