"""Handlers that report on the serving process: ``--app probe_apps:NAME``."""

from __future__ import annotations

import asyncio
import os
import time


async def probe(message: str, conn: object) -> str:
    """``pid`` -> this process's pid; ``wait PATH`` -> replies ``released`` once PATH exists.

    ``wait`` keeps a message in flight for as long as the test wants, without the test
    guessing a duration: the test creates PATH when it is done looking.
    """
    if message.startswith("wait "):
        path = message[5:]
        while not os.path.exists(path):
            await asyncio.sleep(0.01)
        return "released"
    return str(os.getpid())


def sleepy(message: str, conn: object) -> str:
    """Blocks the event loop for 300 ms: the watchdog must name the next line."""
    time.sleep(0.3)  # BLOCKING-LINE
    return "slept"
