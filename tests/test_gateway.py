"""The gateway app against real upstreams: a grpc.aio server and an aiohttp server.

Each message is one call; the answer is the reply, in message order; errors are one
``ERR`` line and the connection stays; ``--handler-timeout`` is the call's deadline; a
client that hangs up cancels its call at the upstream; ``--upstream-concurrency`` bounds
the calls in flight at the upstream. The upstreams run in a process of their own
(``support/upstream_server.py``); the gateway runs in the test's process, on both loops.
"""

from __future__ import annotations

import asyncio
from http import HTTPStatus
from typing import Any

import pytest

from aiotcp.server import Server
from aiotcp.testing import TestServer
from support.certs import Certs
from support.clients import AsyncLineClient
from support.upstreams import Upstream, new_key, run_gateway
from support.waiting import HANG_GUARD, wait_until_async

KINDS = ["grpc", "grpcs", "http", "https"]
PLAIN = ["grpc", "http"]


def tls(kind: str, certs: Certs) -> dict[str, Any]:
    """The settings a gateway needs to trust the test CA for a TLS kind."""
    return {"upstream_ca": str(certs.ca)} if kind.endswith("s") else {}


def fail_message(kind: str, key: str) -> tuple[str, str]:
    """A message the Fail method answers with an error status, and the reply expected."""
    if kind.startswith("grpc"):
        return f"{key} NOT_FOUND no such thing", "ERR upstream NOT_FOUND no such thing"
    return f"{key} 418 no such thing", f"ERR upstream 418 {HTTPStatus(418).phrase}"


@pytest.mark.parametrize("kind", KINDS)
def test_each_message_is_one_call_and_the_answers_are_the_replies_in_order(
    kind: str, upstream: Upstream, certs: Certs, run_server: Any
) -> None:
    key = new_key()
    messages = [f"{key} {i} 你好" for i in range(40)]

    async def check(server: Server, port: int) -> None:
        client = await AsyncLineClient.connect(port)
        await client.send("".join(m + "\n" for m in messages))
        assert await client.lines(len(messages)) == ["echo " + m for m in messages]
        await client.close()

    run_gateway(run_server, upstream.url(kind, "Echo"), check, handler_concurrency=4,
                **tls(kind, certs))
    assert upstream.stats(key)["calls"] == len(messages)


@pytest.mark.parametrize("kind", PLAIN)
@pytest.mark.parametrize("method, framing, reply", [
    ("Fail", "line", None),  # an error status: ERR upstream <status> <why>
    ("Lines", "line", "ERR upstream-bad-reply reply has a line break"),
    ("Lines", "length", "{key}\na\nb\n"),  # a frame may hold line breaks
])
def test_an_answer_that_is_no_reply_is_one_err_line_and_the_connection_stays(
    kind: str, method: str, framing: str, reply: str | None, upstream: Upstream,
    run_server: Any,
) -> None:
    key = new_key()
    if method == "Fail":
        message, reply = fail_message(kind, key)
    else:
        message, reply = f"{key} a b", reply.format(key=key)  # type: ignore[union-attr]
    code = reply.split()[1] if reply.startswith("ERR ") else None

    async def check(server: Server, port: int) -> None:
        async with TestServer(server).client() as client:
            assert [await client.request(message) for _ in range(2)] == [reply, reply]
        if code is not None:
            assert server.stats.errors.get(code) == 2

    run_gateway(run_server, upstream.url(kind, method), check, framing=framing)
    assert upstream.stats(key)["calls"] == 2


def test_one_trailing_line_end_of_an_answer_is_dropped_in_line_framing(
    upstream: Upstream, run_server: Any
) -> None:
    key = new_key()

    async def check(server: Server, port: int) -> None:
        client = await AsyncLineClient.connect(port)
        await client.send(f"{key}\n")
        assert await client.line() == key  # the Lines method answered "KEY\n"
        await client.close()

    run_gateway(run_server, upstream.url("http", "Lines"), check)


@pytest.mark.parametrize("kind", PLAIN)
def test_the_handler_timeout_is_the_calls_deadline_and_the_upstream_sees_it_end(
    kind: str, upstream: Upstream, run_server: Any
) -> None:
    key = new_key()

    async def check(server: Server, port: int) -> None:
        client = await AsyncLineClient.connect(port)
        await client.send(f"{key} 60\n")
        assert await client.line() == "ERR timeout handler took over 0.5s"
        await wait_until_async(lambda: upstream.stats(key)["cancelled"] == 1,
                               what="the upstream seeing the late call cancelled")
        seen = upstream.stats(key)
        assert seen["in_flight"] == 0
        if kind == "grpc":  # the deadline travels with the call; grpc-timeout is sent
            # rounded up to its unit, so the upstream can see a hair over 0.5 s
            assert seen["deadline"] is not None and 0 < seen["deadline"] <= 0.55, seen
        assert server.stats.errors.get("timeout") == 1
        await client.close()

    run_gateway(run_server, upstream.url(kind, "Slow"), check, handler_timeout=0.5)


