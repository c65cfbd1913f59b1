"""Rate limits: token buckets (pure, with a clock the test sets), and over real sockets
on both loops: a client over its budget is slowed, never refused and never loses a
message; an IP opening connections too fast is refused ERR busy, counted."""

from __future__ import annotations

import asyncio
import time

import pytest

from aiotcp.apps import Ack
from aiotcp.config import Config, ConfigError
from aiotcp.limits import TokenBucket, parse_rate
from aiotcp.server import Server
from support.clients import ACK, AsyncLineClient
from support.inprocess import RunServer


def test_a_bucket_owes_and_says_how_long_until_it_is_out_of_debt() -> None:
    b = TokenBucket(rate=10, burst=5, now=0.0)
    assert b.take(5, 0.0) == 0.0  # the burst
    assert b.take(5, 0.0) == pytest.approx(0.5)  # 5 tokens owed at 10/s
    assert b.take(0, 0.5) == 0.0
    assert b.take(0, 100.0) == 0.0 and b.tokens == 5  # never more than the burst
    assert b.full(100.0)


def test_admission_buckets_refuse_rather_than_owe() -> None:
    b = TokenBucket(rate=2, burst=2, now=0.0)
    assert [b.allows(0.0) for _ in range(3)] == [True, True, False]
    assert b.allows(0.5) and not b.allows(0.5)
    assert b.full(10.0)


@pytest.mark.parametrize(("spec", "parsed"), [("100", (100.0, 100.0)), ("50/5", (50.0, 5.0)),
                                               ("0", None), ("", None)])
def test_rate_specs(spec: str, parsed: tuple[float, float] | None) -> None:
    assert parse_rate(spec) == parsed


@pytest.mark.parametrize("spec", ["x", "10/0", "-5", "inf", "5/x"])
def test_bad_rate_specs_are_refused(spec: str) -> None:
    with pytest.raises(ConfigError, match="rate_limit"):
        Config(rate_limit=spec).validate()


async def debt_then_wait(port: int, first: str, n: int) -> tuple[list[str], float]:
    """Send ``first`` (``n`` messages) at once, read their replies, then one message more:
    its replies and how long that one waited."""
    c = await AsyncLineClient.connect(port)
    await c.send(first)
    got = await c.lines(n)
    loop = asyncio.get_running_loop()
    sent = loop.time()
    await c.send("after\n")
    got.append(await c.line())
    return got, loop.time() - sent


def test_messages_over_the_rate_are_slowed_not_lost(run_server: RunServer) -> None:
    """As Netty's traffic shaping: a read is handled whole (nothing is held back or
    lost); a client over its budget owes it, and reading pauses until it is paid."""
    rate, burst, n = 200, 20, 200

    async def client(server: Server, port: int) -> tuple[list[str], float]:
        return await debt_then_wait(port, "".join(f"m{i}\n" for i in range(n)), n)

    got, waited = run_server(Ack(), client, rate_limit=f"{rate}/{burst}")
    assert got == [f"{ACK}m{i}" for i in range(n)] + [ACK + "after"]  # all, in order
    owed = (n - burst) / rate  # 0.9 s; unlimited, the reply comes within milliseconds
    assert waited >= owed / 3, waited  # a generous lower bound: load only adds to it


def test_bytes_over_the_byte_rate_are_slowed_not_lost(run_server: RunServer) -> None:
    rate, line, n = 10_000, "x" * 99, 200  # 20 KB: a second over the one-second burst

    async def client(server: Server, port: int) -> tuple[list[str], float]:
        return await debt_then_wait(port, "".join(f"{line}\n" for _ in range(n)), n)

    got, waited = run_server(Ack(), client, byte_rate_limit=rate)
    assert got == [ACK + line] * n + [ACK + "after"]
    assert waited >= (n * 100 - rate) / rate / 3, waited


def test_an_ip_opening_connections_too_fast_is_refused_busy_and_counted(
    run_server: RunServer,
) -> None:
    async def client(server: Server, port: int) -> tuple[list[str], dict[str, int]]:
        firsts = []
        for _ in range(20):
            c = await AsyncLineClient.connect(port)
            await c.send("hi\n")
            firsts.append(await c.line())
            await c.close()
        return firsts, dict(server.stats.connections_refused)

    started = time.monotonic()
    firsts, refused = run_server(Ack(), client, max_connection_rate_per_ip=5)
    elapsed = time.monotonic() - started
    served = firsts.count(ACK + "hi")
    busy = [f for f in firsts if f.startswith("ERR busy too many new connections from 127.0.0.1")]
    assert served + len(busy) == 20
    assert served <= 5 + 5 * elapsed + 1, (served, elapsed)  # the burst, then 5/s
    assert refused == {"rate": len(busy)} and busy
