"""The front door in process, on both loops: its counters and log, flow control through
TLS, an inner protocol that pauses or raises, and the factory's plain-TCP shortcut."""

from __future__ import annotations

import asyncio
import socket
import ssl
from typing import Any

import pytest

from aiotcp.config import Config
from aiotcp.frontdoor import front_door
from aiotcp.frontdoor.proxyproto import encode_v1
from aiotcp.frontdoor.tlsengine import TLSEngine
from aiotcp.observe.stats import Stats
from aiotcp.registry import Registry
from aiotcp.server import Server
from support.certs import Certs

ACK = "已收到: "


def ack(message: str, conn: Any) -> str:
    return ACK + message


def tls_settings(certs: Certs, **more: Any) -> dict[str, Any]:
    return {"tls_cert": str(certs.server), "tls_key": str(certs.server), **more}


async def closed(reader: asyncio.StreamReader) -> bytes:
    """What the server sent before closing (a reset counts as closing)."""
    try:
        async with asyncio.timeout(10):
            return await reader.read()
    except ConnectionResetError:
        return b""


def registry(config: Config) -> Registry:
    """The admission a front door holds handshake places in (the server's registry)."""
    return Registry(config, Stats(), max_connections=100)


def test_plain_tcp_gets_no_front_door() -> None:
    """The server then listens with its own factory: plain TCP pays nothing."""
    assert front_door(Config(), Stats(), registry(Config())) is None


def test_tls_counters(run_server: Any, certs: Certs) -> None:
    async def client(server: Server, port: int) -> Stats:
        # A plaintext client on the TLS port: a failed handshake.
        r, w = await asyncio.open_connection("127.0.0.1", port)
        w.write(b"GET / HTTP/1.0\r\n\r\n")
        assert await closed(r) == b""
        # A silent client: a handshake timeout.
        r, w = await asyncio.open_connection("127.0.0.1", port)
        assert await closed(r) == b""
        # A client that connects and leaves: neither.
        r, w = await asyncio.open_connection("127.0.0.1", port)
        w.close()
        r, w = await asyncio.open_connection(
            "127.0.0.1", port, ssl=certs.client_context(), server_hostname="localhost",
        )
        w.write(b"ok\n")
        assert await r.readline() == (ACK + "ok\n").encode()
        w.close()
        return server.stats

    stats = run_server(ack, client, handshake_timeout=0.3, **tls_settings(certs))
    assert (stats.tls_handshake_failures, stats.handshake_timeouts) == (1, 1)
    assert stats.proxy_rejected == {}


def test_proxy_counters(run_server: Any) -> None:
    async def client(server: Server, port: int) -> Stats:
        for data in (b"hello\n", b"PROXY TCP4 1.2.3.4 5.6.7.8 1 99999\r\n", b"PROXY TCP4 "):
            r, w = await asyncio.open_connection("127.0.0.1", port)
            w.write(data)
            assert await closed(r) == b""
        r, w = await asyncio.open_connection("127.0.0.1", port)
        w.write(encode_v1(("198.51.100.9", 4242), ("127.0.0.1", port)) + b"who\n")
        assert await r.readline() == b"198.51.100.9 4242\n"
        w.close()
        return server.stats

    def peer(message: str, conn: Any) -> str:
        return f"{conn.peer[0]} {conn.peer[1]}"

    stats = run_server(peer, client, proxy_protocol=True, handshake_timeout=0.3)
    assert stats.proxy_rejected == {"bad-signature": 1, "malformed": 1, "timeout": 1}
    assert stats.handshake_timeouts == 1
    assert stats.tls_handshake_failures == 0


def test_untrusted_counter(run_server: Any) -> None:
    async def client(server: Server, port: int) -> Stats:
        r, w = await asyncio.open_connection("127.0.0.1", port)
        w.write(encode_v1(("198.51.100.9", 4242), ("127.0.0.1", port)) + b"who\n")
        assert await closed(r) == b""
        return server.stats

    stats = run_server(ack, client, proxy_protocol=True, proxy_trusted="10.0.0.0/8")
    assert stats.proxy_rejected == {"untrusted": 1}


def test_prometheus_families() -> None:
    from aiotcp.observe.prometheus import exposition, make_registry

    stats = Stats()
    stats.proxy_rejected["untrusted"] = 2
    stats.handshake_timeouts = 3
    stats.tls_handshake_failures = 4
    text = exposition(make_registry(stats.snapshot)).decode()
    assert 'aiotcp_proxy_rejected_total{reason="untrusted"} 2.0' in text
    assert 'aiotcp_proxy_rejected_total{reason="timeout"} 0.0' in text
    assert "aiotcp_handshake_timeouts_total 3.0" in text
    assert "aiotcp_tls_handshake_failures_total 4.0" in text


class Recorder(asyncio.Protocol):
    """An inner protocol that records plaintext, pausing after the first chunk."""

    def __init__(self, pause_after_first: bool = False, explode: bool = False) -> None:
        self.chunks: list[bytes] = []
        self.transport: Any = None
        self.pause_after_first = pause_after_first
        self.explode = explode
        self.lost = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        if self.explode:
            raise RuntimeError("inner protocol bug")
        self.chunks.append(data)
        if self.pause_after_first and len(self.chunks) == 1:
            self.transport.pause_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.lost.done():
            self.lost.set_result(exc)


