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
import collections
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from aiotcp.codecs import make_codec
from aiotcp.config import Config
from aiotcp.server import Server

# A test that waits longer than this for a reply has hung: fail rather than block CI.
REPLY_TIMEOUT = 10.0
# The largest reply the client takes (a reply longer is a broken server).
MAX_REPLY = 16 * 1024 * 1024
RUN_TIMEOUT = 60.0


class Client:
    """A client of an aiotcp server that speaks the server's codec.

    It encodes what it sends with ``codec.encode`` and decodes what it receives with
    ``codec.feed``: right for every framing whose requests and replies are framed alike
    (the built-in framings, and user codecs such as a netstring or varint codec). A
    protocol whose two directions differ (RESP) is best tested with its own client.
    """

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 codec: Any) -> None:
        if isinstance(codec, str):  # a framing's name
            codec = make_codec(codec, MAX_REPLY)
        self.reader = reader
        self.writer = writer
        self.codec = codec
        self._ready: collections.deque[Any] = collections.deque()

    async def send(self, *messages: Any) -> None:
        """Send each message as one frame, in one write."""
        self.writer.write(self.codec.encode(list(messages)))
        await self.writer.drain()

    async def recv(self, timeout: float = REPLY_TIMEOUT) -> Any:
        """The next reply, decoded. Raises EOFError if the server closed first."""
        async with asyncio.timeout(timeout):
            while not self._ready:
                data = await self.reader.read(65536)
                if not data:
                    raise EOFError("the server closed the connection")
                self._ready.extend(self.codec.feed(data))
        return self._ready.popleft()

    async def request(self, message: Any, timeout: float = REPLY_TIMEOUT) -> Any:
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
            client = Client(reader, writer, self.server.codec_factory(MAX_REPLY))
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
