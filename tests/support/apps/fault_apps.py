"""Handlers that are slow or fail on purpose: ``--app fault_apps:NAME``.

``slow``: async. ``sleep:S`` sleeps S seconds then acks; ``boom`` raises; anything else
is acked at once; each sleep is announced on stderr as ``fault_apps: sleeping for
sleep:S``. ``sync_boom``: the same ``boom`` behaviour for an inline sync handler.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

ACK = "已收到: "


class FaultAppError(RuntimeError):
    """Raised on purpose by the ``boom`` message."""


async def slow(message: str, conn: Any) -> str:
    if message.startswith("sleep:"):
        # Tests wait for this line to know the handler is busy (the log is the server's stderr).
        print(f"fault_apps: sleeping for {message}", file=sys.stderr, flush=True)
        await asyncio.sleep(float(message.split(":", 1)[1]))
    elif message == "boom":
        raise FaultAppError("boom on purpose")
    return ACK + message


def sync_boom(message: str, conn: Any) -> str:
    if message == "boom":
        raise FaultAppError("boom on purpose")
    return ACK + message
