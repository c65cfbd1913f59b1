"""App lifespans: up before the listener, down after the drain, failures as one line."""

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
from serverproc import ServerProcess

ACK = "已收到: "


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
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


def test_no_connection_is_accepted_before_startup_finished(tmp_path: Path) -> None:
    port = free_port()
    gate = tmp_path / "gate"
    with ServerProcess(["--app", "lifespan_apps:slow", "--port", str(port)],
                       env={"LIFESPAN_GATE": str(gate)}, wait=False) as server:
        server.wait_for("startup begins")
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=5).close()
        gate.touch()
        server.wait_for(f"listening on 127.0.0.1:{port}")
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.sendall("hi\n".encode())
            assert s.makefile(encoding="utf-8").readline() == ACK + "hi\n"
        server.proc.send_signal(signal.SIGTERM)
        assert server.wait() == 0
        log = server.log()
        assert log.index("startup done") < log.index("listening on") < log.index("lifespan_apps: shutdown")


def test_shutdown_runs_after_the_drain_even_when_forced() -> None:
    with ServerProcess(["--app", "lifespan_apps:app", "--shutdown-timeout", "30"]) as server:
        s = socket.create_connection(("127.0.0.1", server.port), timeout=5)
        s.sendall(b"a\n")
        assert s.makefile(encoding="utf-8").readline() == ACK + "a\n"
        server.proc.send_signal(signal.SIGTERM)
        server.wait_for("draining 1 connection")
        server.proc.send_signal(signal.SIGTERM)  # forced: abort the client that lingers
        assert server.wait() == 0
        log = server.log()
        assert "second stop request" in log
        assert log.index("draining") < log.index("lifespan_apps: shutdown")
        s.close()


def test_a_failing_startup_exits_1_with_one_line() -> None:
    with ServerProcess(["--app", "lifespan_apps:failing"], wait=False) as server:
        assert server.wait() == 1
        log = server.log()
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
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            loop = asyncio.get_running_loop()
            before = loop.get_exception_handler()
            server = Server(app, Config(port=taken.getsockname()[1]))
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
