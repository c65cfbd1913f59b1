"""PROXY protocol headers through ``aiotcp serve`` on both loops: crafted v1/v2 headers
(valid, truncated, bad signature, oversized, untrusted source, trickled past the
handshake timeout), alone and in front of TLS."""

from __future__ import annotations

import socket
import time
from typing import Any

import pytest

from aiotcp.frontdoor.proxyproto import encode_v1, encode_v2
from support.certs import Certs
from support.clients import ACK, LineClient
from support.tls import TLSLineClient

CLIENT = ("203.0.113.7", 51234)
CLIENT6 = ("2001:db8::7", 40000)
PROXY_ADDR = ("192.0.2.1", 8888)
PEER_APP = ["--proxy-protocol", "--app", "peer_apps:peer"]
HANDSHAKE = 0.5
HANDSHAKE_LATEST = HANDSHAKE + 3.0


def closed_without_reply(c: LineClient) -> bool:
    """True if the server closes the connection having sent nothing."""
    try:
        data = c.sock.recv(4096)
    except ConnectionResetError:
        return True
    return data == b""


@pytest.mark.parametrize(
    "header, expected",
    [
        (encode_v1(CLIENT, PROXY_ADDR), "203.0.113.7 51234"),
        (encode_v1(CLIENT6, ("2001:db8::1", 443)), "2001:db8::7 40000"),
        (encode_v2(CLIENT, PROXY_ADDR), "203.0.113.7 51234"),
        (encode_v2(CLIENT6, ("2001:db8::1", 443), b"\x05\x00\x02id"), "2001:db8::7 40000"),
    ],
    ids=["v1-tcp4", "v1-tcp6", "v2-inet", "v2-inet6-tlv"],
)
def test_valid_header_sets_the_peer(loop: str, spawn_server: Any, header: bytes,
                                    expected: str) -> None:
    server = spawn_server(PEER_APP)
    c = LineClient(server.port)
    c.send(header + b"who\n")  # application bytes in the same segment pass through
    assert c.line() == expected
    assert c.ask("again") == expected
    c.close()
    server.stop()
    host, port = expected.split()
    # The access log names the client (IPv6 in brackets).
    assert f"{host}:{port} " in server.log or f"[{host}]:{port} " in server.log


def test_header_byte_by_byte(loop: str, spawn_server: Any) -> None:
    server = spawn_server(PEER_APP)
    c = LineClient(server.port)
    for b in encode_v2(CLIENT, PROXY_ADDR):
        c.send(bytes([b]))
    assert c.ask("who") == "203.0.113.7 51234"


@pytest.mark.parametrize("header", [encode_v2(None, None), b"PROXY UNKNOWN\r\n"],
                         ids=["v2-local", "v1-unknown"])
def test_local_is_served_as_it_comes(loop: str, spawn_server: Any, header: bytes) -> None:
    server = spawn_server(PEER_APP)
    c = LineClient(server.port)
    c.send(header)
    assert c.ask("who") == f"127.0.0.1 {c.sock.getsockname()[1]}"


@pytest.mark.parametrize(
    "data",
    [
        b"hello\n",  # no header at all
        b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n",  # LF without CR
        b"PROXY TCP4 " + b"9" * 120 + b"\r\n",  # over 107 bytes
        b"PROXY TCP4 1.2.3.4 5.6.7.8 1 99999\r\n",  # malformed port
        b"\r\n\r\n\x00\r\nQUIZ\n\x21\x11\x00\x0c" + bytes(12),  # bad v2 signature
    ],
    ids=["no-header", "lf-only", "oversized", "bad-port", "bad-v2-signature"],
)
def test_bad_header_is_closed_without_reply(loop: str, spawn_server: Any, data: bytes) -> None:
    server = spawn_server(PEER_APP)
    c = LineClient(server.port)
    c.send(data)
    assert closed_without_reply(c)
    server.wait_for_log("PROXY header refused from 127.0.0.1")
    assert LineClient(server.port).ask(encode_v1(CLIENT, PROXY_ADDR).decode() + "ok") \
        == "203.0.113.7 51234"


def test_truncated_header_then_eof(loop: str, spawn_server: Any) -> None:
    server = spawn_server(PEER_APP)
    c = LineClient(server.port)
    c.send(encode_v2(CLIENT, PROXY_ADDR)[:20])
    c.sock.shutdown(socket.SHUT_WR)
    assert closed_without_reply(c)
    server.wait_for_log(r"PROXY header refused .*\(malformed\)")


def test_untrusted_source_is_refused(loop: str, spawn_server: Any) -> None:
    server = spawn_server([*PEER_APP, "--proxy-trusted", "10.0.0.0/8"])
    c = LineClient(server.port)
    c.send(encode_v1(CLIENT, PROXY_ADDR) + b"who\n")
    assert closed_without_reply(c)
    server.wait_for_log(r"PROXY header refused from 127.0.0.1:\d+ \(untrusted\)")


def test_trickled_header_hits_the_handshake_timeout(loop: str, spawn_server: Any) -> None:
    server = spawn_server([*PEER_APP, "--handshake-timeout", str(HANDSHAKE)])
    c = LineClient(server.port, timeout=HANDSHAKE_LATEST)
    # A v2 header that declares 200 bytes of addresses and TLVs, trickled slowly.
    header = b"\r\n\r\n\x00\r\nQUIT\n\x21\x11\x00\xc8" + bytes(200)
    t0 = time.monotonic()
    closed = False
    for b in header:
        try:
            c.send(bytes([b]))
        except (BrokenPipeError, ConnectionResetError):
            closed = True
            break
        if time.monotonic() - t0 > HANDSHAKE_LATEST:
            break
        time.sleep(0.02)
    assert closed or closed_without_reply(c)
    assert HANDSHAKE * 0.9 <= time.monotonic() - t0 <= HANDSHAKE_LATEST + 1
    server.wait_for_log(r"\(timeout\): no complete PROXY header within 0.5s")


def test_proxy_header_then_tls(loop: str, spawn_server: Any, certs: Certs) -> None:
    server = spawn_server(certs.serve_args(*PEER_APP))
    c = TLSLineClient(server.port, certs.client_context(), prefix=encode_v2(CLIENT, PROXY_ADDR))
    assert c.ask("who") == "203.0.113.7 51234"


def test_proxy_header_required_before_tls(loop: str, spawn_server: Any, certs: Certs) -> None:
    server = spawn_server(certs.serve_args(*PEER_APP))
    with pytest.raises((ConnectionError, OSError)):
        c = TLSLineClient(server.port, certs.client_context())  # ClientHello, no header
        c.ask("who")
    server.wait_for_log(r"\(bad-signature\)")


def test_plain_tcp_unchanged_without_proxy(loop: str, spawn_server: Any) -> None:
    server = spawn_server(["--app", "peer_apps:peer"])
    c = LineClient(server.port)
    assert c.ask("who") == f"127.0.0.1 {c.sock.getsockname()[1]}"


def test_streams_api_behind_proxy(loop: str, spawn_server: Any) -> None:
    server = spawn_server(["--proxy-protocol", "--api", "streams",
                                 "--app", "cli_apps:handle_client"])
    c = LineClient(server.port)
    c.send(encode_v1(CLIENT, PROXY_ADDR) + b"hi")
    assert c.sock.recv(100).decode() == ACK + "hi"
    server.stop()
    assert "203.0.113.7:51234 " in server.log
