"""``aiotcp serve --workers 2``: real supervisor and worker processes over loopback."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from serverproc import ServerProcess
from test_observe_client import LineClient, free_port, http_get, scrape, until

PIDS = re.compile(r"(\d+) workers serving: pids ([\d ]+)")
RESTARTED = re.compile(r"worker (\d+) restarted \(pid (\d+)\)")


def worker_pids(server: ServerProcess) -> list[int]:
    """The pids the supervisor logged once every worker was serving."""
    m = until(lambda: PIDS.search(server.log()), what="the supervisor's pid line")
    return [int(p) for p in m.group(2).split()]


def pid_of_reply(port: int) -> int:
    client = LineClient(port)
    try:
        return int(client.ask("pid"))
    finally:
        client.close()


def pids_serving(port: int, want: set[int], attempts: int = 300) -> set[int]:
    """Connect until every pid in ``want`` has answered (or ``attempts`` connections)."""
    seen: set[int] = set()
    for _ in range(attempts):
        seen.add(pid_of_reply(port))
        if want <= seen:
            break
    return seen


def start(*args: str) -> ServerProcess:
    return ServerProcess(["--workers", "2", "--app", "test_workers_apps:probe", *args])


def test_both_workers_accept_on_one_port() -> None:
    with start() as server:
        pids = worker_pids(server)
        assert len(set(pids)) == 2
        # The kernel spreads connections by a hash of the 4-tuple: 300 connections all
        # landing on one of two listeners has probability 2**-299.
        assert pids_serving(server.port, set(pids)) == set(pids)
        assert len(set(re.findall(r"listening on \S+:(\d+)", server.log()))) == 1


def test_killed_worker_is_replaced_and_service_keeps_answering() -> None:
    with start() as server:
        victim, survivor = worker_pids(server)
        os.kill(victim, signal.SIGKILL)
        until(lambda: f"(pid {victim}) exited with code -9" in server.log(),
              what="the supervisor noticing the kill")
        # The dead worker's listener is closed: every connection now reaches a live one.
        for _ in range(20):
            assert pid_of_reply(server.port) != victim
        m = until(lambda: RESTARTED.search(server.log()), what="the replacement worker")
        replacement = int(m.group(2))
        assert replacement not in (victim, survivor)
        assert pids_serving(server.port, {survivor, replacement}) == {survivor, replacement}
        server.proc.send_signal(signal.SIGTERM)
        assert server.wait(20) == 0


def test_sigterm_drains_every_worker_and_readyz_flips(tmp_path: Path) -> None:
    metrics_port = free_port()
    release = tmp_path / "release"
    with start("--metrics-port", str(metrics_port), "--shutdown-timeout", "20") as server:
        pids = set(worker_pids(server))
        until(lambda: http_get(metrics_port, "/readyz")[0] == 200, what="/readyz 200")
        # Hold one connection on each worker with a message in flight until `release`.
        held: dict[int, LineClient] = {}
        messages = 0
        for _ in range(300):
            client = LineClient(server.port)
            pid = int(client.ask("pid"))
            messages += 1
            if pid in held:
                client.close()
                continue
            held[pid] = client
            client.send(f"wait {release}")
            messages += 1
            if set(held) == pids:
                break
        assert set(held) == pids
        until(lambda: (scrape(metrics_port) or {}).get("aiotcp_messages_received_total")
              == messages, what="both waits in flight")

        server.proc.send_signal(signal.SIGTERM)
        until(lambda: http_get(metrics_port, "/readyz")[0] == 503, what="/readyz 503")
        assert http_get(metrics_port, "/healthz")[0] == 200
        assert server.proc.poll() is None  # still draining: the waits hold it open
        release.touch()
        for client in held.values():
            assert client.line() == "released"  # the in-flight message was acked
            rest = client.line()
            assert rest == "" or rest.startswith("ERR shutdown")
            client.close()
        assert server.wait(20) == 0
    assert server.log().count("server stopped") == 2


def test_metrics_sum_every_worker_exactly() -> None:
    metrics_port = free_port()
    clients, per_client = 40, 5
    with ServerProcess(["--workers", "2", "--metrics-port", str(metrics_port)]) as server:
        worker_pids(server)
        sent = received = 0
        for c in range(clients):
            client = LineClient(server.port)
            for m in range(per_client):
                text = f"client {c} message {m} 你好"
                assert client.ask(text) == f"已收到: {text}"
                sent += len(text.encode()) + 1
                received += len(f"已收到: {text}\n".encode())
            client.close()
        want = {
            "aiotcp_connections": 0,
            "aiotcp_connections_accepted_total": clients,
            "aiotcp_messages_received_total": clients * per_client,
            "aiotcp_messages_acked_total": clients * per_client,
            "aiotcp_bytes_received_total": sent,
            "aiotcp_bytes_sent_total": received,
            "aiotcp_workers": 2,
        }

        def settled() -> dict[str, float] | None:
            got = scrape(metrics_port)
            if got is None or any(got.get(k) != v for k, v in want.items()):
                return None
            return got

        try:
            got = until(settled, what="exact totals on /metrics")
        except AssertionError:
            pytest.fail(f"/metrics never matched {want}: last scrape {scrape(metrics_port)}")
        # The histogram is summed like the counters: one observation per acked message.
        assert got["aiotcp_ack_latency_seconds_count"] == clients * per_client
        assert got['aiotcp_ack_latency_seconds_bucket{le="+Inf"}'] == clients * per_client
        assert got['aiotcp_errors_total{code="internal"}'] == 0


def test_a_taken_metrics_port_fails_the_supervisor_before_any_worker() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        r = subprocess.run(
            [sys.executable, "-m", "aiotcp", "serve", "--port", "0", "--workers", "2",
             "--metrics-port", str(taken.getsockname()[1])],
            check=False, capture_output=True, text=True, timeout=30,
        )
    assert r.returncode == 1
    assert "cannot serve metrics" in r.stderr
    assert "listening on" not in r.stderr  # no worker was started


def test_a_worker_that_cannot_boot_fails_the_supervisor() -> None:
    r = subprocess.run(
        [sys.executable, "-m", "aiotcp", "serve", "--port", "0", "--workers", "2",
         "--app", "no_such_module_here:app"],
        capture_output=True, text=True, timeout=30, check=False,
    )
    assert r.returncode == 1
    assert "failed to start" in r.stderr


def test_a_second_sigterm_forces_the_drain(tmp_path: Path) -> None:
    metrics_port = free_port()
    never = tmp_path / "never-created"
    with start("--shutdown-timeout", "60", "--metrics-port", str(metrics_port)) as server:
        pids = worker_pids(server)
        client = LineClient(server.port)
        client.send(f"wait {never}")  # would hold the drain for the whole minute
        until(lambda: (scrape(metrics_port) or {}).get("aiotcp_messages_received_total") == 1,
              what="the wait in flight")
        server.proc.send_signal(signal.SIGTERM)
        until(lambda: "draining" in server.log(), what="the first signal to be forwarded")
        server.proc.send_signal(signal.SIGTERM)
        assert server.wait(20) in (0, 1)  # well before the 60 s drain deadline
        try:
            assert "released" not in client.line()
        except ConnectionError:
            pass  # aborted: a reset is what forcing means
        client.close()
    assert "forcing" in server.log()
    for pid in pids:
        until(lambda pid=pid: not _alive(pid), what=f"worker {pid} gone")


def test_workers_die_with_a_killed_supervisor() -> None:
    with start() as server:
        pids = worker_pids(server)
        server.proc.kill()
        server.proc.wait(10)
        for pid in pids:
            until(lambda pid=pid: not _alive(pid), what=f"orphaned worker {pid} to exit")


def _alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ")[1][0] != "Z"
    except (FileNotFoundError, IndexError):
        return False

