"""``aiotcp client`` against a real ``aiotcp serve``: piped stdin, every framing, TLS,
and one-line errors (exit 1) when it cannot connect or the handshake fails."""

from __future__ import annotations

import contextlib
import os
import pty
import re
import signal
import subprocess
import sys
from typing import Any

import pytest

from support.certs import Certs
from support.clients import ACK
from support.ports import free_port
from support.process import ClientProcess, child_env


def client(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "aiotcp", "client", *args],
        check=False, input=stdin, capture_output=True, text=True, timeout=60, env=child_env(),
    )


# (serve's flags, the client's flags, stdin, what the client prints): each framing in
# text and --binary, and a codec of the user's own (a netstring, both ends).
PIPES: dict[str, tuple[list[str], list[str], str, str]] = {
    "line": ([], [], "你好\nsecond\n\n", f"{ACK}你好\n{ACK}second\n{ACK}\n"),
    "length": (["--framing", "length"], ["--framing", "length"], "a\nb c\n",
               f"{ACK}a\n{ACK}b c\n"),
    "varint": (["--framing", "varint"], ["--framing", "varint"], "a\n" + "x" * 300 + "\n",
               f"{ACK}a\n{ACK}{'x' * 300}\n"),
    "raw": (["--framing", "raw"], ["--framing", "raw"], "你好\n", f"{ACK}你好\n"),
    "line --binary": (["--binary"], ["--binary"], "a\n", f"{ACK}a\n"),
    "length --binary": (["--framing", "length", "--binary"], ["--framing", "length", "--binary"],
                        "a\n", f"{ACK}a\n"),
    "varint --binary": (["--framing", "varint", "--binary"], ["--framing", "varint", "--binary"],
                        "a\nb\n", f"{ACK}a\n{ACK}b\n"),
    "--codec": (["--codec", "codec_apps:Netstring", "--app", "codec_apps:sync_handle"],
                ["--codec", "codec_apps:Netstring", "--binary"], "a\nbc\n", "ack:a\nack:bc\n"),
}


@pytest.mark.parametrize("case", list(PIPES))
def test_pipe_every_framing_and_a_users_codec(spawn_server: Any, case: str) -> None:
    serve_args, client_args, stdin, want = PIPES[case]
    server = spawn_server(serve_args)
    out = client("--port", str(server.port), *client_args, stdin=stdin)
    assert out.returncode == 0, out.stderr
    assert out.stdout == want


def test_a_codec_that_cannot_be_loaded_is_one_line_and_exit_1() -> None:
    out = client("--port", "1", "--codec", "no_such_module:X")
    assert out.returncode == 1 and out.stderr.count("\n") == 1, out.stderr
    assert "cannot import codec module 'no_such_module'" in out.stderr


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


# The connection ends before the client is done (its stdin still open, or never
# connected): exit 1 and one line on stderr, never a traceback or an interpreter abort.
# Row: server flags (None: nothing listens), client flags, stdin ("pipe" or "terminal"),
# the reply to "hi" to wait for (None: none comes), what then happens to the server,
# the stderr line (a regex).
EARLY_ENDS = {
    "idle timeout, stdin a pipe": (
        ["--idle-timeout", "0.5"], [], "pipe", ACK + "hi", None,
        "the server closed the connection before the end of stdin"),
    "idle timeout, stdin a terminal": (
        ["--idle-timeout", "0.5"], [], "terminal", ACK + "hi", None,
        "the server closed the connection before the end of stdin"),
    "server shutdown": (
        [], [], "pipe", ACK + "hi", signal.SIGTERM,
        "the server closed the connection before the end of stdin"),
    "client certificate refused": (
        ["--tls-client-cert", "required"], ["--tls-cert", "{stranger}"], "pipe", None, None,
        r"the server refused the client certificate \(TLSV1_ALERT_UNKNOWN_CA\)"),
    "no client certificate": (
        ["--tls-client-cert", "required"], [], "pipe", None, None,
        r"the server refused the client certificate \(TLSV13_ALERT_CERTIFICATE_REQUIRED\)"),
    "connection refused": (
        None, [], "pipe", None, None,
        r"cannot connect to 127\.0\.0\.1:\d+: Connection refused"),
}  # fmt: skip


@pytest.mark.parametrize("case", EARLY_ENDS)
def test_an_early_end_is_exit_1_and_one_line(spawn_server: Any, certs: Certs, case: str) -> None:
    server_args, client_args, stdin, reply, then, words = EARLY_ENDS[case]
    tls = "--tls-client-cert" in (server_args or [])
    if server_args is None:
        port = free_port()
    else:
        tls_args = certs.serve_args("--tls-ca", str(certs.ca)) if tls else []
        server = spawn_server([*tls_args, *server_args])
        port = server.port
    args = ["--port", str(port), *(["--tls-ca", str(certs.ca)] if tls else [])]
    args += [a.format(stranger=certs.stranger) for a in client_args]
    with contextlib.ExitStack() as stack:
        if stdin == "terminal":
            terminal, tty_end = pty.openpty()
            stack.callback(os.close, terminal)
            stack.callback(os.close, tty_end)
            proc = stack.enter_context(ClientProcess(args, stdin=tty_end))
            os.write(terminal, b"hi\n")
        else:
            proc = stack.enter_context(ClientProcess(args))
            proc.send("hi\n")  # and stdin stays open
        if reply is not None:
            proc.wait_for_output("^" + re.escape(reply) + "$")
        if then is not None:
            server.signal(then)
        code = proc.wait()
    assert (code, proc.stderr.splitlines()[:1]) == (1, proc.stderr.splitlines()), proc.stderr
    assert re.fullmatch("aiotcp client: " + words, proc.stderr.strip()), proc.stderr
    if case.startswith("idle timeout"):
        assert proc.lines[-1].startswith("ERR idle-timeout"), proc.lines
    if then == signal.SIGTERM:
        assert proc.lines[-1].startswith("ERR shutdown"), proc.lines


def test_every_reply_after_the_end_of_stdin_is_exit_0(spawn_server: Any) -> None:
    server = spawn_server(["--idle-timeout", "0.5"])
    with ClientProcess(["--port", str(server.port)]) as proc:
        proc.send("hi\n")
        proc.wait_for_output("^" + re.escape(ACK + "hi") + "$")
        proc.end_input()
        assert proc.wait() == 0, proc.stderr
    assert proc.lines == [ACK + "hi"] and proc.stderr == ""
