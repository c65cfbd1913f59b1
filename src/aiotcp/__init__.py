"""aiotcp: high-performance TCP services on Python's asyncio.

Write a message handler; aiotcp gives it framing, backpressure, limits, timeouts,
graceful shutdown, workers, metrics and a blocked-loop detector::

    import aiotcp

    def handle(message: str, conn) -> str:
        return "已收到: " + message

    aiotcp.serve(handle, host="127.0.0.1", port=8888)
"""

from __future__ import annotations

from typing import Any

from aiotcp.app import App, State, blocking
from aiotcp.apps import Ack, Echo
from aiotcp.codecs import Codec, FrameError, ProtocolError
from aiotcp.config import Config
from aiotcp.core import connection as _connection
from aiotcp.observe.stats import Stats
from aiotcp.server import Server

__all__ = [
    "Ack", "App", "Codec", "Config", "Connection", "Echo", "FrameError", "ProtocolError",
    "Server", "State", "Stats", "blocking", "serve",
]
Connection = _connection.Connection  # of the core that runs (compiled or pure)
__version__ = "0.1.0"


def serve(handler: Any, **settings: Any) -> int:
    """Serve ``handler`` (or an :class:`App`) until SIGINT/SIGTERM, then drain.

    Returns the exit code (0 after a clean drain).

    ``settings`` are Config fields (``host``, ``port``, ``framing``, ``idle_timeout``...).
    With ``api="streams"`` the handler is a ``handle_client(reader, writer)`` coroutine.
    """
    from aiotcp.runner import run

    return run(Config(**settings).validate(), handler)
