"""Shared fixtures: run an in-process server on either event loop, talk to it over loopback."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from aiotcp.config import Config
from aiotcp.runner import loop_factory
from aiotcp.server import Server

LOOPS = ["asyncio", "uvloop"]


@pytest.fixture(params=LOOPS)
def loop_kind(request: pytest.FixtureRequest) -> str:
    """Every integration test that takes this fixture runs once on each loop."""
    return str(request.param)


def run_server(
    loop_kind: str,
    handler: Any,
    client: Callable[[Server, int], Awaitable[Any]],
    **settings: Any,
) -> Any:
    """Start ``handler`` on 127.0.0.1:0, await ``client(server, port)``, shut down.

    Returns what the client returned. The whole run is bounded by 30 s.
    """
    config = Config(host="127.0.0.1", port=0, loop=loop_kind, **settings)

    async def main() -> Any:
        async with asyncio.timeout(30):
            server = Server(handler, config)
            await server.start()
            try:
                return await client(server, server.addresses[0][1])
            finally:
                await server.shutdown()

    with asyncio.Runner(loop_factory=loop_factory(config)) as runner:
        return runner.run(main())


class Client:
    """A line-protocol client over a real socket (asyncio streams)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def connect(cls, port: int) -> Client:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        return cls(reader, writer)

    async def send(self, data: bytes | str) -> None:
        self.writer.write(data.encode() if isinstance(data, str) else data)
        await self.writer.drain()

    async def line(self, timeout: float = 5.0) -> str:
        """The next reply line without its newline; '' at EOF."""
        async with asyncio.timeout(timeout):
            raw = await self.reader.readline()
        return raw.decode().removesuffix("\n")

    async def lines(self, n: int, timeout: float = 5.0) -> list[str]:
        return [await self.line(timeout) for _ in range(n)]

    async def until_eof(self, timeout: float = 5.0) -> bytes:
        async with asyncio.timeout(timeout):
            return await self.reader.read()

    async def close(self) -> None:
        self.writer.close()
        try:
            await self.writer.wait_closed()
        except ConnectionError:
            pass
