"""The sans-I/O TLS engine, two of them talking through memory: handshake, data both
ways, close_notify, ragged EOF, refused client certificates; no I/O imported."""

from __future__ import annotations

import ast
import ssl
from pathlib import Path

import pytest

from aiotcp.config import Config
from aiotcp.frontdoor import tlsengine
from aiotcp.frontdoor.context import ServerContext, TLSSetupError, build_server_context
from aiotcp.frontdoor.tlsengine import TLSClosed, TLSEngine
from support.certs import Certs


def pair(certs: Certs, client_cert: Path | None = None,
         mode: str = "none") -> tuple[TLSEngine, TLSEngine]:
    config = Config(tls_cert=str(certs.server), tls_key=str(certs.server),
                    tls_ca=str(certs.ca) if mode != "none" else "", tls_client_cert=mode)
    server = TLSEngine(build_server_context(config))
    client = TLSEngine(certs.client_context(client_cert), server_side=False,
                       server_hostname="localhost")
    return server, client


def pump(a: TLSEngine, b: TLSEngine) -> None:
    """Move bytes both ways until neither side has anything to send."""
    for _ in range(10):
        out_a, out_b = a.output(), b.output()
        if not out_a and not out_b:
            return
        if out_a:
            b.receive(out_a)
        if out_b:
            a.receive(out_b)


def handshake(server: TLSEngine, client: TLSEngine) -> None:
    for _ in range(10):
        done_c = client.handshake()
        pump(client, server)
        done_s = server.handshake()
        pump(client, server)
        if done_c and done_s:
            return
    raise AssertionError("handshake did not finish")


def test_round_trip_and_close_notify(certs: Certs) -> None:
    server, client = pair(certs)
    handshake(server, client)
    assert server.obj.version() in ("TLSv1.2", "TLSv1.3")
    client.write(b"hello")
    pump(client, server)
    assert server.read() == b"hello"
    assert server.read() == b""  # nothing more yet
    server.write(b"x" * 40000)  # several records
    pump(client, server)
    got = b""
    while chunk := client.read():
        got += chunk
    assert got == b"x" * 40000
    client.close_notify()
    client.write(b"ignored after close_notify")
    pump(client, server)
    with pytest.raises(TLSClosed) as closed:
        server.read()
    assert closed.value.clean


def test_ragged_eof(certs: Certs) -> None:
    server, client = pair(certs)
    handshake(server, client)
    server.receive_eof()
    assert server.has_pending()
    with pytest.raises(TLSClosed) as closed:
        server.read()
    assert not closed.value.clean


def test_required_client_certificate_missing(certs: Certs) -> None:
    server, client = pair(certs, mode="required")
    with pytest.raises(ssl.SSLError):
        handshake(server, client)
        client.write(b"hi")  # TLS 1.3: the client learns on its first read
        pump(client, server)
        server.read()


def test_client_certificate_verified(certs: Certs) -> None:
    server, client = pair(certs, client_cert=certs.client, mode="required")
    handshake(server, client)
    cert = server.obj.getpeercert()
    assert cert is not None and ("commonName", "client.aiotcp.test") in cert["subject"][-1]


def test_bad_files_raise_one_line(certs: Certs, tmp_path: Path) -> None:
    junk = tmp_path / "junk.pem"
    junk.write_text("junk\n")
    with pytest.raises(TLSSetupError, match="cannot load TLS certificate"):
        build_server_context(Config(tls_cert=str(junk), tls_key=str(junk)))
    with pytest.raises(TLSSetupError, match="cannot read TLS CA file"):
        build_server_context(Config(tls_cert=str(certs.server), tls_key=str(certs.server),
                                    tls_ca=str(tmp_path / "none.pem")))


def test_reload_swaps_the_context(certs: Certs, tmp_path: Path) -> None:
    live = tmp_path / "live.pem"
    live.write_bytes(certs.server.read_bytes())
    holder = ServerContext(Config(tls_cert=str(live), tls_key=str(live)))
    first = holder.current
    assert holder.reload() and holder.current is not first
    live.write_text("broken\n")
    kept = holder.current
    assert not holder.reload() and holder.current is kept


def test_tls12_minimum(certs: Certs) -> None:
    ctx = build_server_context(Config(tls_cert=str(certs.server), tls_key=str(certs.server)))
    assert ctx.minimum_version == ssl.TLSVersion.TLSv1_2


def test_engine_imports_no_io() -> None:
    tree = ast.parse(Path(tlsengine.__file__).read_text())
    names = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    names |= {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert not names & {"asyncio", "socket", "selectors", "time", "uvloop"}, names
