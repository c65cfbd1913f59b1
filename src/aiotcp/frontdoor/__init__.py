"""The front door: PROXY protocol v1/v2 header and TLS, before the codec sees a byte.

``front_door(config, stats)``, called by the server at startup, returns None when
neither TLS nor the PROXY protocol is on (plain TCP pays nothing), else a
``FrontDoorWrapper``: called with the server's protocol factory it gives the factory to
listen with; its ``reload()`` re-reads the certificate (SIGHUP) and its ``close()``
aborts handshakes in progress (shutdown).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from aiotcp.config import Config
from aiotcp.frontdoor.context import TLSSetupError
from aiotcp.frontdoor.gate import Admission, Gate, Stats
from aiotcp.frontdoor.protocol import FrontDoor

__all__ = [
    "FrontDoor",
    "FrontDoorWrapper",
    "Gate",
    "TLSSetupError",
    "front_door",
]

ProtocolFactory = Callable[[], asyncio.Protocol]


def _no_inner() -> asyncio.Protocol:
    raise RuntimeError("front door used before it was given the server's protocol factory")


class FrontDoorWrapper:
    """Wraps one server's protocol factory in the front door."""

    def __init__(self, config: Config, stats: Stats, admission: Admission) -> None:
        """Raises TLSSetupError if the certificate, key or CA cannot be loaded."""
        self.gate = Gate(_no_inner, config, stats, admission)

    def __call__(self, inner_factory: ProtocolFactory) -> ProtocolFactory:
        """The factory to give ``loop.create_server``: a FrontDoor per accepted socket."""
        self.gate.inner_factory = inner_factory
        door: type[FrontDoor] = type(
            "FrontDoor", (FrontDoor,), {"__slots__": (), "_gate": self.gate}
        )
        return door

    def reload(self) -> bool:
        """SIGHUP: new certificate for new connections; see ``Gate.reload``."""
        return self.gate.reload()

    def close(self) -> None:
        """Shutdown: abort the connections still in their PROXY header or handshake."""
        self.gate.close()


def front_door(config: Config, stats: Stats, admission: Admission) -> FrontDoorWrapper | None:
    """None for plain TCP, else the wrapper. Raises TLSSetupError for unloadable files.

    ``admission`` (the server's registry) gives each connection in its PROXY header or
    TLS handshake a place under the connection caps.
    """
    if not config.tls and not config.proxy_protocol:
        return None
    return FrontDoorWrapper(config, stats, admission)

