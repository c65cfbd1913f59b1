"""What every front-door connection of one server shares: settings, the TLS context,
handshake deadlines, counters and a rate-limited log of rejections.

Deadlines cost one timer per server, not one per connection: every connection gets the
same handshake timeout, so accept order is deadline order and a deque holds them; one
``call_at`` waits for the oldest.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

from aiotcp.config import Config
from aiotcp.frontdoor.context import ServerContext
from aiotcp.frontdoor.proxyproto import TIMEOUT

log = logging.getLogger("aiotcp")

# At most this many rejections are logged per interval (a scan or a misconfigured
# proxy makes thousands); the rest are counted and summed up in the next line logged.
REJECTIONS_LOGGED_PER_INTERVAL = 5
LOG_INTERVAL = 10.0


class Stats(Protocol):
    """The counters the front door bumps (aiotcp.observe.stats.Stats has them)."""

    proxy_rejected: dict[str, int]
    handshake_timeouts: int
    tls_handshake_failures: int


class Admission(Protocol):
    """The connection caps (the server's registry): a place per connection from accept."""

    max_per_ip: int

    def hold(self, ip: str | None) -> tuple[str, str] | None:
        """Take a place for a connection from ``ip`` (None: not known yet), or refuse."""
        ...

    def release(self, ip: str | None) -> None: ...


class Pending(Protocol):
    """A connection still reading its PROXY header or in its TLS handshake."""

    @property
    def in_handshake(self) -> bool: ...

    def handshake_expired(self) -> None: ...

    def abort(self) -> None: ...


Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class Gate:
    """Per-server front-door state. ``reload()`` re-reads the TLS certificate."""

    def __init__(
        self,
        inner_factory: Callable[[], asyncio.Protocol],
        config: Config,
        stats: Stats,
        admission: Admission,
    ) -> None:
        """Raises TLSSetupError (from building the TLS context) or ConfigError."""
        self.inner_factory = inner_factory
        self.stats = stats
        self.admission = admission
        self.proxy = config.proxy_protocol
        self.trusted: list[Network] = config.trusted_networks()
        self.tls: ServerContext | None = ServerContext(config) if config.tls else None
        self.timeout = config.handshake_timeout
        # Connections in their handshake, with the IP their place is held under.
        self.pending: dict[Pending, str | None] = {}
        self._deadlines: deque[tuple[float, Pending]] = deque()
        self._timer: asyncio.TimerHandle | None = None
        self._logged = 0
        self._window = -LOG_INTERVAL

    def reload(self) -> bool:
        """Re-read the TLS certificate, key and CA for new connections (SIGHUP).

        Returns False (and logs why) if TLS is off or the files cannot be loaded; open
        connections are never touched.
        """
        if self.tls is None:
            return False
        return self.tls.reload()

    # ---- trust -------------------------------------------------------------------

    def trusts(self, peername: Any) -> bool:
        """True if ``peername`` (a socket address) lies in ``proxy_trusted``."""
        if not isinstance(peername, tuple):
            return False  # a UNIX socket peer has no address to trust
        try:
            ip = ipaddress.ip_address(peername[0].split("%", 1)[0])
        except ValueError:
            return False
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return any(ip in net for net in self.trusted)

    # ---- handshakes in progress ----------------------------------------------------

    def started(self, conn: Pending, peer: Any) -> bool:
        """``conn`` was accepted from ``peer``: it takes a place under the connection
        caps and has ``timeout`` seconds to finish its handshake. False if refused (over
        a cap, or shutting down: counted by the registry); the caller closes it.

        Behind the PROXY protocol the per-IP cap waits for the header's address (the
        socket's is the proxy's); with TLS alone it applies from the accept.
        """
        ip: str | None = None
        if self.admission.max_per_ip and not self.proxy and isinstance(peer, tuple):
            ip = peer[0]
        if self.admission.hold(ip) is not None:
            return False
        self.pending[conn] = ip
        if not self.timeout:
            return True
        loop = asyncio.get_running_loop()
        self._deadlines.append((loop.time() + self.timeout, conn))
        if self._timer is None:
            self._timer = loop.call_at(self._deadlines[0][0], self._expire)
        return True

    def finished(self, conn: Pending) -> None:
        """``conn`` finished its handshake or was lost: its place is given back (the inner
        connection takes its own). Its deadline entry lapses by itself."""
        if conn in self.pending:
            self.admission.release(self.pending.pop(conn))

    def _expire(self) -> None:
        self._timer = None
        loop = asyncio.get_running_loop()
        now = loop.time()
        deadlines = self._deadlines
        while deadlines and deadlines[0][0] <= now:
            _, conn = deadlines.popleft()
            if conn in self.pending and conn.in_handshake:
                self.finished(conn)
                conn.handshake_expired()
        if deadlines:
            self._timer = loop.call_at(deadlines[0][0], self._expire)

    def close(self) -> None:
        """Server shutdown: abort every connection still in its handshake."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._deadlines.clear()
        for conn in list(self.pending):
            self.finished(conn)
            conn.abort()

    # ---- counting ----------------------------------------------------------------

    def timed_out(self, peer: Any, in_proxy_header: bool) -> None:
        self.stats.handshake_timeouts += 1
        if in_proxy_header:
            self.rejected(peer, TIMEOUT, f"no complete PROXY header within {self.timeout:g}s")
        else:
            self._log(f"TLS handshake from {_show(peer)} not finished within {self.timeout:g}s")

    def rejected(self, peer: Any, reason: str, detail: str) -> None:
        """Count a PROXY header rejection and log it, rate-limited."""
        counts = self.stats.proxy_rejected
        counts[reason] = counts.get(reason, 0) + 1
        self._log(f"PROXY header refused from {_show(peer)} ({reason}): {detail}")

    def tls_failed(self, peer: Any, exc: BaseException) -> None:
        self.stats.tls_handshake_failures += 1
        reason = getattr(exc, "reason", None) or type(exc).__name__
        self._log(f"TLS handshake from {_show(peer)} failed: {reason}")

    def _log(self, text: str) -> None:
        now = time.monotonic()
        if now - self._window > LOG_INTERVAL:
            if self._logged > REJECTIONS_LOGGED_PER_INTERVAL:
                log.warning(
                    "%d more front-door rejection(s) not logged",
                    self._logged - REJECTIONS_LOGGED_PER_INTERVAL,
                )
            self._window = now
            self._logged = 0
        self._logged += 1
        if self._logged <= REJECTIONS_LOGGED_PER_INTERVAL:
            log.warning("%s", text)


def _show(peer: Any) -> str:
    if isinstance(peer, tuple) and len(peer) >= 2:
        return f"{peer[0]}:{peer[1]}"
    return str(peer)
