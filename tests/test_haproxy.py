"""A real HAProxy in front of ``aiotcp serve`` (TCP mode, ``send-proxy`` and
``send-proxy-v2``), with and without TLS: the server sees the client's real address.

The client connects from 127.0.0.2 while HAProxy connects to the server from
127.0.0.1, so a reply naming 127.0.0.2 and the client's own port can only come from
the PROXY header.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from support.certs import Certs
from support.clients import LineClient
from support.haproxy import HAProxy
from support.tls import TLSLineClient

CLIENT_SOURCE = "127.0.0.2"
PEER_APP = ["--proxy-protocol", "--app", "peer_apps:peer"]


@pytest.mark.parametrize("send_proxy", ["send-proxy", "send-proxy-v2"])
def test_plain_tcp_behind_haproxy(loop: str, spawn_server: Any, tmp_path: Path,
                                  send_proxy: str) -> None:
    server = spawn_server(PEER_APP)
    with HAProxy(server.port, send_proxy, tmp_path) as haproxy:
        c = LineClient(haproxy.port, source=CLIENT_SOURCE)
        expected = f"{CLIENT_SOURCE} {c.sock.getsockname()[1]}"
        assert c.ask("who am I") == expected
        assert c.ask("and now") == expected
        c.close()
    server.stop()
    assert f"aiotcp.access: {CLIENT_SOURCE}:" in server.log


@pytest.mark.parametrize("send_proxy", ["send-proxy", "send-proxy-v2"])
def test_tls_behind_haproxy(loop: str, spawn_server: Any, tmp_path: Path, certs: Certs,
                            send_proxy: str) -> None:
    server = spawn_server(certs.serve_args(*PEER_APP))
    with HAProxy(server.port, send_proxy, tmp_path) as haproxy:
        c = TLSLineClient(haproxy.port, certs.client_context(), source=CLIENT_SOURCE)
        expected = f"{CLIENT_SOURCE} {c.sock.getsockname()[1]}"
        assert c.ask("who am I") == expected
        c.close()


def test_direct_client_refused_when_proxy_untrusted(loop: str, spawn_server: Any,
                                                    tmp_path: Path) -> None:
    # Only 127.0.0.1 (where HAProxy connects from) may send a header: a client from
    # 127.0.0.2 forging one is refused, while the same client through HAProxy is served.
    server = spawn_server([*PEER_APP, "--proxy-trusted", "127.0.0.1/32"])
    forged = LineClient(server.port, source=CLIENT_SOURCE)
    forged.send(b"PROXY TCP4 1.1.1.1 127.0.0.1 1 2\r\nwho\n")
    assert forged.line() is None
    with HAProxy(server.port, "send-proxy-v2", tmp_path) as haproxy:
        c = LineClient(haproxy.port, source=CLIENT_SOURCE)
        assert c.ask("who") == f"{CLIENT_SOURCE} {c.sock.getsockname()[1]}"
