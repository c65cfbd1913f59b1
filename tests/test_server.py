"""Protocol rules over real loopback sockets, on asyncio and on uvloop."""

from __future__ import annotations

import asyncio
import logging
import struct
import sys
import threading
from typing import Any

import pytest

import aiotcp
from aiotcp.apps import Ack
from aiotcp.server import Server
from support.clients import AsyncLineClient
from support.inprocess import RunServer
from support.waiting import wait_until_async


def test_ack_replies_like_the_seed(run_server: RunServer) -> None:
    async def client(server: Server, port: int) -> list[str]:
        c = await AsyncLineClient.connect(port)
        await c.send("你好\nworld\r\n")
        return await c.lines(2)

    assert run_server(Ack(), client) == ["已收到: 你好", "已收到: world"]


def test_ack_prefix_is_configurable(run_server: RunServer) -> None:
    async def client(server: Server, port: int) -> str:
        c = await AsyncLineClient.connect(port)
        await c.send("x\n")
        return await c.line()

    assert run_server(Ack("got "), client) == "got x"


def test_replies_in_order_when_pipelined(run_server: RunServer) -> None:
    n = 5000

    async def client(server: Server, port: int) -> list[str]:
        c = await AsyncLineClient.connect(port)
        await c.send("".join(f"m{i}\n" for i in range(n)))
        return await c.lines(n)

    assert run_server(Ack(), client) == [f"已收到: m{i}" for i in range(n)]


def test_empty_line_is_a_message(run_server: RunServer) -> None:
    async def client(server: Server, port: int) -> list[str]:
        c = await AsyncLineClient.connect(port)
        await c.send("\n\r\n")
        return await c.lines(2)

    assert run_server(Ack(), client) == ["已收到: ", "已收到: "]


def test_invalid_utf8_keeps_connection_open(run_server: RunServer) -> None:
    async def client(server: Server, port: int) -> list[str]:
        c = await AsyncLineClient.connect(port)
        await c.send(b"a\n\xff\xfe\nb\n")
        first = await c.lines(3)
        await c.send("c\n")
        return first + [await c.line()]

    assert run_server(Ack(), client) == [
        "已收到: a",
        "ERR invalid-utf8 message is not valid UTF-8",
        "已收到: b",
        "已收到: c",
    ]


def test_too_long_closes_after_acking_earlier(run_server: RunServer) -> None:
    async def client(server: Server, port: int) -> bytes:
        c = await AsyncLineClient.connect(port)
        await c.send(b"ok\n" + b"x" * 200 + b"\n")
        return await c.until_eof()

    out = run_server(Ack(), client, max_line=100)
    assert out == "已收到: ok\nERR too-long frame exceeds 100 bytes\n".encode()


def test_too_long_without_newline_is_rejected_before_it_ends(run_server: RunServer) -> None:
    async def client(server: Server, port: int) -> bytes:
        c = await AsyncLineClient.connect(port)
        await c.send(b"y" * 500)  # never a newline: the server must not wait for one
        return await c.until_eof()

    out = run_server(Ack(), client, max_line=100)
    assert out == b"ERR too-long frame exceeds 100 bytes\n"


def test_half_close_acks_complete_messages_then_closes(run_server: RunServer) -> None:
    async def client(server: Server, port: int) -> bytes:
        c = await AsyncLineClient.connect(port)
        await c.send(b"one\ntwo\npartial")
        c.writer.write_eof()
        return await c.until_eof()

    out = run_server(Ack(), client)
    assert out == "已收到: one\n已收到: two\n".encode()


def test_handler_that_raises_gets_err_internal_and_connection_goes_on(
    run_server: RunServer,
) -> None:
    def handle(message: str, conn: object) -> str:
        if message == "boom":
            raise RuntimeError("boom")
        return "ok " + message

    async def client(server: Server, port: int) -> list[str]:
        c = await AsyncLineClient.connect(port)
        await c.send("a\nboom\nb\n")
        first = await c.lines(3)
        await c.send("c\n")
        return first + [await c.line()]

    assert run_server(handle, client) == [
        "ok a",
        "ERR internal handler failed",
        "ok b",
        "ok c",
    ]


