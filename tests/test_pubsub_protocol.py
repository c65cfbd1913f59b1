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
        ("SUB news FROM 1700000000000-3", Command("SUB", "news", after="1700000000000-3")),
        ("sub news from 0", Command("SUB", "news", after="0")),
        ("SUB n FROM 18446744073709551615-18446744073709551615",
         Command("SUB", "n", after="18446744073709551615-18446744073709551615")),
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
     "SUB " + "x" * (MAX_TOPIC_BYTES + 1), "PUB  text",
     "SUB a FROM", "SUB a FROM x-1", "SUB a FROM 1-2-3", "SUB a TO 1-0", "SUB a FROM 1-0 b",
     "SUB a FROM 18446744073709551616-0", "SUB a FROM 1-18446744073709551616",
     # "ſ".upper() is "S": these were SUB and UNSUB (fuzz/pubsub.py's ASCII-verb property)
     "ſub news", "unſub news", "ſUB news FROM 0"],
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
    """Accepts ``room`` sends, then refuses like a connection over its push backlog
    (until the test gives it more room); ``got`` holds each send's frames, joined by
    newlines as they go out. A send ``past_limit`` always goes; ``close`` is recorded."""

    def __init__(self, room: int = 1_000_000) -> None:
        self.room = room
        self.got: list[str] = []
        self.closing = False

    def send(self, *frames: str, past_limit: bool = False) -> bool:
        if self.closing or (len(self.got) >= self.room and not past_limit):
            return False
        self.got.append("\n".join(frames))
        return True

    def close(self) -> None:
        self.closing = True


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


def test_a_subscriber_that_missed_messages_is_told_how_many_before_the_next_one() -> None:
    stats = Stats()
    fanout = Fanout(stats)
    slow, fast = FakeSubscriber(room=1), FakeSubscriber()
    fanout.add("t", slow)
    fanout.add("t", fast)
    fanout.add("u", slow)
    fanout.deliver("t", "MSG t 0")
    fanout.deliver("t", "MSG t 1")  # refused
    fanout.deliver_many("t", ["MSG t 2", "MSG t 3"])  # refused
    fanout.deliver("u", "MSG u 0")  # refused: counted for u on its own
    slow.room = 10  # it read
    fanout.deliver("t", "MSG t 4")
    fanout.deliver("t", "MSG t 5")
    fanout.deliver("u", "MSG u 1")
    assert slow.got == ["MSG t 0", "GAP t 3\nMSG t 4", "MSG t 5", "GAP u 1\nMSG u 1"]
    assert fast.got == ["MSG t 0", "MSG t 1", "MSG t 2\nMSG t 3", "MSG t 4", "MSG t 5"]
    assert stats.pubsub_dropped == 4


def test_a_streams_subscriber_that_falls_behind_is_told_where_each_topic_stands_and_closed(
) -> None:
    stats = Stats()
    fanout = Fanout(stats)
    positions = {"t": "5-0", "u": "9-1"}
    fanout.position = positions.get  # the broker's: delivered up to here before this push
    slow, fast, quiet = FakeSubscriber(room=1), FakeSubscriber(), FakeSubscriber()
    for sub in (slow, fast):
        fanout.add("t", sub)
    fanout.add("u", slow)
    fanout.add("u", quiet, after="8-0")  # SUB u FROM: caught up to 8-0
    fanout.deliver_entries("t", ["MSG t a"], ["6-0"])
    fanout.deliver_entries("t", ["MSG t b", "MSG t c"], ["7-0", "7-1"])  # slow refuses
    assert slow.closing
    assert slow.got == ["MSG t a", "ERR lagging t 6-0 u 9-1"]
    assert fast.got == ["MSG t a", "MSG t b\nMSG t c"]
    fanout.deliver_entries("t", ["MSG t d"], ["8-0"])  # closing: nothing more, no error
    assert len(slow.got) == 2
    assert fanout.sent[fast] == {"t": "8-0"}
    assert fanout.sent[quiet] == {"u": "8-0"}
    assert stats.errors == {"lagging": 1}


def test_after_the_broker_lost_its_subscription_the_next_message_says_some_may_be_missing(
) -> None:
    fanout = Fanout(Stats())
    a, b = FakeSubscriber(), FakeSubscriber(room=1)
    fanout.add("t", a)
    fanout.add("t", b)
    fanout.deliver("t", "MSG t 0")
    fanout.lost_unknown()
    fanout.deliver("t", "MSG t 1")  # b refuses: still an unknown number
    b.room = 10
    fanout.deliver("t", "MSG t 2")
    fanout.deliver("t", "MSG t 3")
    assert a.got == ["MSG t 0", "GAP t ?\nMSG t 1", "MSG t 2", "MSG t 3"]
    assert b.got == ["MSG t 0", "GAP t ?\nMSG t 2", "MSG t 3"]


def test_a_streams_subscriber_is_told_when_the_broker_lost_entries_of_its_topic() -> None:
    fanout = Fanout(Stats())
    a, b = FakeSubscriber(), FakeSubscriber()
    fanout.add("t", a)
    fanout.add("u", b)
    fanout.lost_unknown("t")  # the stream of t was trimmed past what was read
    fanout.deliver_entries("t", ["MSG t x"], ["9-0"])
    fanout.deliver_entries("u", ["MSG u y"], ["9-1"])
    fanout.deliver_entries("t", ["MSG t z"], ["9-2"])
    assert a.got == ["GAP t ?\nMSG t x", "MSG t z"]
    assert b.got == ["MSG u y"]
