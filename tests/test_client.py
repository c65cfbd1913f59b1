"""``aiotcp client`` against a real ``aiotcp serve``: piped stdin, every framing, TLS,
and one-line errors (exit 1) when it cannot connect or the handshake fails."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

from support.certs import Certs
from support.clients import ACK
from support.ports import free_port
from support.process import child_env


def client(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "aiotcp", "client", *args],
        check=False, input=stdin, capture_output=True, text=True, timeout=60, env=child_env(),
    )


def test_pipe_line_framing(spawn_server: Any) -> None:
    server = spawn_server()
    out = client("--port", str(server.port), stdin="你好\nsecond\n\n")
    assert out.returncode == 0, out.stderr
    assert out.stdout == f"{ACK}你好\n{ACK}second\n{ACK}\n"


def test_pipe_length_framing(spawn_server: Any) -> None:
    server = spawn_server(["--framing", "length"])
    out = client("--port", str(server.port), "--framing", "length", stdin="a\nb c\n")
    assert out.returncode == 0, out.stderr
    assert out.stdout == f"{ACK}a\n{ACK}b c\n"


def test_pipe_raw_framing(spawn_server: Any) -> None:
    server = spawn_server(["--framing", "raw"])
    out = client("--port", str(server.port), "--framing", "raw", stdin="你好\n")
    assert out.returncode == 0, out.stderr
    assert out.stdout == f"{ACK}你好\n"


def test_last_line_without_newline(spawn_server: Any) -> None:
    server = spawn_server()
    out = client("--port", str(server.port), stdin="one\ntwo")
    assert out.returncode == 0, out.stderr
    assert out.stdout == f"{ACK}one\n{ACK}two\n"


def test_tls(spawn_server: Any, certs: Certs) -> None:
    server = spawn_server(certs.serve_args())
    out = client("--port", str(server.port), "--tls-ca", str(certs.ca), stdin="你好\n")
    assert out.returncode == 0, out.stderr
    assert out.stdout == f"{ACK}你好\n"


def test_mutual_tls(spawn_server: Any, certs: Certs) -> None:
    server = spawn_server(certs.serve_args(
        "--tls-ca", str(certs.ca), "--tls-client-cert", "required",
        "--app", "peer_apps:subject",
    ))
    out = client("--port", str(server.port), "--tls-ca", str(certs.ca),
                 "--tls-cert", str(certs.client), stdin="who\n")
    assert out.returncode == 0, out.stderr
    assert out.stdout == "client.aiotcp.test\n"


def test_tls_untrusted_server_exits_1(spawn_server: Any, certs: Certs) -> None:
    server = spawn_server(certs.serve_args())
    out = client("--port", str(server.port), "--tls", stdin="hi\n")  # system CAs only
    assert out.returncode == 1
    assert out.stdout == ""
    assert out.stderr.startswith("aiotcp client: TLS handshake with 127.0.0.1:")
    assert len(out.stderr.strip().splitlines()) == 1


def test_cannot_connect_exits_1() -> None:
    out = client("--port", str(free_port()), stdin="hi\n")
    assert out.returncode == 1
    assert out.stderr.startswith("aiotcp client: cannot connect to 127.0.0.1:")
    assert len(out.stderr.strip().splitlines()) == 1


def test_server_closing_early_exits_1(spawn_server: Any) -> None:
    server = spawn_server(["--max-line", "10"])
    out = client("--port", str(server.port), stdin="ok\n" + "x" * 50 + "\nnever\n")
    assert out.returncode == 1
    assert out.stdout.splitlines()[0] == ACK + "ok"
    assert out.stdout.splitlines()[1].startswith("ERR too-long")
    assert "connection closed after 2 of 3 replies" in out.stderr


def test_missing_tls_file_exits_1(tmp_path: Any) -> None:
    out = client("--port", str(free_port()), "--tls-ca", str(tmp_path / "nope.pem"))
    assert out.returncode == 1
    assert out.stderr.startswith("aiotcp client: cannot load TLS files")
