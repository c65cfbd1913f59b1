"""A subscriber never loses a message without being told (real sockets, real Redis).

- local and pub/sub modes (at-most-once): a subscriber too far behind misses messages,
  and gets ``GAP <topic> <n>`` before the next one it receives;
- streams mode: it is closed with ``ERR lagging <topic> <entry-id>``, and ``SUB <topic>
  FROM <entry-id>`` on another instance resumes after that entry: every message, in
  order, across the reconnect.

The subscriber's socket has a small receive buffer and it reads nothing while one
publisher pipelines megabytes: far over the 1 MiB push backlog (``conn.send`` refuses).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
from typing import Any

import pytest
import redis

from aiotcp.broker import KEY_PREFIX
from aiotcp.testing import Client
from support.pubsub import WAIT, Instance, connect, require_redis, subscribe, topic
from support.waiting import run_within

N, SIZE = 8000, 1000  # 8 MB: the push backlog, the socket buffers and then some
BODY = "x" * SIZE
RCVBUF = 4096
ACK = "已收到: "
# Reading pauses this long without a line before another end marker is published (a
# polling period: any value works, the test only waits longer or shorter).
QUIET = 0.2


def run(main: Any) -> None:
    run_within(main, 120)


async def slow_subscriber(port: int, t: str) -> Client:
    """A client subscribed to ``t`` whose socket takes little before the server must hold
    (or refuse) the rest."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    reader, writer = await asyncio.open_connection(sock=sock)
    c = Client(reader, writer, "line")
    assert await c.request(f"SUB {t}") == f"OK SUB {t}"
    return c


async def publish_all(port: int, t: str, texts: list[str]) -> None:
    """Pipeline every PUB at once on one connection; every ack comes back, in order."""
    pub = await connect(port)

    async def write() -> None:
        for i in range(0, len(texts), 500):
            pub.writer.write("".join(f"PUB {t} {x}\n" for x in texts[i:i + 500]).encode())
            await pub.writer.drain()

    writing = asyncio.create_task(write())
    for x in texts:
        assert await pub.recv(WAIT) == ACK + x
    await writing
    await pub.close()


def position(line: str, t: str) -> tuple[str, int]:
    """("msg", i) for ``MSG t i ...``, ("end", k) for ``MSG t end-k``, ("gap", n)."""
    if m := re.fullmatch(rf"GAP {re.escape(t)} (\d+)", line):
        return "gap", int(m.group(1))
    if m := re.fullmatch(rf"MSG {re.escape(t)} end-(\d+)", line):
        return "end", int(m.group(1))
    m = re.fullmatch(rf"MSG {re.escape(t)} (\d+) x+", line)
    assert m is not None, line[:80]
    return "msg", int(m.group(1))


@pytest.mark.parametrize("mode", ["local", "pubsub"])
def test_a_subscriber_that_missed_messages_is_told_how_many_before_the_next(mode: str) -> None:
    broker = require_redis() if mode == "pubsub" else ""
    t = topic("gap")
    with Instance(broker, "pubsub") as inst:

        async def main() -> None:
            slow = await slow_subscriber(inst.port, t)
            await publish_all(inst.port, t, [f"{i} {BODY}" for i in range(N)])
            # Now it reads. Markers follow until one reaches it: the last messages may
            # have been refused too, and a GAP comes only with a next message.
            pub = await connect(inst.port)
            lines: list[str] = []
            k = 0
            while not (lines and lines[-1].startswith(f"MSG {t} end-")):
                assert await pub.request(f"PUB {t} end-{k}") == f"{ACK}end-{k}"
                k += 1
                with contextlib.suppress(TimeoutError):
                    while True:  # what it has now (a marker may be refused: then another)
                        lines.append(await slow.recv(QUIET))
            # One publisher: messages 0..N-1 then end-0, end-1... Each received one is the
            # next expected, or a GAP says exactly how many were skipped before it.
            expected, gaps = 0, 0
            for line in lines:
                kind, n = position(line, t)
                if kind == "gap":
                    expected += n
                    gaps += 1
                else:
                    assert (n if kind == "msg" else N + n) == expected, (line[:40], expected)
                    expected += 1
            assert gaps > 0, "nothing was refused: the test did not make the subscriber lag"
            assert expected == N + int(lines[-1].rsplit("-", 1)[1]) + 1
            await slow.close()
            await pub.close()

        run(main)


