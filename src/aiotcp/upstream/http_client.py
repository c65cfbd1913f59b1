"""The HTTP upstream: one ``aiohttp.ClientSession`` per process, one POST per message.

The message is the request body (UTF-8, ``text/plain``); a 2xx answer's body is the
reply, any other status is :class:`UpstreamError` ``<status> <reason>``. The session
keeps connections alive and pools them (at most ``Settings.connections``, the gateway's
``--upstream-concurrency``). Health (:meth:`HttpUpstream.probe`) is a GET of the health
URL: healthy on a 2xx answer.
"""

from __future__ import annotations

import ssl
from typing import Any

import aiohttp

from aiotcp.stores import one_line
from aiotcp.upstream import (
    BadReply,
    DeadlineExceeded,
    Settings,
    Unavailable,
    UpstreamError,
    UpstreamURL,
    UpstreamURLError,
    parse_upstream,
)

# Without a call deadline (--handler-timeout 0), a connect still gives up after this:
# an address that drops SYNs would otherwise hold the call for the kernel's ~2 minutes.
CONNECT_TIMEOUT = 10.0
CONTENT_TYPE = "text/plain; charset=utf-8"
BINARY_TYPE = "application/octet-stream"  # --binary: the message's bytes as they are


class HttpUpstream:
    """See the module doc."""

    def __init__(self, url: UpstreamURL, settings: Settings) -> None:
        self.url = url
        self.max_reply = settings.max_reply
        self.connections = settings.connections
        self.health_url = settings.health_url
        if self.health_url and parse_upstream(self.health_url).scheme not in ("http", "https"):
            raise UpstreamURLError(f"--upstream-health {self.health_url!r} must be http(s)://...")
        self.ssl: ssl.SSLContext | bool = True
        if settings.ca:
            if not url.tls and not self.health_url.startswith("https:"):
                raise UpstreamURLError("--upstream-ca is for a TLS upstream (grpcs:// or https://)")
            try:
                self.ssl = ssl.create_default_context(cafile=settings.ca)
            except (OSError, ssl.SSLError) as e:
                raise UpstreamURLError(f"upstream CA {settings.ca}: {one_line(e)}") from None
        self.session: aiohttp.ClientSession | None = None
        self.binary = settings.binary

    async def open(self) -> None:
        connector = aiohttp.TCPConnector(limit=self.connections, ssl=self.ssl)
        self.session = aiohttp.ClientSession(
            connector=connector, timeout=aiohttp.ClientTimeout(total=None)
        )

    async def call(self, message: Any, timeout: float | None) -> Any:
        assert self.session is not None
        limit = aiohttp.ClientTimeout(
            total=timeout, sock_connect=CONNECT_TIMEOUT if timeout is None else None
        )
        try:
            async with self.session.post(
                self.url.url, data=bytes(message) if self.binary else message.encode(),
                headers={"Content-Type": BINARY_TYPE if self.binary else CONTENT_TYPE},
                timeout=limit,
            ) as answer:
                if not 200 <= answer.status < 300:
                    raise UpstreamError(f"{answer.status} {answer.reason or ''}".rstrip())
                body = bytearray()
                async for chunk in answer.content.iter_any():
                    body += chunk
                    if len(body) > self.max_reply:
                        raise BadReply(f"reply over {self.max_reply} bytes")
        except aiohttp.ClientConnectorError as e:
            # the connection was never made: nothing was sent
            raise Unavailable(f"http {self.url.target}: {one_line(e)}", sent=False) from None
        except TimeoutError:
            if timeout is None:  # only the connect timeout is set: nothing was sent
                raise Unavailable(
                    f"http {self.url.target}: connect timed out after {CONNECT_TIMEOUT:g}s",
                    sent=False,
                ) from None
            raise DeadlineExceeded() from None
        except (aiohttp.ClientError, OSError) as e:
            raise Unavailable(f"http {self.url.target}: {one_line(e)}", sent=True) from None
        if self.binary:
            return bytes(body)
        try:
            return body.decode()
        except UnicodeDecodeError:
            raise BadReply("reply is not UTF-8") from None

    async def probe(self, timeout: float) -> tuple[bool, str]:
        if not self.health_url:
            return True, "no health URL"
        assert self.session is not None
        try:
            async with self.session.get(
                self.health_url, timeout=aiohttp.ClientTimeout(total=timeout)
            ) as answer:
                ok = 200 <= answer.status < 300
                return ok, f"health {answer.status} {answer.reason or ''}".rstrip()
        except TimeoutError:
            return False, f"health check took over {timeout:g}s"
        except (aiohttp.ClientError, OSError) as e:
            return False, f"health check: {one_line(e)}"

    async def close(self) -> None:
        session, self.session = self.session, None
        if session is not None:
            await session.close()


def make_upstream(url: UpstreamURL, settings: Settings) -> HttpUpstream:
    return HttpUpstream(url, settings)
