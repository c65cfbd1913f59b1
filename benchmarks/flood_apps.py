"""The handler benchmarks/pipeline_flood.py serves: an async handler that sleeps 10 ms."""

import asyncio
from typing import Any


async def sleepy(message: str, conn: Any) -> str:
    await asyncio.sleep(0.01)
    return "已收到: " + message
