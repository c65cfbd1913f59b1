"""Three pubsub instances behind a real HAProxy (TCP, roundrobin, /readyz health checks),
sharing the machine's Redis: fan-out across instances, order, and losing an instance."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pytest

from aiotcp.testing import Client
from support.pubsub import (
    HAProxy,
    Instance,
    connect,
    haproxy,
    recv_msgs,
    require_redis,
    subscribe,
    topic,
)
from support.waiting import run_within as run

N_INSTANCES = 3


@contextlib.contextmanager
def cluster(mode: str) -> Iterator[tuple[HAProxy, list[Instance]]]:
    url = require_redis()
    with contextlib.ExitStack() as stack:
        nodes = [stack.enter_context(Instance(url, mode)) for _ in range(N_INSTANCES)]
        lb = stack.enter_context(haproxy([(n.port, n.metrics_port) for n in nodes]))
        for i in range(N_INSTANCES):
            lb.wait_status(f"s{i}", "UP")
        yield lb, nodes


def connections(nodes: list[Instance]) -> list[float]:
    return [n.metric("aiotcp_connections") for n in nodes]


async def spread_subscribers(lb: HAProxy, nodes: list[Instance], t: str, per_node: int
                             ) -> list[Client]:
    """Subscribers through HAProxy; roundrobin puts ``per_node`` on each instance."""
    subs = [await subscribe(lb.port, t) for _ in range(per_node * len(nodes))]
    assert connections(nodes) == [per_node] * len(nodes)
    return subs


def in_order_per_publisher(lines: list[str], t: str, publishers: int, each: int) -> bool:
    """``lines`` hold each publisher's ``each`` messages, each publisher's in its order."""
    if len(lines) != publishers * each:
        return False
    for p in range(publishers):
        mine = [x for x in lines if x.startswith(f"MSG {t} p{p}-")]
        if mine != [f"MSG {t} p{p}-{i}" for i in range(each)]:
            return False
    return True


@pytest.mark.parametrize("mode", ["pubsub", "streams"])
def test_every_subscriber_gets_every_message_published_through_any_instance(mode: str) -> None:
    t, each = topic(f"fan-{mode}"), 200
    with cluster(mode) as (lb, nodes):

        async def main() -> None:
            subs = await spread_subscribers(lb, nodes, t, per_node=1)
            pubs = [await connect(n.port) for n in nodes]  # one publisher on each instance
            for p, pub in enumerate(pubs):
                await pub.send(*(f"PUB {t} p{p}-{i}" for i in range(each)))
            for p, pub in enumerate(pubs):
                assert await recv_msgs(pub, each) == [f"已收到: p{p}-{i}" for i in range(each)]
            for s in subs:
                got = await recv_msgs(s, each * len(pubs))
                assert in_order_per_publisher(got, t, len(pubs), each), got[:10]
            for c in subs + pubs:
                await c.close()

        run(main)


def test_killing_an_instance_moves_its_clients_and_leaves_the_others_alone() -> None:
    t, batch = topic("kill"), 100
    with cluster("pubsub") as (lb, nodes):

        async def main() -> None:
            subs = await spread_subscribers(lb, nodes, t, per_node=2)
            pub = await connect(nodes[1].port)
            seq = 0

            async def publish(count: int) -> None:
                nonlocal seq
                await pub.send(*(f"PUB {t} p0-{seq + i}" for i in range(count)))
                assert len(await recv_msgs(pub, count)) == count
                seq += count

            await publish(batch)
            for s in subs:
                assert await recv_msgs(s, batch) == [f"MSG {t} p0-{i}" for i in range(batch)]
            nodes[0].kill()  # SIGKILL
            await publish(batch)  # while HAProxy still thinks it is up
            victims, others = [], []
            for s in subs:
                try:
                    got = await recv_msgs(s, batch, timeout=5)
                except (EOFError, ConnectionError):
                    victims.append(s)
                else:
                    assert got == [f"MSG {t} p0-{i}" for i in range(batch, 2 * batch)]
                    others.append(s)
            assert len(victims) == 2 and len(others) == 4
            # The victims come back through HAProxy: it sends them to the live instances.
            moved = [await subscribe(lb.port, t) for _ in victims]
            lb.wait_status("s0", "DOWN")
            assert sum(connections(nodes[1:])) == 4 + 2 + 1  # others, moved, the publisher
            await publish(batch)
            for s in others:
                assert await recv_msgs(s, batch) == [
                    f"MSG {t} p0-{i}" for i in range(2 * batch, 3 * batch)
                ]
            for s in moved:
                assert await recv_msgs(s, batch) == [
                    f"MSG {t} p0-{i}" for i in range(2 * batch, 3 * batch)
                ]
            assert all(n.proc.poll() is None for n in nodes[1:])
            for c in [*others, *moved, pub]:
                await c.close()
            for c in victims:
                await c.close()

        run(main)
