"""``aiotcp serve`` as a user runs it: a real process, real signals, real sockets."""

from __future__ import annotations

import resource
import signal
import socket
import subprocess
import sys

import pytest
from serverproc import TESTS, ServerProcess

from conftest import LOOPS


def ask(port: int, data: bytes, n_lines: int = 1) -> list[str]:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(data)
        f = s.makefile("rb")
        return [f.readline().decode().rstrip("\n") for _ in range(n_lines)]


@pytest.mark.parametrize("loop", LOOPS)
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_serve_answers_and_stops_cleanly_on_signal(loop: str, sig: int) -> None:
    with ServerProcess(["--loop", loop]) as server:
        assert ask(server.port, "你好\n".encode()) == ["已收到: 你好"]
        server.proc.send_signal(sig)
        assert server.wait() == 0
        assert "Traceback" not in server.log()


def test_nothing_is_logged_per_message() -> None:
    with ServerProcess(["--log-level", "info"]) as server:
        before = len(server.stderr_lines)
        assert ask(server.port, b"".join(b"m\n" for _ in range(200)), 200)[-1] == "已收到: m"
        server.proc.send_signal(signal.SIGTERM)
        assert server.wait() == 0
        # one access-log line for the connection, the shutdown lines; never one per message
        assert len(server.stderr_lines) - before < 10


def test_app_module_attr_and_streams_api() -> None:
    with ServerProcess(["--app", "sample_apps:shout"]) as server:
        assert ask(server.port, b"hey\n") == ["HEY"]
    with ServerProcess(["--app", "sample_apps:handle_client", "--api", "streams"]) as server:
        assert ask(server.port, "你好\n".encode()) == ["已收到: 你好"]


@pytest.mark.parametrize("app, words", [
    ("sample_apps:missing", "has no attribute"),
    ("no_such_module:x", "cannot import"),
    ("sample_apps:not_callable", "not callable"),
    ("justaname", "module:attr"),
])
def test_bad_app_is_a_clear_error(app: str, words: str) -> None:
    r = subprocess.run([sys.executable, "-m", "aiotcp", "serve", "--port", "0", "--app", app],
                       capture_output=True, text=True, timeout=30,
                       env={"PYTHONPATH": str(TESTS)})
    assert r.returncode == 1
    assert words in r.stderr and "Traceback" not in r.stderr


def test_port_in_use_is_a_clear_error() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        r = subprocess.run([sys.executable, "-m", "aiotcp", "serve", "--port", str(port)],
                           capture_output=True, text=True, timeout=30)
    assert r.returncode == 1
    assert "cannot listen" in r.stderr and "Traceback" not in r.stderr


def test_bad_flag_value_exits_2() -> None:
    r = subprocess.run([sys.executable, "-m", "aiotcp", "serve", "--idle-timeout", "-3"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 2 and "idle_timeout" in r.stderr


def test_server_raises_its_soft_fd_limit_to_the_hard_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = 4096
    low = min(256, hard)

    def lower() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (low, hard))

    with ServerProcess([], preexec_fn=lower) as server:
        limits = open(f"/proc/{server.proc.pid}/limits").read()
        line = next(x for x in limits.splitlines() if x.startswith("Max open files"))
        assert int(line.split()[3]) == hard


def test_metrics_port_in_use_is_a_clear_error() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        taken = s.getsockname()[1]
        r = subprocess.run([sys.executable, "-m", "aiotcp", "serve", "--port", "0",
                            "--metrics-port", str(taken)],
                           capture_output=True, text=True, timeout=30)
    assert r.returncode == 1
    assert "cannot serve metrics" in r.stderr and "Traceback" not in r.stderr
