"""Observe pieces in-process: logs, Prometheus families, worker snapshots, watchdog, lag, endpoints."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from aiotcp.observe import logs
from aiotcp.observe.endpoints import serve_endpoints
from aiotcp.observe.lag import LagSampler
from aiotcp.observe.prometheus import exposition, make_registry
from aiotcp.observe.snapshots import SnapshotAggregator, SnapshotMirror, snapshot_path
from aiotcp.observe.stats import Stats
from aiotcp.observe.watchdog import start_watchdog
from aiotcp.workers import RESTART_BACKOFF_MAX, STABLE_AFTER, reserve_port, restart_backoff

# ---- logs --------------------------------------------------------------------------


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    root = logging.getLogger()
    saved = (root.level, list(root.handlers))
    yield stream
    root.handlers[:] = saved[1]
    root.setLevel(saved[0])
    logging.getLogger(logs.ACCESS_LOGGER).setLevel(logging.NOTSET)


def test_json_log_is_one_object_per_line_with_extras(captured: io.StringIO) -> None:
    logs.configure_logging("info", "json", stream=captured)
    logs.configure_logging("info", "json", stream=captured)  # replaces, does not duplicate
    logging.getLogger("aiotcp.x").info("hello %s", "世界", extra={"n": 3, "obj": object()})
    logging.getLogger("aiotcp.x").debug("not at info")
    lines = captured.getvalue().splitlines()
    assert len(lines) == 1
    record = json.loads(lines[0])
    assert record["message"] == "hello 世界"
    assert record["level"] == "info" and record["logger"] == "aiotcp.x"
    assert record["n"] == 3 and record["obj"].startswith("<object")
    assert record["time"].endswith("Z")


def test_access_log_fields_and_off_switch(captured: io.StringIO) -> None:
    logs.configure_logging("info", "json", stream=captured)
    logs.log_access(("::1", 5000, 0, 0), 0.25, 2, 10, 30, "eof")
    record = json.loads(captured.getvalue())
    assert record["logger"] == "aiotcp.access"
    assert record["peer"] == "[::1]:5000"
    assert (record["messages"], record["bytes_in"], record["bytes_out"]) == (2, 10, 30)
    assert record["reason"] == "eof" and record["duration_s"] == 0.25
    logs.configure_logging("info", "text", access_log=False, stream=captured)
    before = captured.getvalue()
    logs.log_access(("127.0.0.1", 1), 0.1, 1, 1, 1, "eof")
    assert captured.getvalue() == before


def test_worker_records_carry_worker_index_and_pid(
    captured: io.StringIO, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(logs.ENV_WORKER_INDEX, "1")
    logs.configure_logging("info", "json", stream=captured)
    logging.getLogger("aiotcp").info("up")
    record = json.loads(captured.getvalue())
    assert (record["worker"], record["pid"]) == (1, os.getpid())
    logs.configure_logging("info", "text", stream=captured)
    logging.getLogger("aiotcp").info("up")
    assert f"aiotcp [worker 1 pid {os.getpid()}]: up" in captured.getvalue()


def test_text_format_and_bad_settings(captured: io.StringIO) -> None:
    logs.configure_logging("warning", "text", stream=captured)
    logging.getLogger("aiotcp").warning("careful")
    assert " WARNING aiotcp: careful" in captured.getvalue()
    with pytest.raises(ValueError, match="level"):
        logs.configure_logging("loud", "text")
    with pytest.raises(ValueError, match="format"):
        logs.configure_logging("info", "xml")


# ---- Prometheus ----------------------------------------------------------------------


def busy_stats() -> Stats:
    stats = Stats()
    stats.connections = 2
    stats.connections_accepted = 7
    stats.refused("busy")
    stats.error("too-long")
    stats.error("too-long")
    stats.messages_received = 50
    stats.messages_acked = 49
    stats.bytes_received = 1000
    stats.bytes_sent = 2000
    stats.ack_latency.observe(0.0003, 10)
    stats.ack_latency.observe(20.0)
    stats.loop_lag_seconds = 0.004
    stats.loop_stalls = 1
    return stats


def samples(text: bytes) -> dict[str, float]:
    out = {}
    for family in text_string_to_metric_families(text.decode()):
        for s in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(s.labels.items()))
            out[f"{s.name}{{{labels}}}" if labels else s.name] = s.value
    return out


def test_collector_exposes_every_counter_at_scrape_time() -> None:
    stats = busy_stats()
    registry = make_registry(stats.snapshot)
    got = samples(exposition(registry))
    assert got["aiotcp_connections"] == 2
    assert got["aiotcp_connections_accepted_total"] == 7
    assert got['aiotcp_connections_refused_total{reason="busy"}'] == 1
    assert got['aiotcp_connections_refused_total{reason="emfile"}'] == 0
    assert got['aiotcp_errors_total{code="too-long"}'] == 2
    assert got['aiotcp_errors_total{code="internal"}'] == 0
    assert got["aiotcp_messages_received_total"] == 50
    assert got["aiotcp_messages_acked_total"] == 49
    assert got["aiotcp_bytes_received_total"] == 1000
    assert got["aiotcp_bytes_sent_total"] == 2000
    assert got['aiotcp_ack_latency_seconds_bucket{le="0.00025"}'] == 0
    assert got['aiotcp_ack_latency_seconds_bucket{le="0.0005"}'] == 10
    assert got['aiotcp_ack_latency_seconds_bucket{le="10.0"}'] == 10
    assert got['aiotcp_ack_latency_seconds_bucket{le="+Inf"}'] == 11
    assert got["aiotcp_ack_latency_seconds_count"] == 11
    assert got["aiotcp_ack_latency_seconds_sum"] == pytest.approx(20.003)
    assert got["aiotcp_loop_lag_seconds"] == 0.004
    assert got["aiotcp_loop_stalls_total"] == 1
    stats.connections_accepted = 8  # read live, not copied at registration
    assert samples(exposition(registry))["aiotcp_connections_accepted_total"] == 8


# ---- worker snapshots ----------------------------------------------------------------


def test_aggregator_sums_live_workers_and_keeps_counters_of_dead_ones(tmp_path: Path) -> None:
    agg = SnapshotAggregator(str(tmp_path))
    a, b = busy_stats(), busy_stats()
    b.loop_lag_seconds = 0.5
    for serial, stats in ((1, a), (2, b)):
        assert not agg.is_ready(serial)
        mirror = SnapshotMirror(stats, snapshot_path(str(tmp_path), serial))
        mirror.write()
        assert agg.is_ready(serial)
    total = agg.total([1, 2])
    assert total["connections_accepted"] == 14 and total["connections"] == 4
    assert total["errors"] == {"too-long": 4}
    assert total["ack_latency"]["count"] == 22
    assert total["loop_lag_seconds"] == 0.5  # the worst worker, not a sum
    agg.retire(2)
    assert not os.path.exists(snapshot_path(str(tmp_path), 2))
    total = agg.total([1])
    assert total["connections_accepted"] == 14  # counters never go backwards
    assert total["connections"] == 2  # a dead worker holds no connections
    assert total["loop_lag_seconds"] == 0.004


def test_mirror_writes_at_start_periodically_and_at_close(tmp_path: Path) -> None:
    stats = Stats()
    path = snapshot_path(str(tmp_path), 9)

    async def main() -> None:
        mirror = SnapshotMirror(stats, path, interval=0.01)
        mirror.start()
        assert json.loads(Path(path).read_text())["connections_accepted"] == 0
        stats.connections_accepted = 5
        deadline = time.monotonic() + 5
        while json.loads(Path(path).read_text())["connections_accepted"] != 5:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.01)
        stats.connections_accepted = 6
        await mirror.aclose()
        assert json.loads(Path(path).read_text())["connections_accepted"] == 6

    asyncio.run(main())
    assert os.listdir(tmp_path) == ["worker-9.json"]  # no temporary file left behind


# ---- watchdog and lag ----------------------------------------------------------------


def block_the_loop() -> None:
    time.sleep(0.3)  # WATCHDOG-TEST-LINE


def test_watchdog_reports_a_stall_once_with_the_blocking_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    stats = Stats()
    line = next(i for i, text in enumerate(Path(__file__).read_text().splitlines(), 1)
                if text.endswith("# WATCHDOG-TEST-LINE"))

    async def main() -> None:
        watchdog = start_watchdog(asyncio.get_running_loop(), stats, 50)
        try:
            await asyncio.sleep(0.1)  # the loop turning normally is no stall
            assert stats.loop_stalls == 0
            block_the_loop()
            await asyncio.sleep(0.1)
        finally:
            watchdog.stop()
        assert not watchdog._thread.is_alive()

    with caplog.at_level(logging.WARNING, logger="aiotcp.watchdog"):
        asyncio.run(main())
    reports = [r for r in caplog.records if r.name == "aiotcp.watchdog"]
    assert len(reports) == 1
    assert f"{__file__}:{line} in block_the_loop" in reports[0].getMessage()
    assert stats.loop_stalls == 1


def test_watchdog_rejects_a_zero_threshold() -> None:
    async def main() -> None:
        with pytest.raises(ValueError):
            start_watchdog(asyncio.get_running_loop(), Stats(), 0)

    asyncio.run(main())


def test_lag_sampler_sees_a_blocked_loop() -> None:
    stats = Stats()

    async def main() -> None:
        sampler = LagSampler(stats, interval=0.02)
        sampler.start()
        await asyncio.sleep(0)  # the sampler is now asleep
        time.sleep(0.2)  # noqa: ASYNC251 - blocking is the point: it wakes >= 0.18 s late
        deadline = time.monotonic() + 5
        while stats.loop_lag_seconds < 0.1:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.01)
        await sampler.aclose()

    asyncio.run(main())


# ---- endpoints and the port reservation ----------------------------------------------


def test_endpoints_serve_metrics_health_and_readiness() -> None:
    stats = busy_stats()
    ready = [True]

    async def main() -> None:
        server = await serve_endpoints("127.0.0.1", 0, stats.snapshot, lambda: ready[0])
        base = f"http://127.0.0.1:{server.addresses[0][1]}"
        try:
            async with aiohttp.ClientSession() as http:
                async with http.get(base + "/metrics") as r:
                    assert r.status == 200
                    assert r.headers["Content-Type"].startswith("text/plain; version=")
                    assert samples(await r.read())["aiotcp_connections"] == 2
                async with http.get(base + "/readyz") as r:
                    assert r.status == 200
                ready[0] = False
                async with http.get(base + "/readyz") as r:
                    assert r.status == 503
                async with http.get(base + "/healthz") as r:
                    assert r.status == 200
        finally:
            await server.aclose()

    asyncio.run(main())


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="SO_REUSEPORT semantics")
def test_reserved_port_is_shared_by_listeners_but_accepts_nothing_itself() -> None:
    port, reserved = reserve_port("127.0.0.1", 0)
    try:
        assert port > 0 and len(reserved) == 1
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=5).close()
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        listener.bind(("127.0.0.1", port))
        listener.listen()
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
        listener.close()
    finally:
        for sock in reserved:
            sock.close()


def test_restart_backoff_doubles_on_quick_failures_and_resets_after_a_stable_run() -> None:
    failures, delays = 0, []
    for _ in range(12):
        failures, delay = restart_backoff(failures, uptime=0.5)
        delays.append(delay)
    assert delays[:4] == [0.1, 0.2, 0.4, 0.8]
    assert delays[-1] == RESTART_BACKOFF_MAX
    assert restart_backoff(failures, uptime=STABLE_AFTER) == (1, 0.1)
