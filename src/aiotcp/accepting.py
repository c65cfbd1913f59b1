"""Accepting from the listening sockets, and not accepting while a worker has no room.

Every worker of ``aiotcp serve --workers N`` accepts from one queue per listener that all
workers share (see :mod:`aiotcp.workers`). A worker at its connection cap that kept
accepting would take connections from that queue only to refuse them (``ERR busy``),
while other workers had room; one at its fd limit does worse: libuv (uvloop) answers
EMFILE by accepting and closing what waits in the queue. So a worker on a shared queue
stops accepting at its *pause point* (its cap or its fd limit, whichever is lower, less
:data:`ACCEPT_SLACK`) and leaves the queue to the workers with room, and accepts again
once it is :data:`RESUME_GAP` below it: nginx turns its accept events off while a worker
is short of free connections, and gunicorn's threaded worker stops accepting at
``worker_connections``. When every worker is full, connections wait in the queue. A
server alone on its sockets never stops: no one else would take the connection, so over
its cap it refuses with ``ERR busy`` at once (and over its fd limit the loop's own
EMFILE handling applies).

Neither loop can pause a listener, so not accepting is closing the loop's server on a
duplicate of the socket (:meth:`Acceptor.pause`); the socket itself and its queue stay
open, and :meth:`Acceptor.resume` serves a new duplicate.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable

log = logging.getLogger("aiotcp")

# Connections accepted in one loop turn are made (and counted) on the next, so a worker
# accepts a few past the moment it decides to stop: asyncio's selector loop up to its
# accepts per turn, uvloop what is queued. The pause point is this far below the cap so
# that what comes in that turn still has a place. Never more than a sixteenth of the cap.
ACCEPT_SLACK = 256
# Resume this far below the pause point (at least one place): pause high, resume low.
RESUME_GAP_DIVISOR = 64

ProtocolFactory = Callable[[], asyncio.Protocol]


def pause_points(cap: int) -> tuple[int, int]:
    """(stop accepting at this many connections, accept again at this many) for ``cap``."""
    pause_at = max(1, cap - min(ACCEPT_SLACK, cap // 16))
    return pause_at, max(0, pause_at - max(1, pause_at // RESUME_GAP_DIVISOR))


class Acceptor:
    """The loop's servers on ``socks``; :meth:`pause` and :meth:`resume` when ``shared``.

    ``accepts`` is the backlog given to the loop (asyncio's selector loop accepts that
    many per turn); the kernel's queue is set back to ``backlog`` after each start.
    """

    def __init__(
        self, factory: ProtocolFactory, socks: list[socket.socket], accepts: int, backlog: int,
        shared: bool,
    ) -> None:  # fmt: skip
        self.factory = factory
        self.socks = socks
        self.accepts = accepts
        self.backlog = backlog
        self.shared = shared
        self.servers: list[asyncio.AbstractServer] = []
        self._closing: list[asyncio.AbstractServer] = []  # closed by close(), to wait for
        self.paused = False
        self.closed = False
        self.pauses = 0
        self._resuming: asyncio.Task[None] | None = None

    @property
    def serving(self) -> bool:
        """True from :meth:`start` until :meth:`close` (paused or not)."""
        return bool(self.socks) and not self.closed and (self.paused or bool(self.servers))

    async def start(self) -> None:
        """Serve every socket. Raises OSError, having closed what it started."""
        try:
            await self._serve()
        except BaseException:
            self.close()
            raise

    async def _serve(self) -> None:
        loop = asyncio.get_running_loop()
        for sock in self.socks:
            # Shared: the loop's server owns a duplicate, so closing it keeps the queue.
            served = sock.dup() if self.shared else sock
            try:
                server = await loop.create_server(self.factory, sock=served, backlog=self.accepts)
            except BaseException:
                if served is not sock:
                    served.close()
                raise
            sock.listen(self.backlog)  # the loop's listen() used ``accepts``
            self.servers.append(server)

    def pause(self) -> None:
        """Stop accepting (idempotent); what is queued stays for the other workers."""
        if self.paused or self.closed or not self.shared:
            return
        self.paused = True
        self.pauses += 1
        if self.pauses == 1:
            log.info("at the connection limit: not accepting until connections close "
                     "(the other workers take new ones)")  # fmt: skip
        self._close_servers()

    def resume(self) -> None:
        """Accept again (idempotent), on a task: the loop's server is made by a coroutine."""
        if not self.paused or self.closed:
            return
        self.paused = False
        if self._resuming is None or self._resuming.done():
            self._resuming = asyncio.get_running_loop().create_task(self._resume())

    async def _resume(self) -> None:
        while not self.paused and not self.closed and not self.servers:
            try:
                await self._serve()
            except OSError as e:  # out of fds for the duplicate: try again shortly
                self._close_servers()
                log.warning("cannot accept again yet: %s", e.strerror or e)
                await asyncio.sleep(0.1)
                continue
            if self.paused or self.closed:  # paused again while it started
                self._close_servers()

    def _close_servers(self) -> None:
        servers, self.servers = self.servers, []
        for server in servers:
            server.close()

    def close(self) -> None:
        """Stop accepting for good (shutdown); closes the sockets too."""
        if self.closed:
            return
        self.closed = True
        self._closing = list(self.servers)
        self._close_servers()
        if self.shared:
            for sock in self.socks:
                sock.close()

    async def wait_closed(self) -> None:
        """Wait for the servers :meth:`close` closed."""
        if self._resuming is not None:
            await asyncio.gather(self._resuming, return_exceptions=True)
        for server in self._closing:
            await server.wait_closed()
