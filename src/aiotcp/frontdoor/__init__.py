"""The front door: PROXY protocol v1/v2 header and TLS, before the codec sees a byte.

``front_door_factory(inner_factory, config, stats)`` is the one entry point: it returns
the protocol factory to give ``loop.create_server``. With neither TLS nor the PROXY
protocol on, it returns ``inner_factory`` itself, so plain TCP pays nothing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from aiotcp.config import Config
from aiotcp.frontdoor.context import TLSSetupError
from aiotcp.frontdoor.gate import Gate, Stats
from aiotcp.frontdoor.protocol import FrontDoor

__all__ = ["FrontDoor", "Gate", "TLSSetupError", "front_door_factory"]

ProtocolFactory = Callable[[], asyncio.Protocol]


def front_door_factory(
    inner_factory: ProtocolFactory, config: Config, stats: Stats
) -> tuple[ProtocolFactory, Gate | None]:
    """The protocol factory to listen with, and the Gate behind it (None for plain TCP).

    The Gate's ``reload()`` re-reads the TLS certificate (call it on SIGHUP) and its
    ``close()`` aborts handshakes in progress (call it when the server shuts down).
    Raises TLSSetupError if the certificate, key or CA cannot be loaded.
    """
    if not config.tls and not config.proxy_protocol:
        return inner_factory, None
    gate = Gate(inner_factory, config, stats)
    door: type[FrontDoor] = type("FrontDoor", (FrontDoor,), {"__slots__": (), "_gate": gate})
    return door, gate
