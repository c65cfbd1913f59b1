"""Loopback ports for flags that need a number: one free right now, one held by a listener."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager


def free_port() -> int:
    """A loopback port free right now (``--metrics-port`` needs a number; 0 means off)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def taken_port() -> Iterator[int]:
    """A loopback port with a listener on it for the duration of the block."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield int(s.getsockname()[1])
