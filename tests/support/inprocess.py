"""A Server in this process, on a chosen event loop, on 127.0.0.1 port 0.

Built on ``aiotcp.testing.serve_app`` (what users test their apps with), so the suite
starts an in-process server the one way a user would.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from aiotcp.config import Config
from aiotcp.runner import loop_factory
from aiotcp.server import Server
from aiotcp.testing import serve_app

from .waiting import HANG_GUARD

T = TypeVar("T")


def run_server(
    loop: str,
    handler: Any,
    client: Callable[[Server, int], Awaitable[T]],
    **settings: Any,
) -> T:
    """Serve ``handler`` with ``Config(**settings)`` on a new ``loop`` ("asyncio" or
    "uvloop"), await ``client(server, port)``, then drain and shut the server down.

    Returns what the client returned. The whole run is bounded by ``HANG_GUARD``.
    """
    settings.update(host="127.0.0.1", port=0, loop=loop)

    async def main() -> T:
        async with asyncio.timeout(HANG_GUARD), serve_app(handler, **settings) as served:
            return await client(served.server, served.port)

    with asyncio.Runner(loop_factory=loop_factory(Config(**settings))) as runner:
        return runner.run(main())


# The ``run_server`` fixture: ``run_server(handler, client, **settings)`` on its loop.
RunServer = Callable[..., Any]
