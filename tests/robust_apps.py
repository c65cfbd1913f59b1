"""Handlers for the fault suite, served with ``--app robust_apps:NAME`` (tests/ on PYTHONPATH).

``slow``: async. ``sleep:S`` sleeps S seconds then acks; ``boom`` raises; anything else
is acked at once. ``sync_boom``: the same ``boom`` behaviour for an inline sync handler.
"""

from __future__ import annotations

import asyncio
from typing import Any

ACK = "已收到: "


class RobustAppError(RuntimeError):
    """Raised on purpose by the ``boom`` message."""


async def slow(message: str, conn: Any) -> str:
    if message.startswith("sleep:"):
        await asyncio.sleep(float(message.split(":", 1)[1]))
    elif message == "boom":
        raise RobustAppError("boom on purpose")
    return ACK + message


def sync_boom(message: str, conn: Any) -> str:
    if message == "boom":
        raise RobustAppError("boom on purpose")
    return ACK + message