async def serve_pair(certs: Certs, inner: Recorder) -> tuple[socket.socket, TLSEngine]:
    """A FrontDoor on one end of a socket pair, a handshaken client engine on the other."""
    loop = asyncio.get_running_loop()
    config = Config(**tls_settings(certs))
    wrapper = front_door(config, Stats(), registry(config))
    assert wrapper is not None
    factory = wrapper(lambda: inner)
    ours, theirs = socket.socketpair()
    await loop.connect_accepted_socket(factory, theirs)
    ours.setblocking(False)
    engine = TLSEngine(certs.client_context(), server_side=False, server_hostname="localhost")
    while not engine.handshake():
        await loop.sock_sendall(ours, engine.output())
        engine.receive(await loop.sock_recv(ours, 65536))
    await loop.sock_sendall(ours, engine.output())
    return ours, engine


async def until(predicate: Any) -> None:
    async with asyncio.timeout(10):
        while not predicate():
            await asyncio.sleep(0.005)


def test_pause_reading_holds_decrypted_data(loop: str, certs: Certs) -> None:
    async def main() -> None:
        inner = Recorder(pause_after_first=True)
        sock, engine = await serve_pair(certs, inner)
        engine.write(b"first")
        engine.write(b"second")  # two records, one segment
        await asyncio.get_running_loop().sock_sendall(sock, engine.output())
        await until(lambda: inner.chunks)
        for _ in range(20):
            await asyncio.sleep(0)
        assert inner.chunks == [b"first"]
        inner.transport.resume_reading()
        await until(lambda: len(inner.chunks) == 2)
        assert inner.chunks == [b"first", b"second"]
        inner.transport.close()
        assert await inner.lost is None
        sock.close()

    _run(loop, main())


def test_inner_error_aborts_only_that_connection(loop: str, certs: Certs) -> None:
    async def main() -> None:
        inner = Recorder(explode=True)
        sock, engine = await serve_pair(certs, inner)
        engine.write(b"boom")
        await asyncio.get_running_loop().sock_sendall(sock, engine.output())
        async with asyncio.timeout(10):
            await inner.lost  # aborted, and nothing escaped into the loop
        sock.close()

    _run(loop, main())


def test_extra_info(loop: str, certs: Certs) -> None:
    async def main() -> None:
        inner = Recorder()
        sock, _ = await serve_pair(certs, inner)
        await until(lambda: inner.transport is not None)
        t = inner.transport
        assert isinstance(t.get_extra_info("ssl_object"), ssl.SSLObject)
        assert t.get_extra_info("cipher")[1] in ("TLSv1.2", "TLSv1.3")
        assert t.get_extra_info("peercert") is None  # no client certificate asked for
        assert t.get_extra_info("sockname") is not None
        assert t.get_extra_info("nonesuch", "dflt") == "dflt"
        assert t.can_write_eof() and not t.is_closing()
        t.set_write_buffer_limits(high=1000, low=100)
        assert t.get_write_buffer_size() == 0
        t.abort()
        await inner.lost
        sock.close()

    _run(loop, main())


def _run(loop: str, coro: Any) -> None:
    from aiotcp.runner import loop_factory

    with asyncio.Runner(loop_factory=loop_factory(Config(loop=loop))) as runner:
        runner.run(coro)


def test_corrupt_record_closes_the_connection(loop: str, certs: Certs) -> None:
    async def main() -> None:
        inner = Recorder()
        sock, engine = await serve_pair(certs, inner)
        # A TLS application-data record header followed by bytes that decrypt to nothing.
        await asyncio.get_running_loop().sock_sendall(sock, b"\x17\x03\x03\x00\x20" + bytes(32))
        async with asyncio.timeout(10):
            await inner.lost
        assert inner.chunks == []
        sock.close()

    _run(loop, main())


def test_trust_matches_cidrs_and_mapped_ipv4() -> None:
    from aiotcp.frontdoor.gate import Gate

    config = Config(proxy_protocol=True, proxy_trusted="10.0.0.0/8, ::1/128")
    gate = Gate(asyncio.Protocol, config, Stats(), registry(config))
    assert gate.trusts(("10.1.2.3", 5))
    assert gate.trusts(("::ffff:10.1.2.3", 5, 0, 0))
    assert gate.trusts(("::1", 5, 0, 0))
    assert not gate.trusts(("11.0.0.1", 5))
    assert not gate.trusts("/tmp/sock")
    assert not gate.trusts(("not-an-ip", 5))


def test_shutdown_aborts_handshakes_in_progress(loop: str, certs: Certs) -> None:
    async def main() -> None:
        config = Config(host="127.0.0.1", port=0, loop=loop, handshake_timeout=0,
                        **tls_settings(certs))
        server = Server(ack, config)
        await server.start()
        r, w = await asyncio.open_connection("127.0.0.1", server.addresses[0][1])
        w.write(b"\x16\x03\x01")  # the first bytes of a ClientHello, and no more
        await w.drain()
        assert server.front_door is not None
        await until(lambda: len(server.front_door.gate.pending) == 1)  # type: ignore[union-attr]
        await server.shutdown()
        assert await closed(r) == b""
        w.close()

    _run(loop, main())


def test_rejections_are_logged_rate_limited(caplog: pytest.LogCaptureFixture) -> None:
    from aiotcp.frontdoor.gate import REJECTIONS_LOGGED_PER_INTERVAL, Gate

    stats = Stats()
    gate = Gate(asyncio.Protocol, Config(proxy_protocol=True), stats,
                registry(Config(proxy_protocol=True)))
    with caplog.at_level("WARNING", logger="aiotcp"):
        for i in range(50):
            gate.rejected(("192.0.2.1", i), "bad-signature", "not a PROXY header")
    assert stats.proxy_rejected == {"bad-signature": 50}
    refused = [r for r in caplog.records if "PROXY header refused" in r.getMessage()]
    assert len(refused) == REJECTIONS_LOGGED_PER_INTERVAL
