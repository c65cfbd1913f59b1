"""A Server in this process, on a chosen event loop, on 127.0.0.1 port 0."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from aiotcp.config import Config
from aiotcp.runner import loop_factory
from aiotcp.server import Server

from .waiting import HANG_GUARD

T = TypeVar("T")


def run_server(
    loop: str,
    handler: Any,
    client: Callable[[Server, int], Awaitable[T]],
    **settings: Any,
) -> T:
    """Start ``handler`` with ``Config(**settings)`` on a new ``loop`` ("asyncio" or
    "uvloop"), await ``client(server, port)``, shut the server down.

    Returns what the client returned. The whole run is bounded by ``HANG_GUARD``.
    """
    config = Config(host="127.0.0.1", port=0, loop=loop, **settings)

    async def main() -> T:
        async with asyncio.timeout(HANG_GUARD):
            server = Server(handler, config)
            await server.start()
            try:
                return await client(server, server.addresses[0][1])
            finally:
                await server.shutdown()

    with asyncio.Runner(loop_factory=loop_factory(config)) as runner:
        return runner.run(main())


# The ``run_server`` fixture: ``run_server(handler, client, **settings)`` on its loop.
RunServer = Callable[..., Any]
