"""``--api streams``: the article's coroutine inside the server's limits and lifecycle."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from aiotcp.config import Config
from aiotcp.server import Server


async def article(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
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


def serve(handler: Any, loop: str, client: Any, **settings: Any) -> Any:
    from aiotcp.runner import loop_factory

    config = Config(host="127.0.0.1", port=0, api="streams", loop=loop, access_log=False,
                    **settings)

    async def main() -> Any:
        async with asyncio.timeout(30):
            server = Server(handler, config)
            await server.start()
            try:
                return await client(server)
            finally:
                await server.shutdown()

    with asyncio.Runner(loop_factory=loop_factory(config)) as runner:
        return runner.run(main())


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_bytes_out_are_counted(loop: str) -> None:
    async def client(server: Server) -> tuple[int, int]:
        reader, writer = await asyncio.open_connection(*server.addresses[0])
        writer.write("你好".encode())
        reply = await reader.readexactly(len("已收到: 你好".encode()))
        assert reply.decode() == "已收到: 你好"
        writer.close()
        while server.registry.members:
            await asyncio.sleep(0.01)
        return server.stats.bytes_sent, server.stats.bytes_received

    sent, received = serve(article, loop, client)
    assert sent == len("已收到: 你好".encode())
    assert received == len("你好".encode())


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
@pytest.mark.parametrize("shutdown_timeout", [0.0, 1.5])
def test_shutdown_with_a_coroutine_that_outlives_the_linger(loop: str, shutdown_timeout: float) -> None:
    """The drain deadline aborts it; shutdown completes without raising."""

    servers: list[Server] = []

    async def client(server: Server) -> None:
        servers.append(server)
        reader, writer = await asyncio.open_connection(*server.addresses[0])
        assert await reader.readline() == b"hello\n"
        # Return with the connection open: shutdown finds the coroutine still running.

    serve(stubborn, loop, client, shutdown_timeout=shutdown_timeout)
    assert len(servers[0].registry) == 0  # aborted at the deadline, and forgotten
