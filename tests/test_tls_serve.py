"""TLS end to end through ``aiotcp serve`` on both loops: round trips, client
certificates, the handshake timeout, idle timeout and drain through TLS, SIGHUP reload."""

from __future__ import annotations

import shutil
import signal
import socket
import ssl
import time
from pathlib import Path
from typing import Any

import pytest

from support.certs import Certs
from support.clients import ACK, LineClient
from support.process import run_aiotcp
from support.tls import EngineClient, TLSLineClient

HANDSHAKE = 0.5
# The handshake deadline fires on its own timer; allow scheduling noise on a busy machine.
HANDSHAKE_LATEST = HANDSHAKE + 3.0


def refused(certs: Certs, port: int, cert: Path | None) -> bool:
    """True if a client with ``cert`` gets no reply: the handshake or first read fails."""
    try:
        c = TLSLineClient(port, certs.client_context(cert))
        reply = c.ask("hello")
    except (ssl.SSLError, ConnectionError):
        return True
    return reply is None


def test_round_trip(loop: str, spawn_server: Any, certs: Certs) -> None:
    server = spawn_server(certs.serve_args())
    c = TLSLineClient(server.port, certs.client_context())
    assert c.ask("你好") == ACK + "你好"
    c.send("a\nb\nc\n")
    assert [c.line(), c.line(), c.line()] == [ACK + "a", ACK + "b", ACK + "c"]
    big = "x" * 60000  # several TLS records each way
    assert c.ask(big) == ACK + big
    c.close()


def test_tls12_client(loop: str, spawn_server: Any, certs: Certs) -> None:
    server = spawn_server(certs.serve_args())
    ctx = certs.client_context()
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    c = TLSLineClient(server.port, ctx)
    assert c.ask("twelve") == ACK + "twelve"
    assert isinstance(c.sock, ssl.SSLSocket) and c.sock.version() == "TLSv1.2"


def test_plaintext_client_is_closed_without_reply(loop: str, spawn_server: Any,
                                                   certs: Certs) -> None:
    server = spawn_server(certs.serve_args())
    c = LineClient(server.port)
    c.send("hello\n")
    assert c.line() is None
    assert server.alive()


def test_client_half_close_gets_every_reply(loop: str, spawn_server: Any,
                                            certs: Certs) -> None:
    server = spawn_server(certs.serve_args())
    c = EngineClient(server.port, certs.client_context())
    c.send(b"one\ntwo\npartial")
    c.close_notify()  # TLS's EOF; the socket stays open for the replies
    data, clean = c.read_to_end()
    assert data.decode() == f"{ACK}one\n{ACK}two\n"  # the partial frame is dropped
    assert clean  # the server answered with its own close_notify


def test_streams_api_over_tls(loop: str, spawn_server: Any, certs: Certs) -> None:
    server = spawn_server(
        certs.serve_args("--api", "streams", "--app", "cli_apps:handle_client")
    )
    c = TLSLineClient(server.port, certs.client_context())
    c.send("hi")
    assert c.sock.recv(100).decode() == ACK + "hi"


@pytest.mark.parametrize("mode", ["required", "optional"])
def test_client_certificate_accepted(loop: str, spawn_server: Any, certs: Certs,
                                     mode: str) -> None:
    server = spawn_server(certs.serve_args(
        "--tls-ca", str(certs.ca), "--tls-client-cert", mode,
        "--app", "peer_apps:subject",
    ))
    c = TLSLineClient(server.port, certs.client_context(certs.client))
    assert c.ask("who") == "client.aiotcp.test"


def test_client_certificate_required(loop: str, spawn_server: Any, certs: Certs) -> None:
    server = spawn_server(certs.serve_args(
        "--tls-ca", str(certs.ca), "--tls-client-cert", "required",
        "--app", "peer_apps:subject",
    ))
    assert refused(certs, server.port, None)
    assert refused(certs, server.port, certs.stranger)
    c = TLSLineClient(server.port, certs.client_context(certs.client))
    assert c.ask("who") == "client.aiotcp.test"  # and the server is still serving


def test_client_certificate_optional(loop: str, spawn_server: Any, certs: Certs) -> None:
    server = spawn_server(certs.serve_args(
        "--tls-ca", str(certs.ca), "--tls-client-cert", "optional",
        "--app", "peer_apps:subject",
    ))
    c = TLSLineClient(server.port, certs.client_context())
    assert c.ask("who") == "-"
    assert refused(certs, server.port, certs.stranger)  # offered, but not ours: refused


def _closed_within(sock: socket.socket, latest: float) -> float:
    """Seconds until the server closes ``sock`` (EOF or reset); fails after ``latest``."""
    t0 = time.monotonic()
    sock.settimeout(latest)
    try:
        while sock.recv(4096):
            pass
    except ConnectionResetError:
        pass
    except TimeoutError:
        raise AssertionError(f"not closed within {latest}s") from None
    return time.monotonic() - t0


def test_handshake_timeout_silent_client(loop: str, spawn_server: Any, certs: Certs) -> None:
    server = spawn_server(certs.serve_args("--handshake-timeout", str(HANDSHAKE)))
    sock = socket.create_connection(("127.0.0.1", server.port))
    elapsed = _closed_within(sock, HANDSHAKE_LATEST)
    assert elapsed >= HANDSHAKE * 0.9
    server.wait_for_log("TLS handshake from 127.0.0.1:.* not finished within 0.5s")
    c = TLSLineClient(server.port, certs.client_context())
    assert c.ask("after") == ACK + "after"


