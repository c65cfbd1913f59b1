"""``aiotcp serve`` as a user runs it: a real process, real signals, real sockets.

Bad input is a one-line error and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import resource
import signal

import pytest

from support.clients import ACK, LineClient
from support.ports import taken_port
from support.process import SpawnServer, run_aiotcp, run_without


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_serve_answers_and_stops_cleanly_on_signal(
    loop: str, sig: int, spawn_server: SpawnServer
) -> None:
    server = spawn_server()
    # The loop asked for is the loop serving (the log names its module).
    server.wait_for_log(rf"serving app 'ack' \(line framing\) on {loop}")
    with LineClient(server.port) as client:
        assert client.ask("你好") == ACK + "你好"
    server.signal(sig)
    assert server.wait() == 0
    assert "Traceback" not in server.log, server.log


def test_app_module_attr_and_streams_api(spawn_server: SpawnServer) -> None:
    server = spawn_server(["--app", "cli_apps:shout"])
    with LineClient(server.port) as client:
        assert client.ask("hey") == "HEY"
    server = spawn_server(["--app", "cli_apps:handle_client", "--api", "streams"])
    with LineClient(server.port) as client:
        assert client.ask("你好") == ACK + "你好"


@pytest.mark.parametrize("app, words", [
    ("cli_apps:missing", "has no attribute"),
    ("no_such_module:x", "cannot import"),
    ("cli_apps:not_callable", "not callable"),
    ("justaname", "module:attr"),
])  # fmt: skip
def test_bad_app_is_a_clear_error(app: str, words: str) -> None:
    r = run_aiotcp("serve", "--port", "0", "--app", app)
    assert r.returncode == 1
    assert words in r.stderr and "Traceback" not in r.stderr


def test_port_in_use_is_a_clear_error() -> None:
    with taken_port() as port:
        r = run_aiotcp("serve", "--host", "127.0.0.1", "--port", str(port))
    assert r.returncode == 1
    assert "cannot listen" in r.stderr and "Traceback" not in r.stderr


def test_bad_flag_value_exits_2() -> None:
    r = run_aiotcp("serve", "--idle-timeout", "-3")
    assert r.returncode == 2 and "idle_timeout" in r.stderr


def test_metrics_port_in_use_is_a_clear_error() -> None:
    with taken_port() as port:
        r = run_aiotcp("serve", "--port", "0", "--metrics-port", str(port))
    assert r.returncode == 1
    assert "cannot serve metrics" in r.stderr and "Traceback" not in r.stderr


def test_server_raises_its_soft_fd_limit_to_the_hard_limit(spawn_server: SpawnServer) -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = 4096
    low = min(256, hard)

    def lower() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (low, hard))

    server = spawn_server(preexec_fn=lower)
    with open(f"/proc/{server.pid}/limits") as f:
        line = next(x for x in f.read().splitlines() if x.startswith("Max open files"))
    assert int(line.split()[3]) == hard


def test_metrics_port_without_aiohttp_exits_2_naming_the_extra() -> None:
    r = run_without("aiohttp", "serve", "--port", "0", "--metrics-port", "9")
    assert r.returncode == 2, r.stderr
    assert "pip install 'aiotcp[metrics]'" in r.stderr
    assert "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_metrics_port_without_prometheus_client_exits_2() -> None:
    r = run_without("prometheus_client", "serve", "--port", "0", "--metrics-port", "9")
    assert r.returncode == 2 and "aiotcp[metrics]" in r.stderr and "Traceback" not in r.stderr