def test_handler_returning_none_sends_nothing(run_server: RunServer) -> None:
    def handle(message: str, conn: object) -> str | None:
        return None if message == "quiet" else message

    async def client(server: Server, port: int) -> list[str]:
        c = await AsyncLineClient.connect(port)
        await c.send("quiet\nloud\n")
        return await c.lines(1)

    assert run_server(handle, client) == ["loud"]


def test_async_handler_runs_in_order(run_server: RunServer) -> None:
    async def handle(message: str, conn: object) -> str:
        await asyncio.sleep(0.02 if message == "slow" else 0)
        return "done " + message

    async def client(server: Server, port: int) -> list[str]:
        c = await AsyncLineClient.connect(port)
        await c.send("slow\nfast\nslow\nfast\n")
        return await c.lines(4)

    assert run_server(handle, client) == [
        "done slow",
        "done fast",
        "done slow",
        "done fast",
    ]


def test_async_handler_raising_and_half_close(run_server: RunServer) -> None:
    async def handle(message: str, conn: object) -> str:
        await asyncio.sleep(0)
        if message == "boom":
            raise ValueError("boom")
        return message

    async def client(server: Server, port: int) -> bytes:
        c = await AsyncLineClient.connect(port)
        await c.send(b"a\nboom\n\xff\nb\n")
        c.writer.write_eof()
        return await c.until_eof()

    out = run_server(handle, client)
    assert out == (
        b"a\nERR internal handler failed\nERR invalid-utf8 message is not valid UTF-8\nb\n"
    )


def test_blocking_handler_runs_off_the_loop(run_server: RunServer) -> None:
    release = threading.Event()
    threads: list[str] = []

    @aiotcp.blocking
    def handle(message: str, conn: object) -> str:
        threads.append(threading.current_thread().name)
        if message == "wait":
            release.wait(10)  # a blocking call: the loop must keep serving meanwhile
        return "done " + message

    async def client(server: Server, port: int) -> list[str]:
        blocked = await AsyncLineClient.connect(port)
        await blocked.send("wait\n")
        other = await AsyncLineClient.connect(port)
        await other.send("quick\n")
        quick = await other.line()  # answered while the first handler is still blocked
        release.set()
        return [quick, await blocked.line()]

    assert run_server(handle, client) == ["done quick", "done wait"]
    assert threads and all(name.startswith("aiotcp-blocking") for name in threads)


def test_many_concurrent_clients(run_server: RunServer) -> None:
    n_clients, n_messages = 200, 20

    async def one(port: int, k: int) -> bool:
        c = await AsyncLineClient.connect(port)
        for i in range(n_messages):
            await c.send(f"{k}-{i}\n")
            if await c.line() != f"已收到: {k}-{i}":
                return False
        await c.close()
        return True

    async def client(server: Server, port: int) -> list[bool]:
        async with asyncio.TaskGroup() as tg:
            tasks = [tg.create_task(one(port, k)) for k in range(n_clients)]
        return [t.result() for t in tasks]

    assert all(run_server(Ack(), client))


def test_length_framing_over_the_wire(run_server: RunServer) -> None:
    def frame(s: str) -> bytes:
        b = s.encode()
        return struct.pack(">I", len(b)) + b

    async def client(server: Server, port: int) -> bytes:
        c = await AsyncLineClient.connect(port)
        await c.send(frame("你好") + frame("a\nb"))
        return await c.exactly(len(frame("已收到: 你好") + frame("已收到: a\nb")))

    out = run_server(Ack(), client, framing="length")
    assert out == frame("已收到: 你好") + frame("已收到: a\nb")


