"""Metrics: the Prometheus families, worker snapshots and the endpoints in-process, then
/metrics, /readyz and /healthz of a served process on both loops."""

from __future__ import annotations

import asyncio
import json
import os
import signal
from pathlib import Path

import aiohttp
import pytest

from aiotcp.observe.endpoints import serve_endpoints
from aiotcp.observe.prometheus import exposition, make_registry
from aiotcp.observe.snapshots import SnapshotAggregator, SnapshotMirror, snapshot_path
from aiotcp.observe.stats import Stats
from support.clients import ACK, LineClient
from support.metrics import http_get, samples, scrape, scraped
from support.ports import free_port
from support.process import SpawnServer
from support.waiting import wait_until, wait_until_async


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


# ---- Prometheus families -----------------------------------------------------------------


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


# ---- worker snapshots ----------------------------------------------------------------------


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

    def accepted() -> int:
        return int(json.loads(Path(path).read_text())["connections_accepted"])

    async def main() -> None:
        mirror = SnapshotMirror(stats, path, interval=0.01)
        mirror.start()
        assert accepted() == 0
        stats.connections_accepted = 5
        await wait_until_async(lambda: accepted() == 5, what="a periodic snapshot")
        stats.connections_accepted = 6
        await mirror.aclose()
        assert accepted() == 6

    asyncio.run(main())
    assert os.listdir(tmp_path) == ["worker-9.json"]  # no temporary file left behind


# ---- endpoints -----------------------------------------------------------------------------


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


# ---- a served process ----------------------------------------------------------------------


def test_metrics_count_a_known_workload_exactly(spawn_server: SpawnServer) -> None:
    metrics_port = free_port()
    server = spawn_server(["--metrics-port", str(metrics_port)])
    sent = 0
    clients = [LineClient(server.port) for _ in range(3)]
    for c, client in enumerate(clients):
        for m in range(4):
            assert client.ask(f"m{c}{m}") == f"{ACK}m{c}{m}"
            sent += len(f"m{c}{m}\n")
    clients[0].close()
    clients[1].close()
    # One client is still connected: the gauge says so and its bytes count already.
    want = {
        "aiotcp_connections": 1,
        "aiotcp_connections_accepted_total": 3,
        "aiotcp_messages_received_total": 12,
        "aiotcp_messages_acked_total": 12,
        "aiotcp_bytes_received_total": sent,
        "aiotcp_bytes_sent_total": sent + 12 * len(ACK.encode()),
    }
    got = wait_until(
        lambda: (s := scrape(metrics_port)) and all(s.get(k) == v for k, v in want.items()) and s,
        what=f"/metrics to show {want}",
    )
    assert got['aiotcp_errors_total{code="internal"}'] == 0
    assert got['aiotcp_connections_refused_total{reason="busy"}'] == 0
    assert "aiotcp_loop_lag_seconds" in got
    clients[2].close()


def test_readyz_turns_503_while_draining_then_the_process_exits_0(
    tmp_path: Path, spawn_server: SpawnServer
) -> None:
    metrics_port = free_port()
    release = tmp_path / "release"
    server = spawn_server(
        [
            "--app",
            "probe_apps:probe",
            "--metrics-port",
            str(metrics_port),
            "--shutdown-timeout",
            "20",
        ]
    )
    wait_until(lambda: http_get(metrics_port, "/readyz")[0] == 200, what="/readyz 200")
    assert http_get(metrics_port, "/healthz") == (200, "ok\n")
    client = LineClient(server.port)
    client.send(f"wait {release}\n")
    wait_until(
        lambda: scraped(metrics_port, "aiotcp_messages_received_total") == 1,
        what="the wait in flight",
    )
    server.signal(signal.SIGTERM)
    wait_until(lambda: http_get(metrics_port, "/readyz")[0] == 503, what="/readyz 503")
    assert http_get(metrics_port, "/healthz")[0] == 200
    release.touch()
    assert client.line() == "released"
    client.close()
    assert server.wait() == 0
