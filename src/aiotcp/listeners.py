"""Listening sockets, made by aiotcp rather than by the loop, so both loops get the same.

Binding here (not in ``loop.create_server(host, port)``) lets the server choose the
kernel's accept queue and the loop's accepts per turn separately: asyncio's selector
loop calls ``accept()`` up to ``backlog`` times per turn and, on EMFILE, keeps trying
for the rest of that count (logging and re-arming a retry timer each time), so a deep
backlog there turns fd exhaustion into tens of milliseconds of stall per turn for every
open connection.
"""

from __future__ import annotations

import socket

# The kernel's accept queue: a storm of a thousand connects must not overflow it (the
# kernel caps it at net.core.somaxconn).
LISTEN_BACKLOG = 4096

# accept() calls per loop turn on asyncio's selector loop (its own default is 100).
ASYNCIO_ACCEPTS_PER_TURN = 100

# With port 0 on several addresses, each later address must get the port the first one
# picked; another process may hold it on that family, so try a few times.
PORT_ATTEMPTS = 10


def bind_sockets(host: str, port: int, reuse_port: bool, listen: bool = True) -> list[socket.socket]:
    """Sockets bound to every address of ``host`` at one ``port`` (0 picks one for all).

    ``listen=False`` binds without listening (a supervisor claiming a port: connects are
    refused until a worker listens). Raises OSError if an address cannot be bound.
    """
    infos = socket.getaddrinfo(
        host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )
    addrs = list(dict.fromkeys((info[0], info[4]) for info in infos))
    for _attempt in range(PORT_ATTEMPTS):
        socks: list[socket.socket] = []
        chosen = port
        try:
            for family, sockaddr in addrs:
                sock = socket.socket(family, socket.SOCK_STREAM)
                socks.append(sock)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                if reuse_port:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
                if family == socket.AF_INET6:
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                sock.bind((sockaddr[0], chosen, *sockaddr[2:]))
                chosen = sock.getsockname()[1]
                if listen:
                    sock.listen(LISTEN_BACKLOG)
            return socks
        except OSError:
            for sock in socks:
                sock.close()
            if port != 0 or len(addrs) <= 1:
                raise
    raise OSError(f"could not find one free port on every address of {host!r}")
