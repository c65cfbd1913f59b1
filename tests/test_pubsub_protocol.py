"""The pubsub app's command parser and the local fanout, as units (no sockets)."""

from __future__ import annotations

import pytest

from aiotcp.apps.pubsub import MAX_TOPIC_BYTES, BadCommand, Command, parse, topic_error
from aiotcp.broker.fanout import PUSH_CHUNK, Fanout
from aiotcp.observe.stats import Stats


@pytest.mark.parametrize(
    ("line", "command"),
    [
        ("SUB news", Command("SUB", "news")),
        ("sub news", Command("SUB", "news")),
        ("UNSUB news", Command("UNSUB", "news")),
        ("PUB news hello world", Command("PUB", "news", "hello world")),
        ("PUB news  two  spaces ", Command("PUB", "news", " two  spaces ")),
        ("PUB news ", Command("PUB", "news", "")),
        ("PUB 新闻 你好", Command("PUB", "新闻", "你好")),
    ],
)
def test_commands_parse(line: str, command: Command) -> None:
    assert parse(line) == command


@pytest.mark.parametrize(
    "line",
    ["", "SUB", "SUB ", "PUB news", "PUB", "HELLO news", "SUB a b", "SUB a\tb", "UNSUB ",
     "SUB " + "x" * (MAX_TOPIC_BYTES + 1), "PUB  text"],
)
def test_malformed_commands_say_why(line: str) -> None:
    bad = parse(line)
    assert isinstance(bad, BadCommand)
    assert bad.why


def test_topic_names_are_1_to_200_bytes_of_printable_utf8_without_spaces() -> None:
    assert topic_error("a") is None
    assert topic_error("é" * (MAX_TOPIC_BYTES // 2)) is None  # 200 bytes
    assert topic_error("é" * (MAX_TOPIC_BYTES // 2) + "x") is not None  # 201 bytes
    assert topic_error("") is not None
    assert topic_error("a b") is not None
    assert topic_error("a\x00b") is not None
    assert topic_error("a\u3000b") is not None  # an ideographic space is no printable name


class FakeSubscriber:
    """Accepts ``room`` sends, then refuses like a connection over its push backlog;
    ``got`` holds each send's frames, joined by newlines as they go out."""

    def __init__(self, room: int = 1_000_000) -> None:
        self.room = room
        self.got: list[str] = []

    def send(self, *frames: str) -> bool:
        if len(self.got) >= self.room:
            return False
        self.got.append("\n".join(frames))
        return True


def test_fanout_delivers_to_the_topic_subscribers_only_and_counts() -> None:
    stats = Stats()
    fanout = Fanout(stats)
    a, b, c = FakeSubscriber(), FakeSubscriber(), FakeSubscriber()
    assert fanout.add("t", a) is True
    assert fanout.add("t", b) is False
    assert fanout.add("t", b) is False  # twice is once
    assert fanout.add("u", c) is True
    assert stats.pubsub_subscriptions == 3
    fanout.deliver("t", "MSG t x")
    assert a.got == b.got == ["MSG t x"]
    assert c.got == []
    assert stats.pubsub_delivered == 2
    assert fanout.remove("t", a) is False
    assert fanout.remove("t", b) is True  # the last one
    assert fanout.remove("t", b) is False
    assert not fanout.has("t")
    assert stats.pubsub_subscriptions == 1


def test_a_subscriber_that_refuses_loses_the_message_and_it_is_counted() -> None:
    stats = Stats()
    fanout = Fanout(stats)
    slow, fast = FakeSubscriber(room=1), FakeSubscriber()
    fanout.add("t", slow)
    fanout.add("t", fast)
    for i in range(3):
        fanout.deliver("t", f"MSG t {i}")
    assert slow.got == ["MSG t 0"]
    assert fast.got == ["MSG t 0", "MSG t 1", "MSG t 2"]
    assert (stats.pubsub_delivered, stats.pubsub_dropped) == (4, 2)


def test_a_burst_goes_out_in_chunks_of_whole_lines_one_send_each() -> None:
    stats = Stats()
    fanout = Fanout(stats)
    sub, slow = FakeSubscriber(), FakeSubscriber(room=1)
    fanout.add("t", sub)
    fanout.add("t", slow)
    lines = [f"MSG t {i} " + "x" * 1000 for i in range(200)]  # ~200 KB: several chunks
    fanout.deliver_many("t", lines)
    assert len(sub.got) > 1
    assert "\n".join(sub.got).split("\n") == lines  # whole lines, in order
    assert all(len(c) <= PUSH_CHUNK + 1100 for c in sub.got)
    assert len(slow.got) == 1
    got_by_slow = len(slow.got[0].split("\n"))
    assert stats.pubsub_delivered == 200 + got_by_slow
    assert stats.pubsub_dropped == 200 - got_by_slow
