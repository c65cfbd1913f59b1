"""``aiotcp serve`` as a user runs it: a real process, real signals, real sockets.

Bad input is a one-line error and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import platform
import resource
import signal
import subprocess
import sys
from pathlib import Path

import pytest

import aiotcp
import aiotcp.core
from aiotcp.config import FRAMINGS
from support.clients import ACK, LineClient
from support.ports import taken_port
from support.process import (
    APPS,
    CONSOLE_SERVE,
    ServerProcess,
    SpawnServer,
    child_env,
    run_aiotcp,
    run_without,
)
from support.waiting import HANG_GUARD


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


@pytest.mark.parametrize("args, env, lines", [
    # A setting the Config refuses: one line naming its source.
    (["--log-level", "loud"], {},
     [("aiotcp serve: error: --log-level must be one of debug, info, warning, error, "
       "critical, not 'loud'")]),
    ([], {"AIOTCP_IDLE_TIMEOUT": "nan"},
     ["aiotcp serve: error: AIOTCP_IDLE_TIMEOUT must be a finite number >= 0, not nan"]),
    # A flag argparse refuses: the short usage line, then the error.
    (["--bogus"], {},
     ["usage: aiotcp serve [options] ('aiotcp serve --help' for the options)",
      "aiotcp serve: error: unrecognized arguments: --bogus"]),
    (["--framing", "morse"], {},
     ["usage: aiotcp serve [options] ('aiotcp serve --help' for the options)",
      ("aiotcp serve: error: argument --framing: invalid choice: 'morse' "
       f"(choose from {', '.join(map(repr, FRAMINGS))})")]),
])  # fmt: skip
def test_a_bad_setting_is_exit_2_and_its_error_alone(
    args: list[str], env: dict[str, str], lines: list[str]
) -> None:
    r = run_aiotcp("serve", "--port", "0", *args, env=env)
    assert r.returncode == 2
    assert r.stderr.splitlines() == lines


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


def test_version_names_aiotcp_python_and_the_event_loop() -> None:
    import uvloop

    r = run_aiotcp("--version")
    assert r.returncode == 0, r.stderr
    python = f"{platform.python_implementation()} {platform.python_version()}"
    loop = f"event loop uvloop {uvloop.__version__}"
    core = f"{aiotcp.core.CORE} core"  # the child runs the core this process runs
    assert r.stdout == f"aiotcp {aiotcp.__version__} ({python}, {core}, {loop})\n"


def test_version_without_uvloop_says_asyncio() -> None:
    r = run_without("uvloop", "--version")
    assert r.returncode == 0, r.stderr
    assert r.stdout.endswith(", event loop asyncio (uvloop not installed))\n")


def test_app_module_in_the_current_directory(spawn_server: SpawnServer, tmp_path: Path) -> None:
    (tmp_path / "myapp.py").write_text("def handle(message, conn):\n    return 'mine: ' + message")
    server = spawn_server(["--app", "myapp:handle"], serve=CONSOLE_SERVE, cwd=tmp_path)
    with LineClient(server.port) as client:
        assert client.ask("你好") == "mine: 你好"



@pytest.mark.parametrize("kind, name", [
    ("function", "__main__:handle"),
    ("app", "__main__:handle_in_app"),
    ("object", "__main__:Shout"),
])  # fmt: skip
def test_a_script_serving_its_own_handler_logs_the_handler_name(kind: str, name: str) -> None:
    script = (sys.executable, str(APPS / "script_app.py"))
    with ServerProcess(["--kind", kind], serve=script) as server:  # the naming is loop-blind
        server.wait_for_log(rf"serving app '{name}' \(line framing\)")
        assert "'ack'" not in server.log
        assert server.stop() == 0
