"""The pubsub app with the in-process broker, on a real loopback port, on both loops."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

from aiotcp.apps import load_app
from aiotcp.config import Config
from aiotcp.testing import TestServer, run
from support.pubsub import await_until, connect, recv_msgs, subscribe


def serve(loop: str, check: Any, **settings: Any) -> Any:
    app = load_app(Config(app="pubsub", **settings))
    return run(app, lambda server: check(server, app.target), loop=loop, **settings)


def test_sub_pub_unsub(loop: str) -> None:
    async def check(server: TestServer, hub: Any) -> None:
        a = await subscribe(server.port, "news")
        b = await subscribe(server.port, "news", "sport")
        other = await subscribe(server.port, "weather")
        pub = await connect(server.port)
        assert await pub.request("PUB news hello world") == "已收到: hello world"
        assert await a.recv() == "MSG news hello world"
        assert await b.recv() == "MSG news hello world"
        assert await b.request("UNSUB news") == "OK UNSUB news"
        assert await pub.request("PUB news second") == "已收到: second"
        assert await pub.request("PUB sport 3") == "已收到: 3"
        assert await a.recv() == "MSG news second"
        assert await b.recv() == "MSG sport 3"  # not "second": b left news
        assert await other.request("SUB weather") == "OK SUB weather"  # nothing was pushed
        assert hub.stats.pubsub_delivered == 4
        assert hub.stats.pubsub_published == 3
        for c in (a, b, other, pub):
            await c.close()

    serve(loop, check)


def test_a_publisher_subscribed_to_its_topic_gets_its_own_message() -> None:
    async def check(server: TestServer, hub: Any) -> None:
        c = await subscribe(server.port, "echo")
        await c.send("PUB echo me")
        assert sorted(await recv_msgs(c, 2)) == ["MSG echo me", "已收到: me"]
        await c.close()

    serve("asyncio", check)


def test_one_publishers_messages_arrive_in_order(loop: str) -> None:
    n = 2000

    async def check(server: TestServer, hub: Any) -> None:
        sub = await subscribe(server.port, "seq")
        pub = await connect(server.port)
        await pub.send(*(f"PUB seq {i}" for i in range(n)))  # pipelined in one write
        assert await recv_msgs(pub, n) == [f"已收到: {i}" for i in range(n)]
        assert await recv_msgs(sub, n) == [f"MSG seq {i}" for i in range(n)]
        await sub.close()
        await pub.close()

    serve(loop, check)


def test_bad_commands_and_the_subscription_limit_keep_the_connection(loop: str) -> None:
    async def check(server: TestServer, hub: Any) -> None:
        c = await connect(server.port)
        assert (await c.request("HELLO")).startswith("ERR bad-command ")
        assert (await c.request("SUB two words")).startswith("ERR bad-command ")
        assert (await c.request("PUB lonely")).startswith("ERR bad-command ")
        assert await c.request("SUB a") == "OK SUB a"
        assert await c.request("SUB a") == "OK SUB a"  # already: not counted twice
        assert await c.request("SUB b") == "OK SUB b"
        assert await c.request("SUB c") == "ERR too-many-subscriptions limit 2 per connection"
        assert await c.request("UNSUB a") == "OK UNSUB a"
        assert await c.request("SUB c") == "OK SUB c"
        await c.send("PUB c still open")
        assert sorted(await recv_msgs(c, 2)) == ["MSG c still open", "已收到: still open"]
        assert hub.stats.errors["bad-command"] == 3
        await c.close()

    serve(loop, check, max_subscriptions=2)


def test_subscriptions_end_when_the_connection_closes(loop: str) -> None:
    async def check(server: TestServer, hub: Any) -> None:
        gone = await subscribe(server.port, "x", "y")
        stays = await subscribe(server.port, "y")
        assert hub.stats.pubsub_subscriptions == 3
        await gone.close()
        await await_until(lambda: hub.stats.pubsub_subscriptions == 1, "the close hook")
        assert not hub.fanout.has("x")
        pub = await connect(server.port)
        assert await pub.request("PUB y after") == "已收到: after"
        assert await stays.recv() == "MSG y after"
        assert hub.stats.pubsub_delivered == 1
        await stays.close()
        await pub.close()

    serve(loop, check)


def test_a_subscriber_that_does_not_read_loses_messages_then_is_dropped(loop: str) -> None:
    """The slow subscriber costs the others nothing; it is counted, then cut off."""
    n, size = 600, 30_000  # 18 MB: far over the push backlog and the socket buffers

    async def check(server: TestServer, hub: Any) -> None:
        slow = await subscribe(server.port, "big")
        fast = await subscribe(server.port, "big")
        pub = await connect(server.port)
        body = "x" * size
        for i in range(n):
            assert await pub.request(f"PUB big {i} {body}") == f"已收到: {i} {body}"
            assert await fast.recv() == f"MSG big {i} {body}"
        assert hub.stats.pubsub_dropped > 0
        # Every message reached the fast one; the slow one got some, missed others
        # (counted), and may have been cut off (write timeout) before the end.
        assert n < hub.stats.pubsub_delivered + hub.stats.pubsub_dropped <= 2 * n
        # Paused above the high-water mark since then: the write timeout drops it.
        await await_until(lambda: hub.stats.pubsub_subscriptions == 1, "the slow one dropped")
        assert hub.stats.errors.get("write-timeout") == 1
        await slow.close()
        await fast.close()
        await pub.close()

    serve(loop, check, write_timeout=0.5)


def test_settings_the_app_cannot_serve_exit_1_with_one_line() -> None:
    for args in (["--broker", "http://127.0.0.1:6379"], ["--message-ids"],
                 ["--framing", "length"]):
        p = subprocess.run(
            [sys.executable, "-m", "aiotcp", "serve", "--app", "pubsub", "--port", "0", *args],
            capture_output=True, text=True, timeout=30, check=False,
        )
        assert p.returncode == 1, (args, p.stderr)
        lines = p.stderr.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in p.stderr, p.stderr


def test_a_quiet_subscriber_is_not_closed_by_the_idle_timeout(loop: str) -> None:
    """Like Redis's timeout, which spares pub/sub clients: a subscriber only listens."""

    async def check(server: TestServer, hub: Any) -> None:
        sub = await subscribe(server.port, "quiet")
        left = await subscribe(server.port, "quiet")
        assert await left.request("UNSUB quiet") == "OK UNSUB quiet"  # no longer listening
        idle = await connect(server.port)
        assert await idle.request("PUB other x") == "已收到: x"
        # ``idle`` spoke last, so once it is closed for idleness the others' deadlines
        # have passed too.
        assert (await idle.recv()).startswith("ERR idle-timeout")
        assert (await left.recv()).startswith("ERR idle-timeout")
        pub = await connect(server.port)
        await pub.send("PUB quiet still here")
        assert await sub.recv() == "MSG quiet still here"
        for c in (sub, left, idle, pub):
            await c.close()

    serve(loop, check, idle_timeout=0.3)
