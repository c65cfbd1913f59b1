"""Connection caps, abrupt resets and the names of the limit flags, against a real server process."""

from __future__ import annotations

import json
import subprocess
import time
from typing import Any

import pytest

from robust_support import (  # noqa: F401 (the *_fixture names register fixtures)
    ACK,
    PYTHON,
    REPO,
    LineClient,
    ServerProcess,
    loop_fixture,
    served,
    spawn_server_fixture,
    wait_until,
)


def _refused(c: LineClient) -> str:
    """The refusal line of a client over a limit; asserts the server then closes it."""
    line = c.line()
    assert line is not None and line.startswith("ERR busy "), line
    assert c.eof()
    return line


def test_max_connections_refuses_then_recovers(loop: str, spawn_server: Any) -> None:
    server = spawn_server(loop, ["--max-connections", "2"])
    a, b = LineClient(server.port), LineClient(server.port)
    assert a.ask("a") == ACK + "a"
    assert b.ask("b") == ACK + "b"
    c = LineClient(server.port)
    assert "limit 2" in _refused(c)
    c.close()
    # Still busy while both are held...
    assert not served(server.port)
    a.close()
    # ...and capacity returns once one leaves.
    wait_until(lambda: served(server.port), 5)
    assert b.ask("still") == ACK + "still"
    b.close()
    assert server.stop() == 0
    assert "Traceback" not in server.log, server.log


def test_max_connections_per_ip(loop: str, spawn_server: Any) -> None:
    server = spawn_server(loop, ["--max-connections-per-ip", "2"])
    a, b = LineClient(server.port), LineClient(server.port)
    assert a.ask("a") == ACK + "a"
    assert b.ask("b") == ACK + "b"
    c = LineClient(server.port)
    assert "127.0.0.1" in _refused(c)
    c.close()
    # Another source address on the loopback network is not counted against 127.0.0.1.
    other = LineClient(server.port, source="127.0.0.2")
    assert other.ask("other") == ACK + "other"
    other.close()
    b.close()
    wait_until(lambda: served(server.port), 5)
    a.close()
    assert server.stop() == 0


@pytest.mark.parametrize("how", ["rst", "rst-mid-message", "fin-mid-message", "rst-async-busy"])
def test_abrupt_disconnect_frees_the_slot(loop: str, how: str, spawn_server: Any) -> None:
    args = ["--max-connections", "1"]
    if how == "rst-async-busy":
        args += ["--app", "robust_apps:slow"]
    server = spawn_server(loop, args)
    a = LineClient(server.port)
    assert a.ask("first") == ACK + "first"
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
        a.send("sleep:5\n")  # the async handler is busy with it when the RST lands
        time.sleep(0.05)
        a.reset()
    wait_until(lambda: served(server.port), 5)
    assert server.stop() == 0
    log = server.log
    assert "Traceback" not in log, log
    assert " ERROR " not in log, log


FLAGS = {
    "max_connections": ("--max-connections", "123", 123),
    "max_connections_per_ip": ("--max-connections-per-ip", "7", 7),
    "idle_timeout": ("--idle-timeout", "12.5", 12.5),
    "write_timeout": ("--write-timeout", "3.5", 3.5),
    "handler_timeout": ("--handler-timeout", "0.25", 0.25),
    "shutdown_timeout": ("--shutdown-timeout", "4", 4.0),
    "max_line": ("--max-line", "1024", 1024),
}


def _print_config(args: list[str], env: dict[str, str] | None = None) -> dict[str, object]:
    import os

    full_env = dict(os.environ, PYTHONPATH=str(REPO / "src"))
    full_env.update(env or {})
    out = subprocess.run(
        [PYTHON, "-m", "aiotcp", "serve", *args, "--print-config"],
        capture_output=True, text=True, timeout=30, env=full_env, check=True,
    )
    return json.loads(out.stdout)  # type: ignore[no-any-return]


def test_every_limit_flag_is_a_config_field_of_the_same_name() -> None:
    args = [a for flag, value, _ in FLAGS.values() for a in (flag, value)]
    printed = _print_config(args)
    for name, (flag, _, expected) in FLAGS.items():
        assert flag == "--" + name.replace("_", "-")
        assert printed[name] == expected, name
    env = {"AIOTCP_" + name.upper(): value for name, (_, value, _) in FLAGS.items()}
    from_env = _print_config([], env)
    for name, (_, _, expected) in FLAGS.items():
        assert from_env[name] == expected, name


def test_server_process_fixture_reports_its_port() -> None:
    server = ServerProcess("asyncio")
    try:
        assert server.port > 0 and served(server.port)
    finally:
        server.kill()
