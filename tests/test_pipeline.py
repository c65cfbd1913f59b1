"""The queued path (async and blocking handlers): bounded, ordered, concurrent.

Served in-process on a real loopback port with ``aiotcp.testing``, on both loops.
"""

from __future__ import annotations

import asyncio
import socket
import time
from typing import Any

import pytest

import aiotcp
from aiotcp.testing import TestServer, run
from support.clients import ACK
from support.waiting import HANG_GUARD, wait_until_async

LINES = 1_000_000


class Tracking:
    """An async handler that sleeps and records how many calls overlap."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.running = 0
        self.most = 0
        self.calls = 0

    async def __call__(self, message: str, conn: Any) -> str:
        self.calls += 1
        self.running += 1
        self.most = max(self.most, self.running)
        try:
            await asyncio.sleep(self.delay)
        finally:
            self.running -= 1
        return ACK + message


def test_concurrency_runs_n_at_once_and_replies_in_order(loop: str) -> None:
    handler = Tracking(0.01)

    async def check(server: TestServer) -> list[str]:
        async with server.client() as c:
            await c.send(*[str(i) for i in range(1000)])
            return [await c.recv() for _ in range(1000)]

    replies = run(handler, check, loop=loop, handler_concurrency=16)
    assert replies == [ACK + str(i) for i in range(1000)]
    assert handler.most == 16  # never more, and it did reach 16


def test_concurrency_one_is_sequential(loop: str) -> None:
    handler = Tracking(0.001)

    async def check(server: TestServer) -> list[str]:
        async with server.client() as c:
            await c.send(*[str(i) for i in range(50)])
            return [await c.recv() for _ in range(50)]

    assert run(handler, check, loop=loop) == [ACK + str(i) for i in range(50)]
    assert handler.most == 1


def test_a_pipelining_client_is_paused_at_max_pipeline(loop: str) -> None:
    """A client sending far more than the handler answers: the server stops reading."""
    gate = asyncio.Event()
    seen: list[int] = []

    async def slow(message: str, conn: Any) -> str:
        seen.append(int(message))
        await gate.wait()
        return ACK + message

    async def check(server: TestServer) -> tuple[int, int, int]:
        sock = socket.create_connection((server.host, server.port))
        sock.setblocking(False)
        await wait_until_async(lambda: server.server.registry.members, what="the connection")
        payload = b"".join(b"%d\n" % i for i in range(LINES))
        sent = 0
        # Write until the kernel buffers are full: the server must have stopped reading.
        deadline = time.monotonic() + HANG_GUARD
        stalled = 0
        while sent < len(payload) and time.monotonic() < deadline and stalled < 20:
            try:
                sent += sock.send(payload[sent : sent + 65536])
                stalled = 0
            except BlockingIOError:
                stalled += 1
                await asyncio.sleep(0.02)
        conn: Any = server.server.registry.members[0]
        queued = conn._pipe.unanswered if conn._pipe is not None else 0
        started = len(seen)
        gate.set()
        sock.close()
        return sent, queued, started

    sent, queued, started = run(slow, check, loop=loop, max_pipeline=64)
    assert sent < len(b"".join(b"%d\n" % i for i in range(LINES)))  # reading paused
    # Unanswered messages stay within one read of the bound, however much was sent.
    assert queued < 64 + 65536 // 2, queued
    assert started == 1  # concurrency 1: one message was started


def test_reading_resumes_below_half_and_everything_is_answered(loop: str) -> None:
    async def quick(message: str, conn: Any) -> str:
        await asyncio.sleep(0)
        return ACK + message

    async def check(server: TestServer) -> list[str]:
        async with server.client() as c:
            await c.send(*[str(i) for i in range(5000)])
            return [await c.recv() for _ in range(5000)]

    assert run(quick, check, loop=loop, max_pipeline=8) == [ACK + str(i) for i in range(5000)]


def test_async_batch_handles_a_read_in_one_call(loop: str) -> None:
    class Batched:
        def __init__(self) -> None:
            self.sizes: list[int] = []

        async def __call__(self, message: str, conn: Any) -> str:
            raise AssertionError("batch is used")

        async def batch(self, messages: list[str], conn: Any) -> list[str | None]:
            self.sizes.append(len(messages))
            await asyncio.sleep(0)
            return [None if m == "quiet" else ACK + m for m in messages]

    handler = Batched()

    async def check(server: TestServer) -> list[str]:
        async with server.client() as c:
            await c.send("a", "quiet", "b", "c")
            return [await c.recv() for _ in range(3)]

    assert run(handler, check, loop=loop) == [ACK + "a", ACK + "b", ACK + "c"]
    assert sum(handler.sizes) == 4 and len(handler.sizes) < 4


def test_blocking_handlers_run_concurrently_in_threads(loop: str) -> None:
    import threading

    lock = threading.Lock()
    state = {"running": 0, "most": 0}

    @aiotcp.blocking
    def work(message: str, conn: Any) -> str:
        with lock:
            state["running"] += 1
            state["most"] = max(state["most"], state["running"])
        time.sleep(0.02)
        with lock:
            state["running"] -= 1
        return ACK + message

    async def check(server: TestServer) -> list[str]:
        async with server.client() as c:
            await c.send(*[str(i) for i in range(40)])
            return [await c.recv() for _ in range(40)]

    replies = run(work, check, loop=loop, handler_concurrency=4, threads=8)
    assert replies == [ACK + str(i) for i in range(40)]
    assert state["most"] == 4


def test_close_from_an_async_handler_answers_what_started(loop: str) -> None:
    async def closer(message: str, conn: Any) -> str:
        if message == "bye":
            conn.close()
        return ACK + message

    async def check(server: TestServer) -> bytes:
        reader, writer = await asyncio.open_connection(server.host, server.port)
        writer.write(b"a\nbye\nlater\n")
        data = await asyncio.wait_for(reader.read(), HANG_GUARD)
        writer.close()
        return data

    out = run(closer, check, loop=loop).decode().splitlines()
    assert out == [ACK + "a", ACK + "bye"]


@pytest.mark.parametrize("concurrency", [1, 4])
def test_frame_errors_keep_their_place_in_reply_order(loop: str, concurrency: int) -> None:
    async def quick(message: str, conn: Any) -> str:
        await asyncio.sleep(0)
        return ACK + message

    async def check(server: TestServer) -> list[str]:
        async with server.client() as c:
            c.writer.write(b"a\n\xff\nb\n")
            return [await c.recv() for _ in range(3)]

    replies = run(quick, check, loop=loop, handler_concurrency=concurrency)
    assert replies[0] == ACK + "a"
    assert replies[1].startswith("ERR invalid-utf8 ")
    assert replies[2] == ACK + "b"
