"""Brokers for the pubsub app: what carries a published message to every instance.

Every broker delivers into one :class:`~aiotcp.broker.fanout.Fanout` per process, which
pushes ``MSG`` frames to the local subscribers. Three brokers share one contract
(:class:`~aiotcp.broker.contract.Broker`, with the names they share):

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

from typing import TYPE_CHECKING

from aiotcp.broker.contract import KEY_PREFIX, TEXT_FIELD, Broker, BrokerUnavailable

if TYPE_CHECKING:
    from aiotcp.broker.fanout import Fanout
    from aiotcp.config import Config

__all__ = ["KEY_PREFIX", "TEXT_FIELD", "Broker", "BrokerUnavailable", "open_broker"]


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

        return StreamsBroker(
            settings, fanout, config.stream_maxlen, config.message_ids, config.broker_timeout
        )
    from aiotcp.broker.redis_pubsub import PubSubBroker

    return PubSubBroker(settings, fanout, config.broker_timeout)
