"""Every server feature through every kind of codec: a user's own (netstrings, plugged in
with ``codec=``), ``--binary`` built-ins (varint, line), a text one (length) and the
Redis protocol (requests and replies framed apart), on both loops. The client is
``aiotcp.testing``'s, which speaks the server's codec (RESP: ``support.resp.RespClient``)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import AsyncIterator
from typing import Any

import pytest

import aiotcp
from aiotcp.config import Config
from aiotcp.resp import MAX_BULK_LEN, RespCodec
from aiotcp.runner import loop_factory
from aiotcp.server import Server
from aiotcp.testing import MAX_REPLY, Client
from support.apps import codec_apps
from support.apps.codec_apps import Netstring
from support.certs import Certs
from support.clients import LineClient
from support.process import SpawnServer
from support.resp import RespClient
from support.waiting import HANG_GUARD, wait_until, wait_until_async

MAX_LINE = 128

# name -> settings that choose the codec
CODECS: dict[str, dict[str, Any]] = {
    "netstring": {"codec": "support.apps.codec_apps:Netstring"},
    "varint-binary": {"framing": "varint", "binary": True},
    "line-binary": {"framing": "line", "binary": True},
    "length-text": {"framing": "length"},
    "resp": {"codec": "aiotcp.resp:RespCodec"},
}


def as_message(codec: str, text: str) -> Any:
    """``text`` as this codec's message type (RESP: a command of one argument)."""
    if codec == "resp":
        return [text.encode()]
    return text if codec == "length-text" else text.encode()


def as_reply(codec: str, text: str) -> Any:
    """``text`` as the client decodes this codec's reply."""
    return text.encode() if codec == "resp" else as_message(codec, text)


def err(codec: str, text: str) -> Any:
    return as_reply(codec, text)


def over_the_limit(codec: str, client: Client) -> tuple[bytes, Any]:
    """A frame past the codec's limit and the error it is answered with."""
    if codec == "resp":  # a bulk length over Redis's, refused when its header arrives
        return (b"*1\r\n$%d\r\n" % (MAX_BULK_LEN + 1),
                err(codec, "ERR Protocol error: invalid bulk length"))
    return (client.codec.encode([as_message(codec, "x" * (MAX_LINE + 1))]),
            err(codec, f"ERR too-long frame exceeds {MAX_LINE} bytes"))


async def ack(message: Any, conn: Any) -> Any:
    """Acks bytes or str (a RESP command: its first argument); ``sleep:S`` sleeps first."""
    if isinstance(message, list):
        message = message[0]
    text = message.decode() if isinstance(message, bytes) else message
    if text.startswith("sleep:"):
        await asyncio.sleep(float(text[6:].split()[0]))
    return (b"ack:" if isinstance(message, bytes) else "ack:") + message


@contextlib.asynccontextmanager
async def serving(name: str, loop: str, handler: Any = ack, **settings: Any
                  ) -> AsyncIterator[Server]:
    config = Config(host="127.0.0.1", port=0, loop=loop, max_line=MAX_LINE,
                    **{**CODECS[name], **settings})
    server = Server(handler, config)
    await server.start()
    try:
        yield server
    finally:
        await server.shutdown()


async def client(server: Server, tls: ssl.SSLContext | None = None, proxy: bool = False
                 ) -> Client:
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", server.addresses[0][1], ssl=tls,
        server_hostname="localhost" if tls else None,
    )
    if proxy:
        writer.write(b"PROXY TCP4 203.0.113.9 127.0.0.1 40000 8888\r\n")
    codec = server.codec_factory(MAX_REPLY)
    return Client(reader, writer, RespClient() if isinstance(codec, RespCodec) else codec)


async def eof(c: Client) -> bool:
    try:
        await c.recv()
    except EOFError:
        return True
    return False


def run(loop: str, coro: Any) -> Any:
    with asyncio.Runner(loop_factory=loop_factory(Config(loop=loop))) as runner:
        return runner.run(asyncio.wait_for(coro, HANG_GUARD))


