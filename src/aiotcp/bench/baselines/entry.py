"""Command-line plumbing shared by the baseline servers: flags, the ready line, SIGTERM.

Kept apart from the servers so each baseline file shows only its serving style.
"""

from __future__ import annotations

import argparse
import signal
import sys
from types import FrameType

#: The reply prefix every baseline uses (the article's).
PREFIX = "已收到: ".encode()


def parse_args(prog: str) -> argparse.Namespace:
    """Parse ``--host`` (default 127.0.0.1) and ``--port`` (default 8888) from sys.argv."""
    parser = argparse.ArgumentParser(prog=prog)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8888)
    parser.add_argument("--backlog", type=int, default=1024, help="listen backlog")
    return parser.parse_args()


def announce(sockname: tuple[object, ...]) -> None:
    """Print ``listening on HOST:PORT`` to stderr, the line compare and tests wait for."""
    print(f"listening on {sockname[0]}:{sockname[1]}", file=sys.stderr, flush=True)


def _raise_exit(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)


def exit_on_sigterm() -> None:
    """Make SIGTERM raise ``SystemExit(0)`` in the main thread (clean exit, status 0)."""
    signal.signal(signal.SIGTERM, _raise_exit)