# The core cancels the handler tasks of a client that leaves for every connection kind;
# each row is one kind (concurrency 1 is the sequential kind, 4 the queued one).
@pytest.mark.parametrize("concurrency", [1, 4])
@pytest.mark.parametrize("kind", PLAIN)
def test_a_client_that_hangs_up_cancels_its_calls_at_the_upstream(
    kind: str, concurrency: int, upstream: Upstream, run_server: Any
) -> None:
    key = new_key()
    calls = concurrency  # one call in flight per place the connection has
    # A call not cancelled ends by itself after this (the test then fails, in bounded time).
    seconds = HANG_GUARD / 2

    async def check(server: Server, port: int) -> None:
        client = await AsyncLineClient.connect(port)
        await client.send(f"{key} {seconds}\n" * calls)
        await wait_until_async(lambda: upstream.stats(key)["in_flight"] == calls,
                               what=f"{calls} call(s) in flight at the upstream")
        client.reset()
        await wait_until_async(lambda: upstream.stats(key)["in_flight"] == 0,
                               what="the calls ending at the upstream")
        assert upstream.stats(key)["cancelled"] == calls, "the calls ran to their end"

    run_gateway(run_server, upstream.url(kind, "Slow"), check,
                handler_concurrency=concurrency)


@pytest.mark.parametrize("kind", PLAIN)
def test_upstream_concurrency_bounds_the_calls_in_flight_per_process(
    kind: str, upstream: Upstream, run_server: Any
) -> None:
    key = new_key()
    clients, each = 10, 6

    async def one(port: int, i: int) -> None:
        client = await AsyncLineClient.connect(port)
        messages = [f"{key} 0.02 {i}.{j}" for j in range(each)]
        await client.send("".join(m + "\n" for m in messages))
        assert await client.lines(each) == ["slow " + m for m in messages]
        await client.close()

    async def check(server: Server, port: int) -> None:
        await asyncio.gather(*(one(port, i) for i in range(clients)))

    run_gateway(run_server, upstream.url(kind, "Slow"), check,
                upstream_concurrency=2, handler_concurrency=4)
    seen = upstream.stats(key)
    assert seen["calls"] == clients * each
    # 40 calls could be in flight at once (10 clients x 4); the process lets 2 through
    assert seen["max_in_flight"] == 2, seen


@pytest.mark.parametrize("kind", PLAIN)
def test_shutdown_lets_calls_in_flight_finish_before_err_shutdown(
    kind: str, upstream: Upstream, run_server: Any
) -> None:
    key = new_key()

    async def check(server: Server, port: int) -> None:
        client = await AsyncLineClient.connect(port)
        await client.send(f"{key} 0.2\n")
        await wait_until_async(lambda: upstream.stats(key)["in_flight"] == 1,
                               what="the call in flight at the upstream")
        stopping = asyncio.create_task(server.shutdown())  # what SIGTERM starts
        assert await client.line() == f"slow {key} 0.2"
        assert (await client.line()).startswith("ERR shutdown")
        assert await client.until_eof() == b""
        await stopping
        await client.close()

    run_gateway(run_server, upstream.url(kind, "Slow"), check)
    assert upstream.stats(key)["cancelled"] == 0



@pytest.mark.parametrize("kind", PLAIN)
def test_binary_messages_go_as_bytes_values_and_octet_streams(
    kind: str, upstream: Upstream, run_server: Any
) -> None:
    """With --binary the message is bytes end to end: a gRPC BytesValue (the same wire
    format as StringValue, so the echo upstream answers it) or an HTTP octet stream."""
    key = new_key()

    async def check(server: Server, port: int) -> None:
        async with TestServer(server).client() as client:
            assert await client.request(f"{key} 你好".encode()) == f"echo {key} 你好".encode()

    run_gateway(run_server, upstream.url(kind, "Echo"), check, binary=True)
    assert upstream.stats(key)["calls"] == 1


@pytest.mark.parametrize("kind", PLAIN)
def test_binary_error_replies_come_from_the_clients_codec(
    kind: str, upstream: Upstream, run_server: Any
) -> None:
    key = new_key()
    message, reply = fail_message(kind, key)

    async def check(server: Server, port: int) -> None:
        async with TestServer(server).client() as client:
            assert await client.request(message.encode()) == reply.encode()

    run_gateway(run_server, upstream.url(kind, "Fail"), check, binary=True)
