"""Local delivery: topic -> the connections of this process subscribed to it.

A broker calls :meth:`Fanout.deliver` once per message it receives; the fanout pushes
one ``MSG`` frame to each local subscriber with ``conn.send``. No queue per subscriber
grows here: a subscriber that holds too much unread output (``send`` refuses) misses
the message, and the server's backpressure and write timeout deal with a client that
stopped reading. What it misses it is told, never left to guess:

- at-most-once (local, Redis pub/sub): the fanout counts what each subscriber missed per
  topic, and the next frame it takes on that topic is preceded by ``GAP <topic> <n>``
  (``n`` messages of ``<topic>`` were not delivered to you here); ``GAP <topic> ?``
  when the number is not known (the instance lost its Redis subscription meanwhile:
  whatever was published then never reached it; or, in streams mode, the stream was
  trimmed past what this instance had read);
- resumable (Redis Streams, :meth:`deliver_entries`): the fanout keeps the last entry ID
  sent to each subscriber per topic; one that falls behind is sent
  ``ERR lagging <topic> <entry-id> [<topic> <entry-id> ...]`` (every topic of the
  connection, with the last entry it was sent) and closed. ``SUB <topic> FROM
  <entry-id>`` on any instance resumes after it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from aiotcp.observe.stats import Stats


# A burst is pushed to a subscriber in chunks of about this many characters: one write
# per chunk rather than per message, and never one huge string per subscriber (64 KiB is
# the connection's output high-water mark).
PUSH_CHUNK = 64 * 1024
# The error code of a streams subscriber closed for falling behind.
LAGGING = "lagging"


class Subscriber(Protocol):
    """What the fanout needs of a connection."""

    def send(self, *frames: str, past_limit: bool = False) -> bool: ...

    def close(self) -> None: ...

    @property
    def closing(self) -> bool: ...


# A missed count for "an unknown number" (the broker lost messages it never saw).
UNKNOWN = -1


def gap_frame(topic: str, missed: int) -> str:
    """The notice that ``missed`` messages of ``topic`` (UNKNOWN: some) were not delivered."""
    return f"GAP {topic} {'?' if missed < 0 else missed}"


def lagging_frame(positions: list[tuple[str, str]]) -> str:
    """The error of a streams subscriber closed for falling behind: each of its topics
    with the last entry ID it was sent (resume with ``SUB <topic> FROM <entry-id>``)."""
    return f"ERR {LAGGING} " + " ".join(f"{t} {entry}" for t, entry in positions)


class Fanout:
    """The local subscribers of every topic, and the counters of what reached them.

    ``topics[topic][sub]`` is how many messages of ``topic`` ``sub`` missed since its
    last delivery (at-most-once brokers); ``sent[sub][topic]`` the last entry ID sent to
    ``sub`` (resumable brokers), and ``position(topic)`` the broker's: the entry up to
    which a subscriber that was sent nothing yet has everything it subscribed for.
    """

    __slots__ = ("position", "sent", "stats", "topics")

    def __init__(self, stats: Stats) -> None:
        # A dict as an insertion-ordered set: delivery order is subscription order.
        self.topics: dict[str, dict[Subscriber, int]] = {}
        self.sent: dict[Subscriber, dict[str, str]] = {}
        self.position: Callable[[str], str | None] = lambda topic: None
        self.stats = stats

    def add(self, topic: str, sub: Subscriber, after: str | None = None) -> bool:
        """Add ``sub`` to ``topic``; True if the topic had no local subscriber before.
        ``after``: the entry ID ``sub`` has everything up to (``SUB ... FROM``)."""
        subs = self.topics.get(topic)
        new = subs is None
        if subs is None:
            subs = self.topics[topic] = {}
        if sub not in subs:
            subs[sub] = 0
            self.stats.pubsub_subscriptions += 1
        if after is not None:
            self.sent.setdefault(sub, {})[topic] = after
        return new

    def remove(self, topic: str, sub: Subscriber) -> bool:
        """Remove ``sub`` from ``topic``; True if that left the topic without subscribers."""
        subs = self.topics.get(topic)
        if subs is None or sub not in subs:
            return False
        del subs[sub]
        self.stats.pubsub_subscriptions -= 1
        sent = self.sent.get(sub)
        if sent is not None:
            sent.pop(topic, None)
            if not sent:
                del self.sent[sub]
        if subs:
            return False
        del self.topics[topic]
        return True

    def has(self, topic: str) -> bool:
        return topic in self.topics

    def lost_unknown(self, topic: str | None = None) -> None:
        """The broker may have lost messages of ``topic`` (None: of every topic; its
        subscription was down, or the stream was trimmed past what it had read): each
        subscriber's next message on it comes after ``GAP <topic> ?``."""
        for name, subs in self.topics.items():
            if topic is None or name == topic:
                for sub in subs:
                    subs[sub] = UNKNOWN

    def deliver(self, topic: str, line: str) -> None:
        """Push ``line`` (a whole ``MSG`` frame) to every local subscriber of ``topic``."""
        self._push(topic, [line])

    def deliver_many(self, topic: str, lines: list[str]) -> None:
        """Push ``lines`` (whole ``MSG`` frames, in order) to every local subscriber of
        ``topic`` with one ``send`` per subscriber and chunk of up to PUSH_CHUNK
        characters: a burst costs one write per subscriber."""
        if topic not in self.topics:
            return
        for chunk, _ in _chunks(lines, None):
            self._push(topic, chunk)

    def deliver_entries(self, topic: str, lines: list[str], ids: list[str]) -> None:
        """:meth:`deliver_many` for stream entries (``ids[i]`` is the entry of
        ``lines[i]``): a subscriber that refuses is closed with ``ERR lagging``."""
        if topic not in self.topics:
            return
        for chunk, last in _chunks(lines, ids):
            assert last is not None
            self._push_entries(topic, chunk, last)

    def _push(self, topic: str, frames: list[str]) -> None:
        """``send`` ``frames`` to each subscriber of ``topic``, after a GAP notice to
        one that missed some; count the outcome."""
        subs = self.topics.get(topic)
        if not subs:
            return
        sent = 0
        n = len(frames)
        for sub, missed in subs.items():  # values change, keys do not: safe
            if missed:
                if sub.send(gap_frame(topic, missed), *frames):
                    subs[sub] = 0
                    sent += 1
                elif missed > 0:
                    subs[sub] = missed + n
            elif sub.send(*frames):
                sent += 1
            else:
                subs[sub] = n
        stats = self.stats
        stats.pubsub_delivered += sent * n
        stats.pubsub_dropped += (len(subs) - sent) * n

    def _push_entries(self, topic: str, frames: list[str], last: str) -> None:
        subs = self.topics.get(topic)
        if not subs:
            return
        delivered = 0
        behind: list[Subscriber] = []
        for sub, missed in subs.items():
            if sub.send(gap_frame(topic, missed), *frames) if missed else sub.send(*frames):
                delivered += 1
                self.sent.setdefault(sub, {})[topic] = last
                if missed:
                    subs[sub] = 0
            elif not sub.closing:
                behind.append(sub)
        n = len(frames)
        self.stats.pubsub_delivered += delivered * n
        self.stats.pubsub_dropped += (len(subs) - delivered) * n
        for sub in behind:
            self._close_lagging(sub)

    def _close_lagging(self, sub: Subscriber) -> None:
        """Tell ``sub`` where each of its topics stands, and close it (its close hook
        removes its subscriptions)."""
        sent = self.sent.pop(sub, {})
        positions = []
        for topic, subs in self.topics.items():
            if sub in subs:
                entry = sent.get(topic) or self.position(topic)
                if entry is not None:
                    positions.append((topic, entry))
        sub.send(lagging_frame(positions), past_limit=True)
        sub.close()
        self.stats.error(LAGGING)


def _chunks(
    lines: list[str], ids: list[str] | None
) -> list[tuple[list[str], str | None]]:
    """``lines`` cut into runs of about PUSH_CHUNK characters, each with the ID of its
    last line (None without ``ids``)."""
    out: list[tuple[list[str], str | None]] = []
    chunk: list[str] = []
    size = 0
    for i, line in enumerate(lines):
        chunk.append(line)
        size += len(line) + 1
        if size >= PUSH_CHUNK:
            out.append((chunk, ids[i] if ids is not None else None))
            chunk, size = [], 0
    if chunk:
        out.append((chunk, ids[-1] if ids is not None else None))
    return out
