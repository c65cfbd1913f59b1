"""TCP keepalive: a client that vanished without a FIN or RST is found by the kernel.

Set on the listening sockets; Linux gives accepted sockets the listener's keepalive
options, so a connection costs no extra system call. A peer that stops answering is
reset after ``idle + interval * count`` seconds of silence, and the connection's
``connection_lost`` frees its place: this is what finds a pub/sub subscriber (spared
the idle timeout, as Redis spares its pub/sub clients) behind a partition.

The default is Redis's (``tcp-keepalive 300``, probes every idle/3 seconds, 3 of
them): 600 s at most to find a dead peer.
"""

from __future__ import annotations

import socket

DEFAULT_KEEPALIVE = "300"
# Redis probes every idle / 3 seconds and gives up after 3 unanswered probes.
PROBE_DIVISOR = 3
DEFAULT_PROBES = 3


def parse_keepalive(spec: str) -> tuple[int, int, int] | None:
    """``IDLE[,INTERVAL,COUNT]`` (seconds, seconds, probes) -> the three; ``0``/``off`` -> None.

    Raises ValueError with a readable message for anything else.
    """
    text = spec.strip().lower()
    if text in ("0", "off", "no", "false", ""):
        return None
    parts = [p.strip() for p in text.split(",")]
    if len(parts) not in (1, 3) or not all(p.isdigit() for p in parts):
        raise ValueError(f"must be IDLE or IDLE,INTERVAL,COUNT in whole seconds, or 0, not {spec!r}")
    nums = [int(p) for p in parts]
    idle = nums[0]
    interval, count = (nums[1], nums[2]) if len(nums) == 3 else (
        max(1, idle // PROBE_DIVISOR), DEFAULT_PROBES)
    if idle < 1 or interval < 1 or count < 1:
        raise ValueError(f"every part must be at least 1, not {spec!r}")
    return idle, interval, count


def set_keepalive(sock: socket.socket, spec: str) -> None:
    """Apply ``spec`` to a TCP socket (listening or connected); other sockets are left."""
    if sock.family not in (socket.AF_INET, socket.AF_INET6):
        return
    values = parse_keepalive(spec)
    if values is None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 0)
        return
    idle, interval, count = values
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    if hasattr(socket, "TCP_KEEPIDLE"):  # Linux; macOS names it TCP_KEEPALIVE
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, idle)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, interval)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, count)