def test_raw_framing_is_seed_compatible(run_server: RunServer) -> None:
    async def client(server: Server, port: int) -> bytes:
        c = await AsyncLineClient.connect(port)
        await c.send("你好\n")
        return await c.exactly(len("已收到: 你好\n".encode()))

    assert run_server(Ack(), client, framing="raw") == "已收到: 你好\n".encode()


async def article(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """The article's coroutine, as written there (prints removed)."""
    while True:
        data = await reader.read(100)
        if not data:
            break
        writer.write(f"已收到: {data.decode()}".encode())
        await writer.drain()
    writer.close()


async def stubborn(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Ignores EOF: keeps the connection until cancelled."""
    writer.write(b"hello\n")
    await writer.drain()
    await asyncio.sleep(3600)


def test_streams_api_serves_the_articles_coroutine(run_server: RunServer) -> None:
    async def client(server: Server, port: int) -> tuple[str, int]:
        c = await AsyncLineClient.connect(port)
        await c.send("你好\n")
        line = await c.line()
        return line, server.stats.connections

    line, live = run_server(article, client, api="streams")
    assert line == "已收到: 你好"
    assert live == 1


def test_streams_api_drains_on_shutdown(
    run_server: RunServer, caplog: pytest.LogCaptureFixture
) -> None:
    closed = []

    async def handle_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(100):
            writer.write(data)
        closed.append(True)
        writer.close()

    async def client(server: Server, port: int) -> bytes:
        c = await AsyncLineClient.connect(port)
        await c.send("x\n")
        assert await c.line() == "x"
        await server.shutdown()  # the handler sees EOF and ends by itself
        return await c.until_eof()

    with caplog.at_level(logging.INFO, logger="aiotcp"):
        assert run_server(handle_client, client, api="streams", shutdown_timeout=20) == b""
    assert closed == [True]
    # It ended by itself: the drain never reached its deadline.
    assert "server stopped" in caplog.text
    assert "shutdown deadline passed" not in caplog.text


def test_shutdown_sends_err_shutdown_to_idle_clients(run_server: RunServer) -> None:
    async def client(server: Server, port: int) -> bytes:
        c = await AsyncLineClient.connect(port)
        await c.send("hi\n")
        assert await c.line() == "已收到: hi"
        await server.shutdown()
        return await c.until_eof()

    assert run_server(Ack(), client) == b"ERR shutdown server is shutting down\n"


def test_streams_api_counts_bytes_out(run_server: RunServer) -> None:
    async def client(server: Server, port: int) -> tuple[int, int]:
        c = await AsyncLineClient.connect(port)
        await c.send("你好")
        assert (await c.exactly(len("已收到: 你好".encode()))).decode() == "已收到: 你好"
        await c.close()
        await wait_until_async(lambda: not server.registry.members, what="the connection gone")
        return server.stats.bytes_sent, server.stats.bytes_received

    sent, received = run_server(article, client, api="streams", access_log=False)
    assert sent == len("已收到: 你好".encode())
    assert received == len("你好".encode())


@pytest.mark.parametrize("shutdown_timeout", [0.0, 1.5])
def test_streams_api_shutdown_with_a_coroutine_that_outlives_the_linger(
    run_server: RunServer, shutdown_timeout: float
) -> None:
    """The drain deadline aborts it; shutdown completes without raising."""
    servers: list[Server] = []

    async def client(server: Server, port: int) -> None:
        servers.append(server)
        c = await AsyncLineClient.connect(port)
        assert await c.line() == "hello"
        # Return with the connection open: shutdown finds the coroutine still running.

    run_server(stubborn, client, api="streams", access_log=False, shutdown_timeout=shutdown_timeout)
    assert len(servers[0].registry) == 0  # aborted at the deadline, and forgotten


# ---- defects of the lifecycle, each with its test ----------------------------------------


def eager_task_factory(loop: asyncio.AbstractEventLoop, coro: Any, **kwargs: Any) -> Any:
    """``asyncio.eager_task_factory``, also under uvloop 0.23 on Python 3.13, which passes
    the factory an ``eager_start=`` that 3.13's own factory refuses (uvloop#754)."""
    kwargs.pop("eager_start", None)
    return asyncio.Task(coro, loop=loop, eager_start=True, **kwargs)  # type: ignore[call-arg, unused-ignore]


@pytest.mark.skipif(sys.version_info < (3, 12), reason="eager tasks are Python 3.12+")
def test_queued_connections_serve_every_read_under_eager_tasks(run_server: RunServer) -> None:
    """An eager task can run to its end inside create_task: the connection must not then
    count it as still working (it used to wedge after its first read)."""

    async def handle(message: str, conn: object) -> str:
        return "已收到: " + message

    async def client(server: Server, port: int) -> list[str]:
        asyncio.get_running_loop().set_task_factory(eager_task_factory)
        c = await AsyncLineClient.connect(port)
        out = []
        for i in range(5):
            await c.send(f"m{i}\n")
            out.append(await c.line())
        return out

    assert run_server(handle, client) == [f"已收到: m{i}" for i in range(5)]


def test_blocking_calls_stuck_past_their_timeout_do_not_starve_the_next(
    run_server: RunServer,
) -> None:
    """Threads cannot be cancelled: a stuck call keeps its thread. Once as many are stuck
    as the pool has threads, new calls get a fresh pool instead of queueing behind them."""
    release = threading.Event()

    @aiotcp.blocking
    def handle(message: str, conn: object) -> str:
        if message == "stuck":
            release.wait(30)
        return "已收到: " + message

    async def client(server: Server, port: int) -> list[str]:
        c = await AsyncLineClient.connect(port)
        try:
            out = []
            for m in ("stuck", "stuck", "a"):
                await c.send(m + "\n")
                out.append(await c.line())
            return out
        finally:
            release.set()

    assert run_server(handle, client, threads=2, handler_timeout=0.3) == [
        "ERR timeout handler took over 0.3s", "ERR timeout handler took over 0.3s", "已收到: a",
    ]


def test_a_connection_busy_past_the_linger_still_ends_in_eof(run_server: RunServer) -> None:
    """It answers, says ERR shutdown and closes with FIN as soon as it settles: it does
    not wait for the client's EOF again, nor for the deadline's abort (a reset)."""
    go_on = asyncio.Event()

    async def handle(message: str, conn: object) -> str:
        await go_on.wait()
        return "已收到: " + message

    async def client(server: Server, port: int) -> tuple[bytes, str]:
        c = await AsyncLineClient.connect(port)
        await c.send("slow\n")
        await wait_until_async(lambda: server.registry.members
                               and server.registry.members[0].bytes_in == 5, what="the message")
        conn = server.registry.members[0]
        stopping = asyncio.ensure_future(server.shutdown())
        await wait_until_async(lambda: server.registry.linger_over, what="the linger's end")
        go_on.set()
        data = await c.until_eof()  # the socket stays open: the client never sends EOF
        await stopping
        await c.close()
        return data, conn.close_reason

    data, reason = run_server(handle, client, shutdown_timeout=25, access_log=False)
    assert data.decode().splitlines() == ["已收到: slow", "ERR shutdown server is shutting down"]
    assert reason == "shutdown"  # not "aborted" at the deadline


def test_a_failing_sweep_does_not_end_the_server_or_its_deadlines(
    run_server: RunServer, caplog: pytest.LogCaptureFixture
) -> None:
    async def client(server: Server, port: int) -> str:
        sweep = server.registry.sweep
        failures = [RuntimeError("a bug in one sweep")]

        def flaky(now: float) -> None:
            if failures:
                raise failures.pop()
            sweep(now)

        server.registry.sweep = flaky  # type: ignore[method-assign]
        c = await AsyncLineClient.connect(port)
        return await c.line()  # idle: the next sweeps still expire it

    assert run_server(Ack(), client, idle_timeout=0.3) == "ERR idle-timeout no complete message for 0.3s"
    assert "deadline sweep failed" in caplog.text
