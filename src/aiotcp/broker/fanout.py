"""Local delivery: topic -> the connections of this process subscribed to it.

A broker calls :meth:`Fanout.deliver` once per message it receives; the fanout pushes
one ``MSG`` frame to each local subscriber with ``conn.send``. A subscriber that holds
too much unread output (``send`` refuses) misses that message, which is counted: no
queue per subscriber grows here, and the server's backpressure and write timeout deal
with a client that stopped reading.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from aiotcp.observe.stats import Stats


# A burst is pushed to a subscriber in chunks of about this many characters: one write
# per chunk rather than per message, and never one huge string per subscriber (64 KiB is
# the connection's output high-water mark).
PUSH_CHUNK = 64 * 1024


class Subscriber(Protocol):
    """What the fanout needs of a connection."""

    def send(self, *frames: str) -> bool: ...


class Fanout:
    """The local subscribers of every topic, and the counters of what reached them."""

    __slots__ = ("stats", "topics")

    def __init__(self, stats: Stats) -> None:
        # A dict as an insertion-ordered set: delivery order is subscription order.
        self.topics: dict[str, dict[Subscriber, None]] = {}
        self.stats = stats

    def add(self, topic: str, sub: Subscriber) -> bool:
        """Add ``sub`` to ``topic``; True if the topic had no local subscriber before."""
        subs = self.topics.get(topic)
        new = subs is None
        if subs is None:
            subs = self.topics[topic] = {}
        if sub not in subs:
            subs[sub] = None
            self.stats.pubsub_subscriptions += 1
        return new

    def remove(self, topic: str, sub: Subscriber) -> bool:
        """Remove ``sub`` from ``topic``; True if that left the topic without subscribers."""
        subs = self.topics.get(topic)
        if subs is None or sub not in subs:
            return False
        del subs[sub]
        self.stats.pubsub_subscriptions -= 1
        if subs:
            return False
        del self.topics[topic]
        return True

    def has(self, topic: str) -> bool:
        return topic in self.topics

    def deliver(self, topic: str, line: str) -> None:
        """Push ``line`` (a whole ``MSG`` frame) to every local subscriber of ``topic``."""
        self._push(topic, [line])

    def deliver_many(self, topic: str, lines: list[str]) -> None:
        """Push ``lines`` (whole ``MSG`` frames, in order) to every local subscriber of
        ``topic`` with one ``send`` per subscriber and chunk of up to PUSH_CHUNK
        characters: a burst costs one write per subscriber."""
        if topic not in self.topics:
            return
        chunk: list[str] = []
        size = 0
        for line in lines:
            chunk.append(line)
            size += len(line) + 1
            if size >= PUSH_CHUNK:
                self._push(topic, chunk)
                chunk, size = [], 0
        if chunk:
            self._push(topic, chunk)

    def _push(self, topic: str, frames: list[str]) -> None:
        """``send`` ``frames`` to each subscriber of ``topic``; count the outcome."""
        subs = self.topics.get(topic)
        if not subs:
            return
        sent = 0
        for sub in subs:
            if sub.send(*frames):
                sent += 1
        n = len(frames)
        stats = self.stats
        stats.pubsub_delivered += sent * n
        stats.pubsub_dropped += (len(subs) - sent) * n
