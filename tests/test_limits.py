"""Connection caps and abrupt disconnects, against a real server process on both loops."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import pytest

from aiotcp.apps import Ack
from aiotcp.config import Config, ConfigError
from aiotcp.server import Server
from support.certs import Certs
from support.clients import ACK, LineClient, closed_by_peer, served
from support.inprocess import RunServer
from support.process import SpawnServer
from support.waiting import wait_until, wait_until_async


def hold(port: int, n: int) -> list[LineClient]:
    """``n`` clients, each served once: they hold ``n`` slots."""
    clients = [LineClient(port) for _ in range(n)]
    for i, c in enumerate(clients):
        assert c.ask(f"c{i}") == f"{ACK}c{i}"
    return clients


def _refused(c: LineClient) -> str:
    """The refusal line of a client over a limit; asserts the server then closes it."""
    line = c.line()
    assert line is not None and line.startswith("ERR busy "), line
    assert c.eof()
    return line


def test_max_connections_refuses_then_recovers(spawn_server: SpawnServer) -> None:
    server = spawn_server(["--max-connections", "2"])
    a, b = hold(server.port, 2)
    c = LineClient(server.port)
    assert "limit 2" in _refused(c)
    c.close()
    # Still busy while both are held...
    assert not served(server.port)
    a.close()
    # ...and capacity returns once one leaves.
    wait_until(lambda: served(server.port), what="a free slot")
    assert b.ask("still") == ACK + "still"
    b.close()
    assert server.stop() == 0
    assert "Traceback" not in server.log, server.log


def test_max_connections_per_ip(spawn_server: SpawnServer) -> None:
    server = spawn_server(["--max-connections-per-ip", "2"])
    a, b = hold(server.port, 2)
    c = LineClient(server.port)
    assert "127.0.0.1" in _refused(c)
    c.close()
    # Another source address on the loopback network is not counted against 127.0.0.1.
    other = LineClient(server.port, source="127.0.0.2")
    assert other.ask("other") == ACK + "other"
    other.close()
    b.close()
    wait_until(lambda: served(server.port), what="a free slot")
    a.close()
    assert server.stop() == 0


@pytest.mark.parametrize("how", ["rst", "rst-mid-message", "fin-mid-message", "rst-async-busy"])
def test_abrupt_disconnect_frees_the_slot(how: str, spawn_server: SpawnServer) -> None:
    args = ["--max-connections", "1"]
    if how == "rst-async-busy":
        args += ["--app", "fault_apps:slow"]
    server = spawn_server(args)
    (a,) = hold(server.port, 1)
    assert not served(server.port)  # the one slot is taken
    if how == "rst":
        a.reset()
    elif how == "rst-mid-message":
        a.send("half a mess")
        a.reset()
    elif how == "fin-mid-message":
        a.send("half a mess")
        a.close()
    else:
        a.send("sleep:5\n")
        server.wait_for_log("fault_apps: sleeping for sleep:5")  # busy when the RST lands
        a.reset()
    wait_until(lambda: served(server.port), what="a free slot")
    assert server.stop() == 0
    log = server.log
    assert "Traceback" not in log, log
    assert " ERROR " not in log, log


@pytest.mark.parametrize("front", ["tls", "proxy"])
def test_connections_in_their_handshake_count_against_the_caps(
    front: str, spawn_server: SpawnServer, certs: Certs
) -> None:
    """Silent clients that never finish a TLS handshake or a PROXY header hold places:
    with TLS both caps apply from the accept; behind the PROXY protocol the per-IP cap
    waits for the header's address (the socket's is the proxy's), the total cap does
    not. Those over a cap are closed at once."""
    caps = ["--max-connections", "5", "--max-connections-per-ip", "2"]
    extra = certs.serve_args() if front == "tls" else ["--proxy-protocol"]
    server = spawn_server(caps + extra)
    socks = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(10)]
    held = 2 if front == "tls" else 5
    try:
        wait_until(lambda: sum(closed_by_peer(s) for s in socks) == len(socks) - held,
                   what=f"all but {held} handshaking connections refused")
        assert sum(closed_by_peer(s) for s in socks) == len(socks) - held
    finally:
        for s in socks:
            s.close()
    assert server.stop() == 0


@pytest.mark.parametrize(("spec", "expected"), [
    ("300", (1, 300, 100, 3)), ("5,2,4", (1, 5, 2, 4)), ("0", (0, None, None, None)),
])
def test_accepted_connections_carry_the_keepalive_settings(
    spec: str, expected: tuple[Any, ...], run_server: RunServer
) -> None:
    """A client that vanishes without FIN or RST is found by the kernel's probes."""

    async def client(server: Server, port: int) -> tuple[Any, ...]:
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        await wait_until_async(lambda: server.registry.members, what="the connection")
        sock = server.registry.members[0]._transport.get_extra_info("socket")  # type: ignore[attr-defined]
        on = sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE)
        got = (on, *(sock.getsockopt(socket.IPPROTO_TCP, opt) if on else None for opt in
                     (socket.TCP_KEEPIDLE, socket.TCP_KEEPINTVL, socket.TCP_KEEPCNT)))
        writer.close()
        return got

    assert run_server(Ack(), client, tcp_keepalive=spec) == expected


@pytest.mark.parametrize("spec", ["x", "5,2", "0,1,1", "-1"])
def test_a_bad_keepalive_setting_is_refused(spec: str) -> None:
    with pytest.raises(ConfigError, match="tcp_keepalive"):
        Config(tcp_keepalive=spec).validate()
