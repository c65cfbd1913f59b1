"""How long a pubsub instance takes to notice a silent partition from Redis, and to recover.

Redis runs in a network namespace of its own (``tests/support/netns.py``, so this needs
root and iproute2); one instance here reaches it over a veth link. Each round: a PUB
acked, the link set down (silent: no FIN, no RST), a PUB sent into the silence; it
measures when ``/readyz`` turns 503, when that PUB is answered (``ERR unavailable``),
how long a PUB sent then takes, and, after the link is back, when ``/readyz`` is 200
again. Prints one line per mode and timeout and writes ``results/partition.json``
(``--out``), stamped (``aiotcp.bench.stamp``).

    .venv/bin/python benchmarks/partition.py [--timeouts 1 3] [--modes pubsub streams] [--rounds 3]
    .venv/bin/python benchmarks/partition.py --smoke --out /tmp/partition.json   # seconds
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))  # the namespace harness of the tests

from aiotcp.bench.scripts import parse, parser, write_result
from aiotcp.bench.stamp import Recorder
from support.netns import hosts
from support.pubsub import Instance, connect

POLL = 0.02  # how often /readyz is read: the resolution of the figures
#: --smoke: one round of one mode at the shortest timeout.
SMOKE = {"timeouts": ["1"], "modes": ["pubsub"], "rounds": 1}


async def one_round(inst: Instance, link: Any) -> dict[str, float]:
    while inst.ready() != 200:
        await asyncio.sleep(POLL)
    pub = await connect(inst.port)
    assert (await pub.request("PUB bench a")).startswith("已收到")
    await asyncio.sleep(0.5)  # a heartbeat or two in between
    link.partition()
    cut = time.monotonic()
    await pub.send("PUB bench b")
    answer = asyncio.create_task(pub.recv(60))
    not_ready = answered = None
    while not_ready is None or answered is None:
        now = time.monotonic() - cut
        if not_ready is None and inst.ready() == 503:
            not_ready = now
        if answered is None and answer.done():
            answered = now
            assert answer.result().startswith("ERR unavailable"), answer.result()
        await asyncio.sleep(POLL)
    start = time.monotonic()
    assert (await pub.request("PUB bench c", 60)).startswith("ERR unavailable")
    while_down = time.monotonic() - start
    link.heal()
    healed = time.monotonic()
    while inst.ready() != 200:
        await asyncio.sleep(POLL)
    ready_again = time.monotonic() - healed
    await pub.close()
    return {"readyz_503_s": not_ready, "pub_in_flight_s": answered,
            "pub_while_down_s": while_down, "ready_after_heal_s": ready_again}


def main() -> None:
    p = parser(__doc__, str(HERE / "results" / "partition.json"))
    p.add_argument("--timeouts", nargs="+", default=["1", "3"],
                   help="--broker-timeout values, seconds (default 1 3)")
    p.add_argument("--modes", nargs="+", default=["pubsub", "streams"],
                   choices=["pubsub", "streams"], help="pubsub app modes (default both)")
    p.add_argument("--rounds", type=int, default=3, help="partitions per mode and timeout")
    args = parse(p, SMOKE)
    recorder = Recorder(" ".join(sys.argv))
    results = []
    for mode in args.modes:
        for timeout in args.timeouts:
            rounds = []
            with hosts() as made:
                host = made.host()
                link = host.link()
                redis = host.redis_server()
                with Instance(redis.url(), mode, "--broker-timeout", timeout) as inst:
                    for _ in range(args.rounds):
                        rounds.append(asyncio.run(one_round(inst, link)))
            worst = {k: max(r[k] for r in rounds) for k in rounds[0]}
            median = {k: statistics.median(r[k] for r in rounds) for k in rounds[0]}
            results.append({"mode": mode, "broker_timeout": float(timeout), "rounds": rounds,
                            "median": median, "max": worst})
            print(f"{mode:7} --broker-timeout {timeout}: " + ", ".join(
                f"{k} median {median[k]:.2f} max {worst[k]:.2f}" for k in median))
    write_result(args.out, {"settings": {"rounds": args.rounds}, "runs": results}, recorder)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
