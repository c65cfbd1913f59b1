"""Apps with lifespans: ``--app lifespan_apps:NAME``.

Each lifespan step is announced on stderr, so a test reads the order of events from
the server's log.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import aiotcp


def say(text: str) -> None:
    print(f"lifespan_apps: {text}", file=sys.stderr, flush=True)


app = aiotcp.App()


@app.lifespan
async def pool(state: aiotcp.State) -> Any:
    state.greeting = "已收到: "
    say("startup")
    yield
    say("shutdown")


@app.handler
async def handle(message: str, conn: Any) -> str:
    return app.state.greeting + message


failing = aiotcp.App(handle)


@failing.lifespan
async def broken(state: aiotcp.State) -> Any:
    raise ConnectionRefusedError(111, "connect to 127.0.0.1:1 refused")
    yield


slow = aiotcp.App()


@slow.handler
async def handle_slow(message: str, conn: Any) -> str:
    return slow.state.greeting + message


@slow.lifespan
async def waits_for_a_file(state: aiotcp.State) -> Any:
    """Startup finishes only once the file named by LIFESPAN_GATE exists."""
    import asyncio

    state.greeting = "已收到: "
    say("startup begins")
    gate = os.environ["LIFESPAN_GATE"]
    while not os.path.exists(gate):
        await asyncio.sleep(0.02)
    say("startup done")
    yield
    say("shutdown")