def test_handshake_timeout_trickling_client(loop: str, spawn_server: Any,
                                            certs: Certs) -> None:
    server = spawn_server(certs.serve_args("--handshake-timeout", str(HANDSHAKE)))
    # A real ClientHello, sent one byte per 50 ms: never complete in time.
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = certs.client_context().wrap_bio(incoming, outgoing, server_hostname="localhost")
    with pytest.raises(ssl.SSLWantReadError):
        obj.do_handshake()
    hello = outgoing.read()
    sock = socket.create_connection(("127.0.0.1", server.port))
    t0 = time.monotonic()
    sock.settimeout(HANDSHAKE_LATEST)
    closed = False
    for i in range(len(hello)):
        try:
            sock.sendall(hello[i : i + 1])
        except (BrokenPipeError, ConnectionResetError):
            closed = True
            break
        if time.monotonic() - t0 > HANDSHAKE_LATEST:
            break
        time.sleep(0.05)
    if not closed:
        _closed_within(sock, HANDSHAKE_LATEST)
    assert HANDSHAKE * 0.9 <= time.monotonic() - t0 <= HANDSHAKE_LATEST + 1


def test_idle_timeout_through_tls(loop: str, spawn_server: Any, certs: Certs) -> None:
    server = spawn_server(certs.serve_args("--idle-timeout", "0.5"))
    c = TLSLineClient(server.port, certs.client_context())
    line = c.line()
    assert line is not None and line.startswith("ERR idle-timeout"), line
    assert c.eof()


def test_drain_sends_err_shutdown_then_close_notify(loop: str, spawn_server: Any,
                                                     certs: Certs) -> None:
    server = spawn_server(certs.serve_args())
    c = TLSLineClient(server.port, certs.client_context())
    assert c.ask("before") == ACK + "before"
    server.signal(signal.SIGTERM)
    line = c.line()
    assert line is not None and line.startswith("ERR shutdown"), line
    assert c.eof()  # close_notify: a clean TLS EOF, not a reset
    assert server.wait(10) == 0


def test_sighup_reloads_certificate(loop: str, spawn_server: Any, certs: Certs,
                                    tmp_path: Path) -> None:
    live = tmp_path / "live.pem"
    shutil.copy(certs.server, live)
    server = spawn_server(["--tls-cert", str(live), "--tls-key", str(live)])
    old = TLSLineClient(server.port, certs.client_context())
    assert old.ask("one") == ACK + "one"
    first = old.peer_certificate()
    shutil.copy(certs.server2, live)
    server.wait_for_log("serving app")  # signal handlers are installed by then
    server.signal(signal.SIGHUP)
    server.wait_for_log("TLS certificate reloaded")
    new = TLSLineClient(server.port, certs.client_context())
    assert new.ask("two") == ACK + "two"
    assert new.peer_certificate() != first
    assert new.peer_certificate() == ssl.PEM_cert_to_DER_cert(
        _last_cert(certs.server2.read_text())
    )
    assert old.ask("still here") == ACK + "still here"  # the open connection survived


def test_sighup_with_a_broken_file_keeps_serving(loop: str, spawn_server: Any,
                                                  certs: Certs, tmp_path: Path) -> None:
    live = tmp_path / "live.pem"
    shutil.copy(certs.server, live)
    server = spawn_server(["--tls-cert", str(live), "--tls-key", str(live)])
    live.write_text("not a certificate\n")
    server.wait_for_log("serving app")  # signal handlers are installed by then
    server.signal(signal.SIGHUP)
    server.wait_for_log("TLS reload failed, keeping the previous certificate")
    c = TLSLineClient(server.port, certs.client_context())
    assert c.ask("fine") == ACK + "fine"


@pytest.mark.parametrize("missing", ["certificate", "key", "CA file"])
def test_a_missing_tls_file_is_one_line_naming_it(
    certs: Certs, tmp_path: Path, missing: str
) -> None:
    """Before any loop runs: once is enough."""
    gone = str(tmp_path / "nope.pem")
    files = {"certificate": str(certs.server), "key": str(certs.server), "CA file": str(certs.ca)}
    files[missing] = gone
    r = run_aiotcp("serve", "--port", "0", "--tls-cert", files["certificate"],
                   "--tls-key", files["key"], "--tls-ca", files["CA file"])  # fmt: skip
    assert r.returncode == 1
    assert r.stderr.strip().splitlines()[-1].endswith(
        f"cannot read TLS {missing} {gone}: No such file or directory"
    ), r.stderr
    assert "Traceback" not in r.stderr


def _last_cert(pem: str) -> str:
    """The leaf certificate of a key + chain PEM file (trustme writes key, then leaf)."""
    begin = "-----BEGIN CERTIFICATE-----"
    leaf = pem[pem.index(begin):]
    end = "-----END CERTIFICATE-----"
    return leaf[: leaf.index(end) + len(end)] + "\n"


def test_client_not_reading_is_paused_then_dropped(loop: str, spawn_server: Any,
                                                    certs: Certs) -> None:
    server = spawn_server(certs.serve_args("--write-timeout", "1"))
    c = TLSLineClient(server.port, certs.client_context(), timeout=2.0)
    chunk = ("x" * 1000 + "\n") * 64
    sent = 0
    try:
        while sent < 200_000_000:  # bounded: the server stops reading long before
            c.send(chunk)
            sent += len(chunk)
    except (TimeoutError, ConnectionError, ssl.SSLError):
        pass  # our sends block: the server has stopped reading from us
    assert sent < 200_000_000, "the server never stopped reading"
    server.wait_for_log("close=write-timeout", timeout=15)
    other = TLSLineClient(server.port, certs.client_context())
    assert other.ask("others still served") == ACK + "others still served"
