"""Upstreams of the gateway app: the gRPC or HTTP service each message becomes a call to.

Every upstream keeps one contract (:class:`Upstream`): ``open()`` makes its one channel
or session for this process (no I/O: connecting happens on the first call), ``call(message,
timeout)`` makes one unary call and returns the upstream's answer, ``probe(timeout)`` asks
whether it is healthy, ``close()`` lets go. A failed call raises one of:

:class:`Unavailable`       the upstream could not be reached; ``sent`` says whether the call
                           may have reached it (only a call that certainly did not is safe to
                           retry: connect refused, or gRPC ``UNAVAILABLE`` before a stream)
:class:`DeadlineExceeded`  the call's own deadline (``timeout``) passed
:class:`UpstreamError`     the upstream answered with an error status (HTTP non-2xx, gRPC
                           non-OK): the text is ``<status> <why>``
:class:`BadReply`          the upstream answered with something that is no reply

:func:`parse_upstream` reads the URL (``--upstream``); :func:`upstream_for` makes the
upstream for it. grpcio and aiohttp are imported only by the upstream that needs them.
"""

from __future__ import annotations

import importlib
import urllib.parse
from dataclasses import dataclass
from typing import Any, Protocol

from aiotcp.stores import one_line, redact

__all__ = [
    "BadReply",
    "DeadlineExceeded",
    "Unavailable",
    "Upstream",
    "UpstreamError",
    "UpstreamURL",
    "parse_upstream",
    "quoted",
    "upstream_for",
]

# scheme -> the module of its upstream
SCHEMES: dict[str, str] = {
    "grpc": "aiotcp.upstream.grpc_client",
    "grpcs": "aiotcp.upstream.grpc_client",
    "http": "aiotcp.upstream.http_client",
    "https": "aiotcp.upstream.http_client",
}
TLS_SCHEMES = ("grpcs", "https")
USAGE = "grpc://HOST:PORT/package.Service/Method, grpcs://..., http://... or https://..."

# At most this much of what an upstream says (a gRPC status's details, an HTTP reason)
# goes into an ERR line: the upstream's text is not the client's to receive in full.
MAX_QUOTE = 200


class UpstreamURLError(ValueError):
    """``--upstream`` (or ``--upstream-health``) is not a URL the gateway can call."""


class Unavailable(Exception):
    """The upstream could not be reached (the text says why, on one line).

    ``sent`` is False only when the call certainly never reached the upstream.
    """

    def __init__(self, reason: str, *, sent: bool) -> None:
        super().__init__(reason)
        self.sent = sent


class DeadlineExceeded(Exception):
    """The call's deadline passed before the upstream answered."""


class UpstreamError(Exception):
    """The upstream answered with an error status: ``<status> <why>``, one line."""


class BadReply(Exception):
    """The upstream's answer cannot be a reply (too long, not UTF-8, ...)."""


def quoted(text: str) -> str:
    """Upstream-provided text as part of an ERR line: one line, at most MAX_QUOTE chars."""
    return " ".join(text.split())[:MAX_QUOTE]


@dataclass(frozen=True)
class UpstreamURL:
    """A parsed ``--upstream``: ``target`` is ``host:port``, ``method`` the gRPC path."""

    url: str
    scheme: str
    host: str
    port: int
    method: str = ""  # gRPC: "/package.Service/Method"
    service: str = ""  # gRPC: "package.Service"

    @property
    def tls(self) -> bool:
        return self.scheme in TLS_SCHEMES

    @property
    def target(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    @property
    def shown(self) -> str:
        """The URL with any password hidden, for logs and errors."""
        return redact(self.url)


def parse_upstream(url: str) -> UpstreamURL:
    """``url`` as an UpstreamURL. Raises UpstreamURLError, one line, for anything else."""
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port
    except ValueError as e:
        raise UpstreamURLError(f"upstream {redact(url)!r}: {one_line(e)}") from None
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES:
        raise UpstreamURLError(f"upstream {redact(url)!r} must be {USAGE}")
    host = parts.hostname
    if not host:
        raise UpstreamURLError(f"upstream {redact(url)!r} has no host")
    if scheme in ("http", "https"):
        return UpstreamURL(url, scheme, host, port or (443 if scheme == "https" else 80))
    if port is None:
        raise UpstreamURLError(f"upstream {redact(url)!r} needs a port: {USAGE}")
    service, sep, method = parts.path.lstrip("/").partition("/")
    if not sep or not service or not method or "/" in method or parts.query:
        raise UpstreamURLError(
            f"upstream {redact(url)!r} must name one method: grpc://HOST:PORT/package.Service/Method"
        )
    return UpstreamURL(url, scheme, host, port, f"/{service}/{method}", service)


@dataclass(frozen=True)
class Settings:
    """What an upstream needs besides its URL."""

    ca: str  # CA bundle (PEM) to verify a TLS upstream; "" = the system's
    max_reply: int  # longest answer in bytes; longer is BadReply
    connections: int  # calls in flight at most (the HTTP pool's size)
    health_url: str  # HTTP: the URL probe() GETs; "" = none
    binary: bool = False  # messages and answers are bytes (--binary), not str


class Upstream(Protocol):
    url: UpstreamURL

    async def open(self) -> None:
        """Make the channel or session for this process (no I/O: connecting is lazy)."""
        ...

    async def call(self, message: Any, timeout: float | None) -> Any:
        """One unary call; its answer (str, or bytes with ``binary``). Raises Unavailable, DeadlineExceeded,
        UpstreamError or BadReply; a cancelled caller cancels the call at the upstream."""
        ...

    async def probe(self, timeout: float) -> tuple[bool, str]:
        """(healthy, why): the upstream's health, asked within ``timeout`` seconds."""
        ...

    async def close(self) -> None: ...


def upstream_for(url: UpstreamURL, settings: Settings) -> Upstream:
    """The upstream for ``url``. Raises ImportError when its library is not installed."""
    module = importlib.import_module(SCHEMES[url.scheme])
    upstream: Upstream = module.make_upstream(url, settings)
    return upstream