def test_streams_a_lagging_subscriber_is_closed_naming_its_last_entry_and_resumes_elsewhere(
) -> None:
    url = require_redis()
    t = topic("lag")
    with Instance(url, "streams") as a, Instance(url, "streams") as b:

        async def main() -> None:
            slow = await slow_subscriber(a.port, t)
            await publish_all(a.port, t, [f"{i} {BODY}" for i in range(N)])
            got: list[int] = []
            while True:
                line = await slow.recv(WAIT)
                if line.startswith("ERR "):
                    break
                kind, i = position(line, t)
                assert kind == "msg"
                got.append(i)
            m = re.fullmatch(rf"ERR lagging {re.escape(t)} (\d+-\d+)", line)
            assert m is not None, line
            with pytest.raises(EOFError):  # and closed
                await slow.recv(WAIT)
            assert got == list(range(len(got))) and len(got) < N
            entry = m.group(1)
            # Its last entry is the one it got last.
            direct = redis.Redis.from_url(url)
            last = direct.xrange(KEY_PREFIX + t, entry, entry)
            assert last[0][1][b"text"].decode().split(" ")[0] == str(got[-1])

            again = await connect(b.port)  # another instance
            await again.send(f"SUB {t} FROM {entry}")
            rest: list[int] = []
            while (line := await again.recv(WAIT)) != f"OK SUB {t}":
                rest.append(position(line, t)[1])
            assert got + rest == list(range(N))
            pub = await connect(a.port)
            assert await pub.request(f"PUB {t} end-0") == f"{ACK}end-0"
            assert await again.recv(WAIT) == f"MSG {t} end-0"
            await again.close()
            await pub.close()

        run(main)


def test_streams_sub_from_an_entry_the_stream_no_longer_holds_is_refused_saying_so() -> None:
    url = require_redis()
    t = topic("trim")
    direct = redis.Redis.from_url(url)
    ids = [direct.xadd(KEY_PREFIX + t, {"text": str(i)}).decode() for i in range(20)]
    direct.xtrim(KEY_PREFIX + t, maxlen=5, approximate=False)
    with Instance(url, "streams") as inst:

        async def main() -> None:
            c = await connect(inst.port)
            reply = await c.request(f"SUB {t} FROM {ids[2]}")
            assert reply.startswith(f"ERR trimmed {t} no longer holds every entry after "), reply
            # What it still holds is replayed from an entry it holds.
            await c.send(f"SUB {t} FROM {ids[16]}")
            assert [await c.recv(WAIT) for _ in range(4)] == [
                f"MSG {t} {i}" for i in range(17, 20)] + [f"OK SUB {t}"]
            await c.close()

        run(main)


def test_sub_from_needs_streams_mode() -> None:
    with Instance("", "pubsub") as inst:

        async def main() -> None:
            c = await connect(inst.port)
            reply = await c.request("SUB news FROM 1-0")
            assert reply == "ERR bad-command FROM needs --broker-mode streams (entry IDs)"
            assert await c.request("SUB news") == "OK SUB news"  # it stays open
            await c.close()

        run(main)


def test_streams_sub_from_the_last_entry_gets_only_what_follows() -> None:
    url = require_redis()
    t = topic("from")
    with Instance(url, "streams", "--message-ids") as inst:

        async def main() -> None:
            live = await subscribe(inst.port, t)
            pub = await connect(inst.port)
            for i in range(3):
                assert await pub.request(f"PUB {t} {i}") == f"{ACK}{i}"
            first = [await live.recv(WAIT) for _ in range(3)]
            entry = first[0].split(" ")[2]
            c = await connect(inst.port)
            await c.send(f"SUB {t} FROM {entry}")
            assert [await c.recv(WAIT) for _ in range(3)] == [*first[1:], f"OK SUB {t}"]
            assert await pub.request(f"PUB {t} 3") == f"{ACK}3"
            assert (await c.recv(WAIT)).endswith(" 3")
            assert await c.request(f"SUB {t} FROM {entry}") == (
                f"ERR bad-command already subscribed to {t}")
            for x in (live, pub, c):
                await x.close()

        run(main)
