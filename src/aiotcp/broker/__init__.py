"""Brokers for the pubsub app: what carries a published message to every instance.

Every broker delivers into one :class:`~aiotcp.broker.fanout.Fanout` per process, which
pushes ``MSG`` frames to the local subscribers. Three brokers share one contract
(:class:`Broker`):

``local``          (no ``--broker``) this process only: publish delivers at once.
``redis pubsub``   Redis PUBLISH/SUBSCRIBE, one Redis subscription per instance and topic:
                   at-most-once across instances (a message published while an instance
                   is cut off from Redis never reaches that instance's subscribers).
``redis streams``  one Redis Stream per topic (XADD ... MAXLEN ~), one XREAD reader per
                   instance from the last ID it delivered: at-least-once within the
                   retained length of each stream.

Redis keys: the channel and the stream of topic ``T`` are both named ``aiotcp:topic:T``;
a stream entry holds the text in its field ``text``.

``redis`` (redis.asyncio) is imported only when a Redis broker is opened.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from aiotcp.broker.fanout import Fanout
    from aiotcp.config import Config

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

    def unsubscribe(self, topic: str) -> None:
        """The last local subscriber of ``topic`` left: stop receiving it."""
        ...

    async def drain(self) -> None:
        """Shutdown began: deliver what already arrived from the broker, stop reading."""
        ...

    async def close(self) -> None:
        """Close every connection (after the drain). Idempotent."""
        ...


def open_broker(config: Config, fanout: Fanout) -> Broker:
    """The broker ``config.broker``/``config.broker_mode`` names (not started yet).

    Raises ValueError for a URL that is not ``redis://``, ``rediss://`` or ``unix://``,
    and ImportError if redis-py is not installed.
    """
    if not config.broker:
        from aiotcp.broker.local import LocalBroker

        return LocalBroker(fanout)
    from aiotcp.broker.link import connection_settings

    settings = connection_settings(config.broker)
    if config.broker_mode == "streams":
        from aiotcp.broker.redis_streams import StreamsBroker

        return StreamsBroker(settings, fanout, config.stream_maxlen, config.message_ids)
    from aiotcp.broker.redis_pubsub import PubSubBroker

    return PubSubBroker(settings, fanout)
