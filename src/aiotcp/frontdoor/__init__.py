"""The front door: PROXY protocol v1/v2 header and TLS, before the codec sees a byte.

Two equivalent entry points for the server:

- ``front_door(config, stats)`` returns None when neither TLS nor the PROXY protocol is
  on (plain TCP pays nothing), else a ``FrontDoorWrapper``: call it with the server's
  protocol factory to get the factory to listen with (the shape of
  ``Server.wrap_protocol``); its ``reload()`` re-reads the certificate (SIGHUP) and its
  ``close()`` aborts handshakes in progress (shutdown).
- ``front_door_factory(inner_factory, config, stats)`` does both steps at once and
  returns ``(factory, gate)``; ``factory`` is ``inner_factory`` itself for plain TCP.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from aiotcp.config import Config
from aiotcp.frontdoor.context import TLSSetupError
from aiotcp.frontdoor.gate import Gate, Stats
from aiotcp.frontdoor.protocol import FrontDoor

__all__ = [
    "FrontDoor",
    "FrontDoorWrapper",
    "Gate",
    "TLSSetupError",
    "front_door",
    "front_door_factory",
]

ProtocolFactory = Callable[[], asyncio.Protocol]


def _no_inner() -> asyncio.Protocol:
    raise RuntimeError("front door used before it was given the server's protocol factory")


class FrontDoorWrapper:
    """Wraps one server's protocol factory in the front door."""

    def __init__(self, config: Config, stats: Stats) -> None:
        """Raises TLSSetupError if the certificate, key or CA cannot be loaded."""
        self.gate = Gate(_no_inner, config, stats)

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


def front_door(config: Config, stats: Stats) -> FrontDoorWrapper | None:
    """None for plain TCP, else the wrapper. Raises TLSSetupError for unloadable files."""
    if not config.tls and not config.proxy_protocol:
        return None
    return FrontDoorWrapper(config, stats)


def front_door_factory(
    inner_factory: ProtocolFactory, config: Config, stats: Stats
) -> tuple[ProtocolFactory, Gate | None]:
    """The protocol factory to listen with, and the Gate behind it (None for plain TCP).

    Raises TLSSetupError if the certificate, key or CA cannot be loaded.
    """
    wrapper = front_door(config, stats)
    if wrapper is None:
        return inner_factory, None
    return wrapper(inner_factory), wrapper.gate
