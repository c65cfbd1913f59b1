"""The Redis brokers: instances sharing a real Redis, and Redis going away.

In-process instances share the machine's Redis (unique topics per test); the tests that
stop Redis start their own redis-server on a free port.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis

from aiotcp.apps import load_app
from aiotcp.broker import KEY_PREFIX
from aiotcp.config import Config
from aiotcp.runner import loop_factory
from aiotcp.testing import TestServer, serve_app
from support.pubsub import (
    Instance,
    await_until,
    connect,
    free_port,
    recv_msgs,
    require_redis,
    subscribe,
    topic,
    wait_until,
)
from support.services import own_redis

MODES = ["pubsub", "streams"]


@contextlib.asynccontextmanager
async def instances(n: int, **settings: Any) -> AsyncIterator[list[TestServer]]:
    """``n`` pubsub servers in this process sharing one broker."""
    async with contextlib.AsyncExitStack() as stack:
        servers = []
        for _ in range(n):
            app = load_app(Config(app="pubsub", **settings))
            servers.append(await stack.enter_async_context(serve_app(app, **settings)))
        yield servers


def run(main: Any, loop: str = "asyncio") -> None:
    async def bounded() -> None:
        async with asyncio.timeout(60):
            await main()

    with asyncio.Runner(loop_factory=loop_factory(Config(loop=loop))) as runner:
        runner.run(bounded())


@pytest.mark.parametrize("mode", MODES)
def test_a_message_reaches_the_subscribers_of_every_instance_in_order(
    mode: str, loop: str
) -> None:
    url = require_redis()
    t, n = topic("cross"), 500

    async def main() -> None:
        async with instances(2, broker=url, broker_mode=mode) as (a, b):
            on_a = await subscribe(a.port, t)
            on_b = await subscribe(b.port, t)
            pub = await connect(b.port)
            await pub.send(*(f"PUB {t} {i}" for i in range(n)))
            assert await recv_msgs(pub, n) == [f"已收到: {i}" for i in range(n)]
            expected = [f"MSG {t} {i}" for i in range(n)]
            assert await recv_msgs(on_a, n) == expected
            assert await recv_msgs(on_b, n) == expected
            stats_a, stats_b = a.server.stats, b.server.stats
            assert stats_b.pubsub_published == n and stats_a.pubsub_published == 0
            assert stats_a.pubsub_delivered == n and stats_b.pubsub_delivered == n
            for c in (on_a, on_b, pub):
                await c.close()

    run(main, loop)


def test_one_redis_subscription_per_instance_and_topic_not_per_client(loop: str) -> None:
    url = require_redis()
    t = topic("numsub")
    key = KEY_PREFIX + t
    r = redis.Redis.from_url(url)

    def numsub() -> int:
        return int(dict(r.pubsub_numsub(key))[key.encode()])

    async def main() -> None:
        async with instances(2, broker=url) as (a, b):
            on_a = [await subscribe(a.port, t) for _ in range(5)]
            on_b = [await subscribe(b.port, t) for _ in range(5)]
            assert numsub() == 2
            for c in on_a:
                await c.close()
            await await_until(lambda: numsub() == 1, "instance a to unsubscribe")
            assert await on_b[0].request(f"UNSUB {t}") == f"OK UNSUB {t}"
            assert numsub() == 1  # four subscribers left on b
            for c in on_b:
                await c.close()
            await await_until(lambda: numsub() == 0, "instance b to unsubscribe")

    run(main, loop)


def test_streams_message_ids_are_the_entry_ids() -> None:
    url = require_redis()
    t = topic("ids")

    async def main() -> None:
        async with instances(1, broker=url, broker_mode="streams", message_ids=True) as (a,):
            sub = await subscribe(a.port, t)
            pub = await connect(a.port)
            assert await pub.request(f"PUB {t} hello there") == "已收到: hello there"
            await pub.close()
            line = await sub.recv()
            _, got_topic, entry_id, text = line.split(" ", 3)
            assert (got_topic, text) == (t, "hello there")
            entries = redis.Redis.from_url(url).xrange(KEY_PREFIX + t)
            assert [e[0].decode() for e in entries] == [entry_id]
            await sub.close()

    run(main)


def test_streams_sub_delivers_what_is_published_after_ok_and_not_before() -> None:
    """Entries XADDed straight into Redis (as any other instance would) after OK SUB."""
    url = require_redis()
    t = topic("after-ok")
    r = redis.Redis.from_url(url)
    r.xadd(KEY_PREFIX + t, {"text": "before"})

    async def main() -> None:
        async with instances(1, broker=url, broker_mode="streams") as (a,):
            sub = await subscribe(a.port, t)
            r.xadd(KEY_PREFIX + t, {"text": "after"})
            assert await sub.recv() == f"MSG {t} after"
            await sub.close()

    run(main)


@pytest.mark.parametrize("mode", MODES)
def test_pub_while_redis_is_down_is_err_unavailable_and_the_connection_stays(
    mode: str, loop: str
) -> None:
    with own_redis() as own:

        async def main() -> None:
            async with instances(1, broker=own.url, broker_mode=mode) as (a,):
                sub = await subscribe(a.port, "down")
                pub = await connect(a.port)
                assert await pub.request("PUB down 1") == "已收到: 1"
                assert await sub.recv() == "MSG down 1"
                own.stop()
                reply = await pub.request("PUB down 2")
                assert reply.startswith("ERR unavailable redis: "), reply
                assert (await pub.request("SUB new")).startswith("ERR unavailable ")
                assert (await pub.request("nonsense")).startswith("ERR bad-command ")
                own.start()
                await await_until(lambda: a.server.ready, "the broker back")
                assert await pub.request("PUB down 3") == "已收到: 3"
                if mode == "pubsub":  # its subscription was lost: it is told
                    assert await sub.recv() == "GAP down ?"
                assert await sub.recv() == "MSG down 3"
                assert a.server.stats.errors["unavailable"] == 2
                await sub.close()
                await pub.close()

        run(main, loop)


def test_streams_mode_cannot_start_without_redis() -> None:
    port = free_port()  # nothing listens there
    p = subprocess.run(
        [sys.executable, "-m", "aiotcp", "serve", "--app", "pubsub", "--port", "0",
         "--broker", f"redis://127.0.0.1:{port}/0", "--broker-mode", "streams"],
        capture_output=True, text=True, timeout=30, check=False,
    )
    assert p.returncode == 1
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in p.stderr, p.stderr
    assert "startup failed" in lines[0] and f"127.0.0.1:{port}" in lines[0]


def test_pubsub_mode_starts_without_redis_and_is_ready_once_it_answers() -> None:
    with own_redis() as own:
        own.stop()
        with Instance(own.url, "pubsub") as inst:
            assert inst.ready() == 503
            own.start()
            wait_until(lambda: inst.ready() == 200, "/readyz 200 once Redis answers")

            async def main() -> None:
                sub = await subscribe(inst.port, "late")
                await sub.send("PUB late ok")
                assert sorted(await recv_msgs(sub, 2)) == ["MSG late ok", "已收到: ok"]
                await sub.close()

            run(main)


def test_streams_readyz_follows_the_broker() -> None:
    with own_redis() as own, Instance(own.url, "streams") as inst:
        assert inst.ready() == 200
        own.stop()
        wait_until(lambda: inst.ready() == 503, "/readyz 503 while Redis is gone")
        own.start()
        wait_until(lambda: inst.ready() == 200, "/readyz 200 once Redis is back")
        assert inst.metric("aiotcp_broker_reconnects_total") == 1
        assert "lost Redis" in inst.log and "reconnected to Redis" in inst.log


def test_the_pubsub_metrics_are_exported() -> None:
    url = require_redis()
    t = topic("metrics")
    with Instance(url, "pubsub") as inst:

        async def main() -> None:
            subs = [await subscribe(inst.port, t) for _ in range(3)]
            pub = await connect(inst.port)
            assert await pub.request(f"PUB {t} m") == "已收到: m"
            await pub.close()
            for s in subs:
                assert await s.recv() == f"MSG {t} m"
            assert inst.metric("aiotcp_pubsub_subscriptions") == 3
            for s in subs:
                await s.close()

        run(main)
        assert inst.metric("aiotcp_pubsub_published_total") == 1
        assert inst.metric("aiotcp_pubsub_delivered_total") == 3
        assert inst.metric("aiotcp_pubsub_dropped_total") == 0
        wait_until(lambda: inst.metric("aiotcp_pubsub_subscriptions") == 0, "subscriptions end")
