"""Observers of one ``aiotcp serve`` process: watchdog, /metrics, /readyz, JSON logs."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest

from serverproc import TESTS, ServerProcess
from test_observe_client import LineClient, free_port, http_get, scrape, until


def blocking_line() -> int:
    """The line of ``time.sleep(0.3)`` in the sleepy app (found, not hard-coded)."""
    lines = (TESTS / "test_workers_apps.py").read_text().splitlines()
    return next(i for i, text in enumerate(lines, 1) if "# BLOCKING-LINE" in text)


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_a_300ms_blocking_handler_is_reported_once_with_its_file_and_line(loop: str) -> None:
    metrics_port = free_port()
    with ServerProcess(["--app", "test_workers_apps:sleepy", "--block-threshold", "100",
                        "--loop", loop,
                        "--metrics-port", str(metrics_port), "--no-access-log"]) as server:
        # Observers start after the listener; /readyz answering means the watchdog runs.
        until(lambda: http_get(metrics_port, "/readyz")[0] == 200, what="/readyz 200")
        client = LineClient(server.port)
        assert client.ask("x") == "slept"
        client.close()
        until(lambda: (scrape(metrics_port) or {}).get("aiotcp_loop_stalls_total") == 1,
              what="the stall counted on /metrics")
        server.proc.send_signal(signal.SIGTERM)
        assert server.wait(20) == 0
    log = server.log()
    reports = [line for line in log.splitlines() if "event loop blocked" in line]
    assert len(reports) == 1, log
    assert f"test_workers_apps.py:{blocking_line()} in sleepy" in reports[0]


def test_metrics_count_a_known_workload_exactly() -> None:
    metrics_port = free_port()
    with ServerProcess(["--metrics-port", str(metrics_port)]) as server:
        sent = 0
        for c in range(3):
            client = LineClient(server.port)
            for m in range(4):
                assert client.ask(f"m{c}{m}") == f"已收到: m{c}{m}"
                sent += len(f"m{c}{m}\n")
            if c < 2:
                client.close()
        # One client is still connected: the gauge says so and its bytes count already.
        want = {
            "aiotcp_connections": 1,
            "aiotcp_connections_accepted_total": 3,
            "aiotcp_messages_received_total": 12,
            "aiotcp_messages_acked_total": 12,
            "aiotcp_bytes_received_total": sent,
            "aiotcp_bytes_sent_total": sent + 12 * len("已收到: ".encode()),
        }
        got = until(lambda: (s := scrape(metrics_port)) and
                    all(s.get(k) == v for k, v in want.items()) and s,
                    what=f"/metrics to show {want}")
        assert got['aiotcp_errors_total{code="internal"}'] == 0
        assert got['aiotcp_connections_refused_total{reason="busy"}'] == 0
        assert "aiotcp_loop_lag_seconds" in got
        client.close()


def test_readyz_turns_503_while_draining_then_the_process_exits_0(tmp_path: Path) -> None:
    metrics_port = free_port()
    release = tmp_path / "release"
    with ServerProcess(["--app", "test_workers_apps:probe", "--metrics-port",
                        str(metrics_port), "--shutdown-timeout", "20"]) as server:
        until(lambda: http_get(metrics_port, "/readyz")[0] == 200, what="/readyz 200")
        assert http_get(metrics_port, "/healthz") == (200, "ok\n")
        client = LineClient(server.port)
        client.send(f"wait {release}")
        until(lambda: (scrape(metrics_port) or {}).get("aiotcp_messages_received_total") == 1,
              what="the wait in flight")
        server.proc.send_signal(signal.SIGTERM)
        until(lambda: http_get(metrics_port, "/readyz")[0] == 503, what="/readyz 503")
        assert http_get(metrics_port, "/healthz")[0] == 200
        release.touch()
        assert client.line() == "released"
        client.close()
        assert server.wait(20) == 0


def test_json_logs_are_one_object_per_line_with_access_fields() -> None:
    with ServerProcess(["--log-format", "json"]) as server:
        client = LineClient(server.port)
        assert client.ask("hi") == "已收到: hi"
        client.close()
        until(lambda: "aiotcp.access" in server.log(), what="the access log entry")
        server.proc.send_signal(signal.SIGTERM)
        assert server.wait(20) == 0
    records = [json.loads(line) for line in server.log().splitlines()]
    for record in records:
        assert {"time", "level", "logger", "message"} <= set(record)
    access = [r for r in records if r["logger"] == "aiotcp.access"]
    assert len(access) == 1
    assert access[0]["messages"] == 1
    assert access[0]["bytes_in"] == 3
    assert access[0]["peer"].startswith("127.0.0.1:") or "127.0.0.1" in access[0]["peer"]
