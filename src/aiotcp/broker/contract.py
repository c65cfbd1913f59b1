"""What every broker shares: the :class:`Broker` contract, its error, and the Redis names.

Kept apart from the package ``__init__`` (which opens the broker a Config names and so
imports every broker module) so that the brokers import these names without a cycle.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any, Protocol

# Redis key (channel and stream) of a topic: a prefix keeps aiotcp's keys apart from
# whatever else shares the database.
KEY_PREFIX = "aiotcp:topic:"
# The stream entry field that holds the message text.
TEXT_FIELD = "text"


class BrokerUnavailable(Exception):
    """The broker cannot be reached; the text says why, on one line."""


class Broker(Protocol):
    """What the pubsub app needs of a broker. Every method is called on the loop."""

    @property
    def resumable(self) -> bool:
        """True if :meth:`replay` works: messages have entry IDs (Redis Streams)."""
        ...

    @property
    def ready(self) -> bool:
        """False while the broker cannot be reached (``/readyz`` answers 503)."""
        ...

    async def start(self) -> None:
        """Open the broker's connections; raise BrokerUnavailable if it must have them."""
        ...

    def publish(self, topic: str, text: str) -> Awaitable[None]:
        """Queue ``text`` for ``topic`` now (so calls keep their order); the awaitable
        completes once the broker accepted it, or raises BrokerUnavailable."""
        ...

    async def subscribe(self, topic: str) -> None:
        """Make this instance receive ``topic`` (its first local subscriber). Returns
        once a message published from now on will be delivered; raises BrokerUnavailable."""
        ...

    async def replay(self, topic: str, after: str, conn: Any) -> None:
        """Resumable brokers, after :meth:`subscribe`: push ``conn`` the messages of
        ``topic`` after entry ``after``, then add it to the fanout, with nothing missed
        or repeated between the two. Raises BrokerUnavailable, or ValueError if the
        broker no longer holds everything after ``after``."""
        ...

    def unsubscribe(self, topic: str) -> None:
        """The last local subscriber of ``topic`` left: stop receiving it."""
        ...

    async def drain(self) -> None:
        """Shutdown began: deliver what already arrived from the broker, stop reading."""
        ...

    async def close(self) -> None:
        """Close every connection (after the drain). Idempotent."""
        ...