@pytest.fixture(params=list(CODECS))
def codec(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def test_pipelined_messages_are_answered_in_order(codec: str, loop: str) -> None:
    async def main() -> list[Any]:
        async with serving(codec, loop) as server:
            c = await client(server)
            await c.send(*[as_message(codec, f"m{i}") for i in range(50)])
            return [await c.recv() for _ in range(50)]

    assert run(loop, main()) == [as_reply(codec, f"ack:m{i}") for i in range(50)]


def test_a_frame_over_the_limit_is_answered_then_the_connection_closes(
    codec: str, loop: str
) -> None:
    async def main() -> tuple[list[Any], bool]:
        async with serving(codec, loop) as server:
            c = await client(server)
            frame, error = over_the_limit(codec, c)
            c.writer.write(c.codec.encode([as_message(codec, "a")]) + frame)
            return [await c.recv(), await c.recv()], error, await eof(c)

    replies, error, closed = run(loop, main())
    assert replies == [as_reply(codec, "ack:a"), error]
    assert closed


def test_max_pipeline_pauses_reading_and_loses_nothing(codec: str, loop: str) -> None:
    async def main() -> tuple[list[Any], bool]:
        async with serving(codec, loop, max_pipeline=4) as server:
            c = await client(server)
            await c.send(*[as_message(codec, f"sleep:0.002 {i}") for i in range(40)])
            paused = False

            async def watch() -> None:
                nonlocal paused
                while not paused:
                    members = server.registry.members
                    paused = bool(members and members[0].reading_paused)  # type: ignore[attr-defined]
                    await asyncio.sleep(0)

            watcher = asyncio.ensure_future(watch())
            replies = [await c.recv() for _ in range(40)]
            watcher.cancel()
            return replies, paused

    replies, paused = run(loop, main())
    assert replies == [as_reply(codec, f"ack:sleep:0.002 {i}") for i in range(40)]
    assert paused


def test_concurrent_handlers_answer_in_message_order(codec: str, loop: str) -> None:
    async def main() -> list[Any]:
        async with serving(codec, loop, handler_concurrency=8) as server:
            c = await client(server)
            # Later messages finish first: replies must still leave in order.
            await c.send(*[as_message(codec, f"sleep:{0.03 - i * 0.003:.3f}") for i in range(8)])
            return [await c.recv() for _ in range(8)]

    assert run(loop, main()) == [
        as_reply(codec, f"ack:sleep:{0.03 - i * 0.003:.3f}") for i in range(8)
    ]


def test_idle_timeout_speaks_the_codec(codec: str, loop: str) -> None:
    async def main() -> tuple[Any, bool]:
        async with serving(codec, loop, idle_timeout=0.2) as server:
            c = await client(server)
            return await c.recv(), await eof(c)

    assert run(loop, main()) == (err(codec, "ERR idle-timeout no complete message for 0.2s"),
                                 True)


def test_shutdown_answers_then_says_so_in_the_codec(codec: str, loop: str) -> None:
    async def main() -> tuple[list[Any], bool]:
        async with serving(codec, loop) as server:
            c = await client(server)
            await c.send(as_message(codec, "sleep:0.05"))
            await wait_until_async(lambda: server.registry.members
                                   and server.registry.members[0].busy, what="busy")
            stopping = asyncio.ensure_future(server.shutdown())
            out = [await c.recv(), await c.recv()], await eof(c)
            await c.close()
            await stopping
            return out

    assert run(loop, main()) == (
        [as_reply(codec, "ack:sleep:0.05"), err(codec, "ERR shutdown server is shutting down")],
        True,
    )


@pytest.mark.parametrize("front", ["tls", "proxy"])
def test_behind_tls_and_the_proxy_protocol(codec: str, front: str, loop: str,
                                           certs: Certs) -> None:
    settings: dict[str, Any] = (
        {"tls_cert": str(certs.server), "tls_key": str(certs.server)} if front == "tls"
        else {"proxy_protocol": True}
    )

    async def main() -> tuple[Any, Any]:
        async with serving(codec, loop, **settings) as server:
            tls = certs.client_context() if front == "tls" else None
            c = await client(server, tls=tls, proxy=front == "proxy")
            reply = await c.request(as_message(codec, "hi"))
            return reply, server.registry.members[0].peer

    reply, peer = run(loop, main())
    assert reply == as_reply(codec, "ack:hi")
    assert peer[0] == ("203.0.113.9" if front == "proxy" else "127.0.0.1")


def test_a_violation_closes_that_client_alone_counted_and_logged_in_one_line(
    loop: str, caplog: pytest.LogCaptureFixture
) -> None:
    async def main() -> tuple[list[Any], bool, Any, dict[str, int]]:
        async with serving("netstring", loop) as server:
            good, bad = await client(server), await client(server)
            bad.writer.write(b"2:ok,3:abc;")  # the second netstring lacks its ','
            replies = [await bad.recv(), await bad.recv()]
            closed = await eof(bad)
            still = await good.request(b"fine")
            return replies, closed, still, dict(server.stats.errors)

    with caplog.at_level(logging.WARNING, logger="aiotcp"):
        replies, closed, still, errors = run(loop, main())
    assert replies == [b"ack:ok", b"ERR bad-frame a netstring ends in ','"]
    assert closed and still == b"ack:fine"
    assert errors == {"bad-frame": 1}
    lines = [r.getMessage() for r in caplog.records if "protocol error" in r.getMessage()]
    assert len(lines) == 1 and "bad-frame" in lines[0]
    assert "Traceback" not in caplog.text


def test_a_codec_that_raises_closes_that_connection_and_logs_the_bug(
    loop: str, caplog: pytest.LogCaptureFixture
) -> None:
    async def main() -> tuple[bool, Any]:
        async with serving("netstring", loop, codec="support.apps.codec_apps:Broken") as server:
            good, bad = await client(server), await client(server)
            bad.writer.write(b"4:boom,")
            closed = await eof(bad)
            return closed, await good.request(b"fine")

    closed, still = run(loop, main())
    assert closed and still == b"ack:fine"
    assert "codec raised KeyError" in caplog.text


def test_messages_complete_at_eof_are_answered(loop: str) -> None:
    """A codec's eof(): a last message that ends where the stream ends."""

    async def main() -> bytes:
        config = Config(host="127.0.0.1", port=0, loop=loop,
                        codec="support.apps.codec_apps:Tail")
        async with contextlib.AsyncExitStack() as stack:
            server = Server(codec_apps.sync_handle, config)
            await server.start()
            stack.push_async_callback(server.shutdown)
            reader, writer = await asyncio.open_connection("127.0.0.1", server.addresses[0][1])
            writer.write(b"a\nb")
            writer.write_eof()
            return await reader.read()

    assert run(loop, main()) == b"ack:a\nack:b\n"


def test_an_app_carries_its_codec(loop: str) -> None:
    async def main() -> Any:
        server = Server(codec_apps.app, Config(host="127.0.0.1", port=0, loop=loop))
        await server.start()
        try:
            c = await client(server)
            return await c.request(b"hi")
        finally:
            await server.shutdown()

    assert run(loop, main()) == b"ack:hi"


def test_a_missing_codec_is_one_line_and_exit_1(spawn_server: SpawnServer) -> None:
    for spec, says in (("codec_apps:Nope", "has no attribute 'Nope'"),
                       ("no_such_module:X", "cannot import codec module 'no_such_module'"),
                       ("codec_apps:MAX_DIGITS", "is not a class or factory")):
        server = spawn_server(["--codec", spec], listening=False)
        assert server.wait() == 1
        assert says in server.log and "Traceback" not in server.log, server.log


def test_workers_metrics_and_the_access_log_with_a_user_codec(spawn_server: SpawnServer
                                                                ) -> None:
    server = spawn_server(["--workers", "2", "--codec", "codec_apps:Netstring",
                           "--app", "codec_apps:sync_handle"])
    codec = Netstring(MAX_REPLY)
    for i in range(4):  # connections spread over both workers
        with LineClient(server.port) as c:
            c.send(b"%d:%s," % (len(f"m{i}"), f"m{i}".encode()))
            got: list[bytes] = []
            wait_until(lambda: got.extend(codec.feed(c.sock.recv(4096))) or got,  # noqa: B023
                       what="the reply")
            assert got == [f"ack:m{i}".encode()]
    assert server.stop() == 0
    assert server.log.count(" messages=1 ") == 4, server.log  # the access log, per worker
