"""An ``async def`` handler or batch is a coroutine in a real task, whichever way it starts.

On Python 3.12+ handler tasks start eagerly (their first step runs inside the read that
brought the message), so one that returns without suspending costs no loop turn; one
that suspends continues as a normal task. Either way, inside the handler
``asyncio.current_task()``, ``asyncio.timeout()``, context variables, cancellation and
``--handler-timeout`` behave as in any task, and replies keep their order. One table:
each behaviour x (async handle, async batch) x both loops (the ``run_server`` fixture).
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from aiotcp.config import Config
from aiotcp.dispatch import EAGER_START
from aiotcp.server import Server
from support.clients import AsyncLineClient
from support.fakes import FakeTransport

RunServer = Callable[..., Any]
VAR: contextvars.ContextVar[str] = contextvars.ContextVar("VAR", default="unset")


class Behaviours:
    """One handler for every row: what it does depends on the message."""

    def __init__(self) -> None:
        self.cancelled = asyncio.Event()
        self.started = asyncio.Event()

    async def one(self, message: str, conn: Any) -> str:
        verb, _, arg = message.partition(" ")
        if verb == "task":  # a real Task runs the handler, the same before and after a suspension
            before = asyncio.current_task()
            await asyncio.sleep(0)
            after = asyncio.current_task()
            return f"task {isinstance(before, asyncio.Task)} {before is after}"
        if verb == "timeout":  # asyncio.timeout() works from the first step on
            try:
                async with asyncio.timeout(0.01):
                    await asyncio.sleep(10)
            except TimeoutError:
                return "timed-out"
            return "not-timed-out"
        if verb == "set":
            VAR.set(arg)
            await asyncio.sleep(0)
            return "var " + VAR.get()
        if verb == "get":
            return "var " + VAR.get()
        if verb == "hang":  # until cancelled
            self.started.set()
            try:
                await asyncio.sleep(30)
            except asyncio.CancelledError:
                self.cancelled.set()
                raise
            return "not-cancelled"
        if verb == "was-cancelled":
            await asyncio.wait_for(self.cancelled.wait(), 5)
            return "cancelled"
        if verb == "slow":
            await asyncio.sleep(float(arg))
            return "slow " + arg
        return "echo " + message


class AsyncHandle(Behaviours):
    async def __call__(self, message: str, conn: Any) -> str:
        return await self.one(message, conn)


class AsyncBatch(Behaviours):
    async def batch(self, messages: list[str], conn: Any) -> list[str]:
        return [await self.one(m, conn) for m in messages]


KINDS = {"async-handle": AsyncHandle, "async-batch": AsyncBatch}


async def _say(port: int, *lines: str) -> list[str]:
    c = await AsyncLineClient.connect(port)
    await c.send("".join(line + "\n" for line in lines))
    return await c.lines(len(lines))


async def current_task(server: Server, port: int) -> Any:
    return await _say(port, "task")


async def timeout_inside(server: Server, port: int) -> Any:
    return await _say(port, "timeout")


async def context_is_the_tasks_own(server: Server, port: int) -> Any:
    # A value set by a handler is not seen by another connection's handler.
    first = await _say(port, "set a")
    return first + await _say(port, "get")


async def client_leaving_cancels(server: Server, port: int) -> Any:
    c = await AsyncLineClient.connect(port)
    await c.send("hang\n")
    handler = server.handler
    await asyncio.wait_for(handler.started.wait(), 5)
    c.reset()  # an RST: the client is gone (a FIN would still be answered)
    return await _say(port, "was-cancelled")


async def handler_timeout(server: Server, port: int) -> Any:
    return await _say(port, "slow 5")


async def order_kept(server: Server, port: int) -> Any:
    return await _say(port, "slow 0.05", "echo b", "slow 0", "echo d")


ROWS: dict[str, tuple[Callable[[Server, int], Awaitable[Any]], dict[str, Any], Any]] = {
    "current_task": (current_task, {}, ["task True True"]),
    "asyncio.timeout": (timeout_inside, {}, ["timed-out"]),
    "contextvars": (context_is_the_tasks_own, {}, ["var a", "var unset"]),
    "cancellation": (client_leaving_cancels, {}, ["cancelled"]),
    "handler-timeout": (handler_timeout, {"handler_timeout": 0.05}, None),
    "order": (
        order_kept, {"handler_concurrency": 4},
        ["slow 0.05", "echo echo b", "slow 0", "echo echo d"],
    ),
}


@pytest.mark.parametrize("row", list(ROWS))
@pytest.mark.parametrize("kind", list(KINDS))
def test_async_handlers_behave_as_in_any_task(run_server: RunServer, kind: str, row: str) -> None:
    client, settings, want = ROWS[row]
    got = run_server(KINDS[kind](), client, access_log=False, **settings)
    if row == "handler-timeout":
        assert len(got) == 1 and got[0].startswith("ERR timeout"), got
    else:
        assert got == want


@pytest.mark.parametrize("kind", list(KINDS))
def test_a_handler_that_returns_at_once_answers_within_the_read_on_eager_pythons(
    kind: str,
) -> None:
    """3.12+: the reply is written by ``data_received`` itself, no loop turn later; on
    3.11 (no eager tasks) it leaves on the next turn. Either way it leaves once."""

    async def main() -> tuple[list[bytes], list[bytes]]:
        server = Server(KINDS[kind](), Config(access_log=False))
        server.dispatch.start()
        conn = server.connection_class()
        t = FakeTransport()
        t.connect(conn)
        conn.data_received(b"a\nb\n")
        within = list(t.writes)
        for _ in range(5):
            await asyncio.sleep(0)
        await server.dispatch.wait()
        return within, t.writes

    within, after = asyncio.run(main())
    assert b"".join(after) == b"echo a\necho b\n"
    assert len(after) == 1
    assert within == (after if EAGER_START else [])


def test_the_apps_own_task_factory_makes_the_handler_tasks(run_server: RunServer) -> None:
    """A task factory the app sets (tracing, a Task subclass) sees every handler task."""
    made: list[str] = []  # the names of the coroutines it made tasks of

    def factory(loop: asyncio.AbstractEventLoop, coro: Any, **kwargs: Any) -> Any:
        kwargs.pop("eager_start", None)  # what uvloop passes on 3.13 (see test_server.py)
        made.append(str(getattr(coro, "__qualname__", "")))
        return asyncio.Task(coro, loop=loop, **kwargs)

    async def client(server: Server, port: int) -> list[str]:
        asyncio.get_running_loop().set_task_factory(factory)
        replies = await _say(port, "task", "echo")
        runs = [name for name in made if name.endswith("._guard")]  # Dispatch.spawn's
        return [*replies, f"{len(runs)} handler task(s) made by the factory"]

    assert run_server(AsyncHandle(), client, access_log=False) == [
        "task True True", "echo echo", "1 handler task(s) made by the factory"]
