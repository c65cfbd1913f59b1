"""The in-process broker: no Redis; a message reaches this process's subscribers only."""

from __future__ import annotations

from collections.abc import Awaitable, Generator
from typing import Any

from aiotcp.broker.contract import BrokerUnavailable
from aiotcp.broker.fanout import Fanout


class _Done:
    """An awaitable that is already complete (no Future, no Task per publish)."""

    __slots__ = ()

    def __await__(self) -> Generator[Any, None, None]:
        return
        yield


DONE = _Done()


class LocalBroker:
    """Publish delivers at once, in the publisher's order. Always ready."""

    ready = True

    def __init__(self, fanout: Fanout) -> None:
        self.fanout = fanout

    async def start(self) -> None:
        return None

    def publish(self, topic: str, text: str) -> Awaitable[None]:
        self.fanout.deliver(topic, f"MSG {topic} {text}")
        self.fanout.stats.pubsub_published += 1
        return DONE

    resumable = False

    async def replay(self, topic: str, after: str, conn: Any) -> None:
        raise BrokerUnavailable("this broker has no entry IDs to resume from")

    async def subscribe(self, topic: str) -> None:
        return None

    def unsubscribe(self, topic: str) -> None:
        return None

    async def drain(self) -> None:
        return None

    async def close(self) -> None:
        return None
