"""The misbehaving-client modes do what they say against real servers."""

from __future__ import annotations

import json

import pytest

from aiotcp.bench.cli import bench_main
from aiotcp.bench.loadgen import LoadConfig
from aiotcp.bench.misbehave import run_misbehave_sync
from aiotcp.bench.serverproc import aiotcp_argv, baseline_argv, start_server


def test_idle_holders_stay_open_without_a_timeout() -> None:
    with start_server(baseline_argv("asyncio_protocol")) as server:
        result = run_misbehave_sync(
            "idle", LoadConfig(port=server.port, connections=20, duration=0.5)
        )
    assert result.opened == 20 and result.still_open == 20 and result.closed_by_server == 0
    assert result.server_said == {"nothing": 20}


@pytest.mark.parametrize("mode", ["idle", "trickle"])
def test_idle_timeout_closes_idlers_and_tricklers(mode: str) -> None:
    with start_server(aiotcp_argv(["--idle-timeout", "0.5"])) as server:
        cfg = LoadConfig(port=server.port, connections=5, duration=8.0)
        result = run_misbehave_sync(mode, cfg, interval=0.1)
    assert result.opened == 5 and result.closed_by_server == 5 and result.still_open == 0
    assert result.server_said == {"ERR idle-timeout": 5}
    assert result.duration < 8.0  # the run ends once every connection is closed
    if mode == "trickle":
        assert result.bytes_sent >= 5


def test_never_reader_is_dropped_after_write_timeout() -> None:
    with start_server(aiotcp_argv(["--write-timeout", "0.5"])) as server:
        result = run_misbehave_sync(
            "no-read", LoadConfig(port=server.port, connections=2, duration=10.0)
        )
    assert result.bytes_sent > 0
    assert result.closed_by_server == 2 and result.still_open == 0


def test_never_reader_against_a_server_without_write_timeout() -> None:
    with start_server(baseline_argv("asyncio_protocol")) as server:
        result = run_misbehave_sync(
            "no-read", LoadConfig(port=server.port, connections=2, duration=0.5)
        )
    assert result.bytes_sent > 0 and result.still_open == 2


@pytest.mark.parametrize(
    "server_argv", [baseline_argv("asyncio_protocol"), aiotcp_argv()], ids=["protocol", "aiotcp"]
)
def test_half_close_acks_every_complete_message(server_argv: list[str]) -> None:
    with start_server(server_argv) as server:
        cfg = LoadConfig(port=server.port, connections=4, duration=5.0)
        result = run_misbehave_sync("half-close", cfg, messages=7)
    assert result.errors == {}, result.error_samples
    assert result.messages_sent == 28 and result.messages_acked == 28
    assert result.closed_by_server == 4


def test_half_close_detects_a_server_that_drops_messages_at_eof() -> None:
    # the seed replies per read, so its reply stream is not the line-by-line one: strict fails
    with start_server(baseline_argv("seed_noprint")) as server:
        result = run_misbehave_sync(
            "half-close", LoadConfig(port=server.port, connections=1, duration=3.0), messages=5
        )
    assert result.errors


def test_connect_storm(capsys: pytest.CaptureFixture[str]) -> None:
    with start_server(baseline_argv("asyncio_protocol")) as server:
        argv = ["--port", str(server.port), "--mode", "storm", "-c", "200", "-d", "5", "--json"]
        assert bench_main(argv) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["opened"] == 200 and data["messages_acked"] == 200
    assert data["connect_ms"]["max"] > 0
