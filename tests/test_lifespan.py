"""App lifespans: up before the listener, down after the drain, failures as one line.

In-process and as a served process, on both loops."""

from __future__ import annotations

import asyncio
import signal
import socket
from pathlib import Path
from typing import Any

import pytest

import aiotcp
from aiotcp.config import Config
from aiotcp.server import Server
from aiotcp.testing import TestServer, run
from support.clients import ACK, LineClient
from support.ports import free_port, taken_port
from support.process import SpawnServer


def test_lifespan_runs_around_serving(loop: str) -> None:
    events: list[str] = []
    app = aiotcp.App()

    @app.lifespan
    async def first(state: aiotcp.State) -> Any:
        events.append("first up")
        state.n = 1
        yield
        events.append("first down")

    @app.lifespan
    async def second(state: aiotcp.State) -> Any:
        events.append("second up")
        yield
        events.append("second down")

    @app.handler
    def handle(message: str, conn: Any) -> str:
        events.append("handled")
        return f"{message}:{app.state.n}"

    async def check(server: TestServer) -> str:
        async with server.client() as c:
            return await c.request("x")

    assert run(app, check, loop=loop) == "x:1"
    assert events == ["first up", "second up", "handled", "second down", "first down"]


def test_no_connection_is_accepted_before_startup_finished(
    tmp_path: Path, spawn_server: SpawnServer
) -> None:
    port = free_port()
    gate = tmp_path / "gate"
    server = spawn_server(
        ["--app", "lifespan_apps:slow", "--port", str(port)],
        env={"LIFESPAN_GATE": str(gate)},
        listening=False,
    )
    server.wait_for_log("startup begins")
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port)).close()
    gate.touch()
    assert server.wait_listening() == port
    with LineClient(port) as c:
        assert c.ask("hi") == ACK + "hi"
    assert server.stop() == 0
    log = server.log
    assert (
        log.index("startup done") < log.index("listening on") < log.index("lifespan_apps: shutdown")
    )


def test_shutdown_runs_after_the_drain_even_when_forced(spawn_server: SpawnServer) -> None:
    server = spawn_server(["--app", "lifespan_apps:app", "--shutdown-timeout", "600"])
    c = LineClient(server.port)
    assert c.ask("a") == ACK + "a"
    server.signal(signal.SIGTERM)
    server.wait_for_log("draining 1 connection")
    server.signal(signal.SIGTERM)  # forced: abort the client that lingers
    assert server.wait() == 0
    log = server.log
    assert "second stop request" in log
    assert log.index("draining") < log.index("lifespan_apps: shutdown")
    c.close()


def test_a_failing_startup_exits_1_with_one_line(spawn_server: SpawnServer) -> None:
    server = spawn_server(["--app", "lifespan_apps:failing"], listening=False)
    assert server.wait() == 1
    log = server.log
    assert "startup failed: broken: ConnectionRefusedError" in log
    assert "Traceback" not in log
    assert "listening on" not in log


def test_start_that_fails_undoes_what_it_started() -> None:
    """Address taken: the lifespan exits, the loop's exception handler is restored."""
    events: list[str] = []
    app = aiotcp.App(lambda m, c: m)

    @app.lifespan
    async def life(state: aiotcp.State) -> Any:
        events.append("up")
        yield
        events.append("down")

    async def main() -> None:
        with taken_port() as port:
            loop = asyncio.get_running_loop()
            before = loop.get_exception_handler()
            server = Server(app, Config(port=port))
            with pytest.raises(OSError):
                await server.start()
            assert loop.get_exception_handler() is before
            assert not server.ready
            await server.shutdown()  # a no-op after a failed start

    asyncio.run(main())
    assert events == ["up", "down"]


def test_a_lifespan_must_be_an_async_generator() -> None:
    app = aiotcp.App()
    with pytest.raises(TypeError):
        app.lifespan(lambda state: None)  # type: ignore[arg-type,return-value]
