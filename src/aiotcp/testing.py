"""Test your app on a real loopback port: ``aiotcp.testing``.

An async context manager starts an app (its lifespan included) on 127.0.0.1 at a free
port and hands the test a client; leaving it drains and shuts the server down::

    from aiotcp.testing import serve_app

    async def test_ack():
        async with serve_app(app) as server, server.client() as client:
            assert await client.request("你好") == "已收到: 你好"

For tests without an async plugin, :func:`run` drives the same on a fresh loop, and the
pytest fixture ``aiotcp_run`` (registered by installing aiotcp) is that function::

    def test_ack(aiotcp_run):
        async def check(server):
            async with server.client() as client:
                assert await client.request("hi") == "已收到: hi"
        aiotcp_run(app, check)
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from aiotcp.config import Config
from aiotcp.server import Server

LENGTH = struct.Struct(">I")

# A test that waits longer than this for a reply has hung: fail rather than block CI.
REPLY_TIMEOUT = 10.0
RUN_TIMEOUT = 60.0


class Client:
    """A client of an aiotcp server in line or length framing."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 framing: str) -> None:
        if framing not in ("line", "length"):
            raise ValueError("the test client speaks line and length framing")
        self.reader = reader
        self.writer = writer
        self.framing = framing

    async def send(self, *messages: str) -> None:
        """Send each message as one frame, in one write."""
        if self.framing == "line":
            data = "".join(m + "\n" for m in messages).encode()
        else:
            data = b"".join(LENGTH.pack(len(b)) + b for b in (m.encode() for m in messages))
        self.writer.write(data)
        await self.writer.drain()

    async def recv(self, timeout: float = REPLY_TIMEOUT) -> str:
        """The next reply frame, decoded. Raises EOFError if the server closed first."""
        async with asyncio.timeout(timeout):
            if self.framing == "line":
                raw = await self.reader.readline()
                if not raw.endswith(b"\n"):
                    raise EOFError("the server closed the connection")
                return raw[:-1].decode()
            try:
                (n,) = LENGTH.unpack(await self.reader.readexactly(4))
                return (await self.reader.readexactly(n)).decode()
            except asyncio.IncompleteReadError:
                raise EOFError("the server closed the connection") from None

    async def request(self, message: str, timeout: float = REPLY_TIMEOUT) -> str:
        """Send one message and return its reply."""
        await self.send(message)
        return await self.recv(timeout)

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError):
            await self.writer.wait_closed()

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


class TestServer:
    """A started server: its ``port``, and ``client()`` to connect to it."""

    __test__ = False  # not a pytest test class

    def __init__(self, server: Server) -> None:
        self.server = server
        self.host, self.port = server.addresses[0][:2]

    def client(self) -> contextlib.AbstractAsyncContextManager[Client]:
        """``async with server.client() as c``: a connected client, closed on exit."""

        @contextlib.asynccontextmanager
        async def connect() -> AsyncIterator[Client]:
            reader, writer = await asyncio.open_connection(self.host, self.port)
            client = Client(reader, writer, self.server.config.framing)
            try:
                yield client
            finally:
                await client.close()

        return connect()


@contextlib.asynccontextmanager
async def serve_app(app: Any, /, **settings: Any) -> AsyncIterator[TestServer]:
    """Serve ``app`` (an App or a handler) on 127.0.0.1 at a free port.

    ``settings`` are Config fields. On exit the server drains and stops, and the app's
    lifespan exits.
    """
    settings.setdefault("host", "127.0.0.1")
    settings.setdefault("port", 0)
    server = Server(app, Config(**settings))
    await server.start()
    try:
        yield TestServer(server)
    finally:
        await server.shutdown()


def run(app: Any, check: Callable[[TestServer], Awaitable[Any]], /, **settings: Any) -> Any:
    """Serve ``app``, await ``check(server)``, shut down; return what ``check`` returned.

    Runs on a fresh event loop (``loop="asyncio"`` or ``"uvloop"`` among ``settings``
    chooses which), bounded by RUN_TIMEOUT seconds.
    """
    from aiotcp.runner import loop_factory

    config = Config(**settings)

    async def main() -> Any:
        async with asyncio.timeout(RUN_TIMEOUT), serve_app(app, **settings) as server:
            return await check(server)

    with asyncio.Runner(loop_factory=loop_factory(config)) as runner:
        return runner.run(main())


try:
    import pytest
except ImportError:  # pytest is not needed to use the context manager
    pass
else:

    @pytest.fixture
    def aiotcp_run() -> Callable[..., Any]:
        """:func:`run`: serve an app on loopback and drive it from a sync test."""
        return run
