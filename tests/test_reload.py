"""``--reload``: a real server process restarts when its app's source or its config file
changes (watchfiles), keeps the old code serving through an edit that does not import,
and is refused together with ``--workers``."""

from __future__ import annotations

from pathlib import Path

import pytest

from support.clients import LineClient
from support.process import ServerProcess, child_env, run_aiotcp

APP = "def handle(message, conn):\n    return {prefix!r} + message\n"


def ask(server: ServerProcess, text: str = "x") -> str | None:
    with LineClient(server.port) as client:
        return client.ask(text)


@pytest.mark.parametrize("changed", ["source", "config"])
def test_a_change_restarts_the_server_on_the_new_code(tmp_path: Path, changed: str) -> None:
    """The reloader is the supervisor's roll, loop-independent: one loop is enough."""
    (tmp_path / "reload_app.py").write_text(APP.format(prefix="one: "))
    toml = tmp_path / "aiotcp.toml"
    toml.write_text('ack_prefix = "one: "\n')
    app = "reload_app:handle" if changed == "source" else "ack"
    env = {"PYTHONPATH": f"{tmp_path}:{child_env()['PYTHONPATH']}",
           "PYTHONDONTWRITEBYTECODE": "1"}  # fmt: skip
    with ServerProcess(["--reload", "--app", app, "--config", str(toml)], env=env) as server:
        server.wait_for_log(r"1 workers serving")
        assert ask(server) == "one: x"
        if changed == "source":
            (tmp_path / "reload_app.py").write_text("def handle(:\n")  # mid-edit
            server.wait_for_log(r"generation 2 failed to start: .*; generation 1 keeps serving")
            assert ask(server) == "one: x"
            (tmp_path / "reload_app.py").write_text(APP.format(prefix="second: "))
        else:
            toml.write_text('ack_prefix = "second: "\n')
        server.wait_for_log(r"generation \d serving: pids \d+; draining generation 1")
        # Until the old worker has taken its SIGTERM it may still accept (and answer).
        server.wait_for_log(r"of generation 1 \(pid \d+\) drained and exited")
        assert ask(server) == "second: x"
        assert server.stop() == 0


def test_reload_is_refused_with_workers() -> None:
    r = run_aiotcp("serve", "--reload", "--workers", "2")
    assert r.returncode == 2
    assert r.stderr.strip() == (
        "aiotcp serve: error: reload is for development: it cannot be used with workers"
    )
