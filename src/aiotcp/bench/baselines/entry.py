"""Command-line plumbing shared by the baseline servers: flags, the ready line, SIGTERM.

Kept apart from the servers so each baseline file shows only its serving style.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from collections.abc import Callable, Coroutine
from types import FrameType
from typing import Any

#: The reply prefix every baseline uses (the article's).
PREFIX = "已收到: ".encode()


def parse_args(prog: str, framings: tuple[str, ...] = ()) -> argparse.Namespace:
    """Parse ``--host`` (default 127.0.0.1) and ``--port`` (default 8888) from sys.argv,
    and ``--framing`` (the first of ``framings`` by default) for a server that has several."""
    parser = argparse.ArgumentParser(prog=prog)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8888)
    parser.add_argument("--backlog", type=int, default=1024, help="listen backlog")
    if framings:
        parser.add_argument("--framing", choices=framings, default=framings[0])
    return parser.parse_args()


def announce(sockname: tuple[object, ...]) -> None:
    """Print ``listening on HOST:PORT`` to stderr, the line compare and tests wait for."""
    print(f"listening on {sockname[0]}:{sockname[1]}", file=sys.stderr, flush=True)


def _raise_exit(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)


def exit_on_sigterm() -> None:
    """Make SIGTERM raise ``SystemExit(0)`` in the main thread (clean exit, status 0)."""
    signal.signal(signal.SIGTERM, _raise_exit)


async def until_signalled() -> None:
    """Return once SIGTERM or SIGINT arrives (loop signal handlers work on asyncio and uvloop).

    The loop's own handlers wake it through its self-pipe: a ``signal.signal`` handler
    that lands just before the loop blocks in epoll would wait for the next event.
    """
    loop = asyncio.get_running_loop()
    stop: asyncio.Future[None] = loop.create_future()

    def on_signal() -> None:
        if not stop.done():
            stop.set_result(None)

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal)
    await stop


def run_until_signalled(main: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """``asyncio.run(main())`` until SIGTERM or SIGINT, which cancel it; then return."""

    async def serve() -> None:
        task = asyncio.ensure_future(main())
        await until_signalled()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    asyncio.run(serve())
