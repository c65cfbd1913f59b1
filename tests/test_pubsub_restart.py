"""Redis going away and coming back, and the drain on SIGTERM, with real processes.

Restarts use a redis-server of our own on a free port. A network cut between one
instance and Redis is made with a real HAProxy in between, put in maintenance.
"""

from __future__ import annotations

import os
import signal

import pytest
import redis

from aiotcp.broker import KEY_PREFIX
from support.pubsub import (
    LOST_HINT,
    Instance,
    await_until,
    connect,
    haproxy,
    recv_msgs,
    require_redis,
    subscribe,
    topic,
)
from support.services import own_redis
from support.waiting import run_within as run


def test_pubsub_mode_resubscribes_after_a_redis_restart_and_says_what_may_be_lost() -> None:
    with own_redis() as own, Instance(own.url, "pubsub") as inst:

        async def main() -> None:
            sub = await subscribe(inst.port, "news", "sport")
            own.stop()
            await await_until(lambda: inst.ready() == 503, "/readyz 503 while Redis is down")
            own.start()
            await await_until(lambda: LOST_HINT in inst.log, "the reconnect log line")
            line = next(x for x in inst.log.splitlines() if LOST_HINT in x)
            assert "resubscribed 2 topic(s)" in line
            # The old subscription works again without a new SUB.
            pub = await connect(inst.port)
            assert await pub.request("PUB news back") == "已收到: back"
            # Told that it may have missed some, before the next message.
            assert await recv_msgs(sub, 2) == ["GAP news ?", "MSG news back"]
            assert inst.metric("aiotcp_broker_reconnects_total") == 1
            await sub.close()
            await pub.close()

        run(main)


def test_streams_mode_delivers_what_was_published_while_the_instance_was_cut_off() -> None:
    """Redis stays up and takes publishes from others; only this instance's link is cut."""
    url = require_redis()
    t, n = topic("cut"), 200
    direct = redis.Redis.from_url(url)
    host_port = url.split("//", 1)[1].split("/", 1)[0]
    redis_port = int(host_port.rsplit(":", 1)[1])
    with haproxy([(redis_port, None)]) as link:
        link_url = f"redis://127.0.0.1:{link.port}/0"
        with Instance(link_url, "streams") as inst:

            async def main() -> None:
                sub = await subscribe(inst.port, t)
                pub = await connect(inst.port)
                assert await pub.request(f"PUB {t} before") == "已收到: before"
                assert await sub.recv() == f"MSG {t} before"
                link.cut()
                await await_until(lambda: inst.ready() == 503, "/readyz 503 while cut off")
                reply = await pub.request(f"PUB {t} refused")
                assert reply.startswith("ERR unavailable "), reply
                for i in range(n):  # what other instances publish meanwhile
                    direct.xadd(KEY_PREFIX + t, {"text": f"meanwhile {i}"})
                link.restore()
                assert await recv_msgs(sub, n) == [f"MSG {t} meanwhile {i}" for i in range(n)]
                await await_until(lambda: inst.ready() == 200, "/readyz 200 once back")
                assert await pub.request(f"PUB {t} after") == "已收到: after"
                assert await sub.recv() == f"MSG {t} after"
                await sub.close()
                await pub.close()

            run(main)
        assert "reconnected to Redis" in inst.log


def test_streams_mode_goes_on_from_its_last_id_across_a_redis_restart() -> None:
    """A Redis that keeps its data (appendonly) restarts; what is added once it is back,
    before and after the instance reconnects, is delivered once, in order."""
    with own_redis(appendonly=True) as own, Instance(own.url, "streams") as inst:

        async def main() -> None:
            sub = await subscribe(inst.port, "log")
            pub = await connect(inst.port)
            assert await pub.request("PUB log 0") == "已收到: 0"
            assert await sub.recv() == "MSG log 0"
            own.stop()
            await await_until(lambda: inst.ready() == 503, "/readyz 503 while Redis is down")
            own.start()
            own.client().xadd(KEY_PREFIX + "log", {"text": "1"})  # maybe before it reconnects
            await await_until(lambda: inst.ready() == 200, "/readyz 200 once Redis is back")
            assert await pub.request("PUB log 2") == "已收到: 2"
            assert await recv_msgs(sub, 2) == ["MSG log 1", "MSG log 2"]
            await sub.close()
            await pub.close()

        run(main)


@pytest.mark.parametrize("mode", ["pubsub", "streams"])
def test_sigterm_delivers_what_the_broker_already_sent_before_err_shutdown(mode: str) -> None:
    """The instance is frozen (SIGSTOP) while messages reach its Redis connection; it
    gets SIGTERM and SIGCONT together: every message comes before ERR shutdown."""
    url = require_redis()
    t, n = topic("drain"), 3000
    direct = redis.Redis.from_url(url)
    with Instance(url, mode) as inst:

        async def main() -> None:
            sub = await subscribe(inst.port, t)
            os.kill(inst.proc.pid, signal.SIGSTOP)
            try:
                pipe = direct.pipeline(transaction=False)
                for i in range(n):
                    if mode == "streams":
                        pipe.xadd(KEY_PREFIX + t, {"text": str(i)})
                    else:
                        pipe.publish(KEY_PREFIX + t, str(i))
                replies = pipe.execute()
                if mode == "pubsub":
                    assert all(r == 1 for r in replies)  # one subscriber: the instance
                os.kill(inst.proc.pid, signal.SIGTERM)
            finally:
                os.kill(inst.proc.pid, signal.SIGCONT)
            got = await recv_msgs(sub, n + 1)
            assert got == [f"MSG {t} {i}" for i in range(n)] + [
                "ERR shutdown server is shutting down"
            ]
            await sub.close()

        run(main)
        assert inst.wait() == 0
