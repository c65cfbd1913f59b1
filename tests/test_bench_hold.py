"""``aiotcp bench --mode hold`` against a real multi-worker server, at small scale."""

from __future__ import annotations

import json
from typing import Any

import pytest

from aiotcp.bench.cli import bench_main
from aiotcp.bench.holdcli import fd_limit
from aiotcp.bench.serverproc import ServerProcess, aiotcp_argv, start_server
from support.process import run_aiotcp

CONNECTIONS = 300
WORKERS = 2


@pytest.fixture(scope="module")
def server() -> Any:
    with start_server(aiotcp_argv(["--workers", str(WORKERS)])) as srv:
        yield srv


def hold(
    server: ServerProcess, capsys: pytest.CaptureFixture[str], *args: str
) -> tuple[int, dict[str, Any]]:
    """Run the hold mode in this process (clients in its children); exit code, result."""
    code = bench_main(["--mode", "hold", "--port", str(server.port), "--json",
                       "--server-pid", str(server.pid), "--round-seconds", "0.5", *args])  # fmt: skip
    return code, json.loads(capsys.readouterr().out)


def test_holds_every_connection_and_every_ping_is_answered(
    server: ServerProcess, capsys: pytest.CaptureFixture[str]
) -> None:
    code, r = hold(server, capsys, "--connections", str(CONNECTIONS), "--procs", "3",
                   "--sources", "2", "--rounds", "2")  # fmt: skip
    assert code == 0 and r["ok"], r
    assert r["connected"] == r["held"] == CONNECTIONS
    assert r["failures"] == 0 and not r["connect_errors"]
    assert r["config"]["procs"] == 3 and r["config"]["sources"] == 2
    assert r["connect_rate"] > 0
    assert [x["round"] for x in r["rounds"]] == [1, 2]
    for rnd in r["rounds"]:
        assert rnd["pings"] == rnd["answered"] == rnd["held"] == CONNECTIONS, rnd
        assert rnd["failures"] == 0 and not rnd["errors"]
        assert 0 < rnd["latency_ms"]["p50"] <= rnd["latency_ms"]["p99"] <= rnd["latency_ms"]["max"]
    before, held = r["server_before"], r["server_held"]
    # The supervisor and both workers are read, and every held connection is an fd of one.
    assert held["processes"] == WORKERS + 1
    assert held["fds"] - before["fds"] >= CONNECTIONS
    assert r["kib_per_conn"] > 0


def test_churn_reopens_its_share_each_round(
    server: ServerProcess, capsys: pytest.CaptureFixture[str]
) -> None:
    code, r = hold(server, capsys, "--connections", "200", "--procs", "2", "--rounds", "3",
                   "--churn", "0.25")  # fmt: skip
    assert code == 0 and r["ok"], r
    assert [x["churned"] for x in r["rounds"]] == [50, 50, 50]
    assert all(x["answered"] == 200 and not x["reconnect_errors"] for x in r["rounds"])


def test_a_wrong_reply_is_a_failure_of_its_round(
    server: ServerProcess, capsys: pytest.CaptureFixture[str]
) -> None:
    code, r = hold(server, capsys, "--connections", "20", "--rounds", "1",
                   "--prefix", "not-the-prefix: ")  # fmt: skip
    assert code == 1 and not r["ok"]
    assert r["connected"] == 20
    assert r["rounds"][0]["answered"] == 0
    assert r["rounds"][0]["errors"] == {"wrong reply": 20}


def test_held_counts_only_what_the_server_kept(capsys: pytest.CaptureFixture[str]) -> None:
    # One process over its cap accepts, answers ERR busy and closes: connected, not held.
    with start_server(aiotcp_argv(["--max-connections", "10"])) as srv:
        code, r = hold(srv, capsys, "--connections", "20", "--rounds", "1")
    assert code == 1 and not r["ok"]
    assert r["connected"] == 20 and r["held"] == 10
    assert r["rounds"][0]["answered"] == 10 and r["rounds"][0]["errors"] == {"closed": 10}


def test_a_server_gone_fails_the_connects() -> None:
    with start_server(aiotcp_argv()) as srv:
        port = srv.port
    out = run_aiotcp("bench", "--mode", "hold", "--port", str(port), "--connections", "5",
                     "--rounds", "1", "--json")  # fmt: skip
    r = json.loads(out.stdout)
    assert out.returncode == 1 and r["connected"] == 0
    assert r["connect_errors"] == {"connect ECONNREFUSED": 5}


@pytest.mark.parametrize(
    ("args", "flag"),
    [
        (["--connections", "0"], "--connections"),
        (["--procs", "0"], "--processes"),
        (["--connections", str(fd_limit()), "--procs", "1"], "--processes"),  # over its fds
        (["--source-base", "10.0.0.1"], "--source-base"),
        (["--source-base", "127.255.255.255", "--sources", "2"], "--source-base"),
        (["--source-base", "localhost"], "--source-base"),
        (["--sources", "-1"], "--sources"),
        (["--in-progress", "0"], "--in-progress"),
        (["--rounds", "-1"], "--rounds"),
        (["--round-seconds", "-1"], "--round-seconds"),
        (["--ping-timeout", "0"], "--ping-timeout"),
        (["--churn", "1"], "--churn"),
        (["--server-pid", "999999999"], "--server-pid"),
    ],
)
def test_a_bad_flag_is_one_line_naming_it(args: list[str], flag: str) -> None:
    out = run_aiotcp("bench", "--mode", "hold", "--port", "1", *args)
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("aiotcp bench: " + flag), out.stderr
    assert out.stdout == ""
