"""The ingest app across a partition from its PostgreSQL (a private cluster in a network
namespace, ``support.netns``): no ack without a commit, ``ERR unavailable`` within
``--store-timeout`` (not after a socket or driver timeout), and recovery once healed.
As in ``test_partition``, the bound is the feature: the deadline is the timeout plus
BOUND_SLACK."""

from __future__ import annotations

import asyncio
import time
import uuid

from support.netns import Hosts
from support.process import ServerProcess
from support.pubsub import connect
from support.services import execute
from support.waiting import run_within as run

STORE_TIMEOUT = 2.0
BOUND_SLACK = 1.0  # a loaded machine's scheduling: less than the timeout, so one timeout after
# another (a message queued behind a failing commit, retried alone) is past it
ACK = "已收到: "


def test_ingest_across_a_partition_from_postgres(netns: Hosts) -> None:
    host = netns.host()
    link = host.link()
    pg = host.postgres(link)
    url = pg.url(f"t_{uuid.uuid4().hex[:10]}")
    acked: list[str] = []
    with ServerProcess(["--app", "ingest", "--store", url,
                        "--store-timeout", f"{STORE_TIMEOUT:g}"]) as inst:

        async def main() -> None:
            c, other = await connect(inst.port), await connect(inst.port)
            assert await c.request("before") == ACK + "before"
            acked.append("before")
            link.partition()
            cut = time.monotonic()
            # One commit into the silence, another client's message queued behind it:
            # both answered within the bound, not one timeout after the other.
            await c.send("during-1")
            await asyncio.sleep(0.1)  # so that it is the one in flight (not a wait for an event)
            await other.send("during-2")
            for client in (c, other):
                left = max(0.05, cut + STORE_TIMEOUT + BOUND_SLACK - time.monotonic())
                reply = await client.recv(left)
                assert reply.startswith("ERR unavailable "), reply
            await other.close()
            link.heal()
            # Recovers by itself: the next batch reconnects.
            deadline = time.monotonic() + 30
            while True:
                reply = await c.request("after")
                if reply == ACK + "after":
                    acked.append("after")
                    break
                assert reply.startswith("ERR unavailable "), reply
                assert time.monotonic() < deadline, "never recovered"
                await asyncio.sleep(0.2)
            await c.close()

        run(main)
    stored = [body for (body,) in execute(url, f"SELECT body FROM {url.rsplit('=', 1)[1]}")]
    # No ack without a commit: every acked message is there. (An unacked one may be too:
    # ERR unavailable does not prove it was not stored; its bytes may arrive after heal.)
    assert set(acked) <= set(stored), (acked, stored)
    assert set(stored) <= {"before", "during-1", "during-2", "after"}
