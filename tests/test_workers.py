"""``aiotcp serve --workers 2``: real supervisor and worker processes over loopback, on
both loops; and the supervisor's pure parts (restart backoff, the port reservation)."""

from __future__ import annotations

import os
import re
import signal
import socket
import sys
from pathlib import Path

import pytest

from aiotcp.workerprocess import RESTART_BACKOFF_MAX, STABLE_AFTER, restart_backoff
from support.clients import ACK, LineClient
from support.metrics import http_get, scrape, scraped
from support.ports import free_port, taken_port
from support.process import ServerProcess, SpawnServer, pid_alive, run_aiotcp
from support.waiting import HANG_GUARD, wait_until

PIDS = re.compile(r"(\d+) workers serving: pids ([\d ]+)")
RESTARTED = re.compile(r"worker (\d+) restarted \(pid (\d+)\)")
# Connections tried until every worker has answered one: a hang guard. The workers
# share one accept queue, and whichever accepts first takes the connection (one worker
# can take every connection of a quiet test); so these tests run the workers with
# --max-connections 1 and hold each connection open: a worker that holds one leaves the
# queue to the others (aiotcp.accepting), and the next connection reaches another worker.
SPREAD_ATTEMPTS = 300
ONE_EACH = ("--max-connections", "1")
# A drain that cannot end by itself within any hang guard: only a second signal ends it.
DRAIN_NEVER_ENDS = 600.0
# ``aiotcp serve`` with two workers, for runs that are expected to fail at startup.
SERVE_TWO = ("serve", "--port", "0", "--workers", "2")


def worker_pids(server: ServerProcess) -> list[int]:
    """The pids the supervisor logged once every worker was serving."""
    m = PIDS.search(server.wait_for_log(PIDS.pattern))
    assert m is not None
    return [int(p) for p in m.group(2).split()]


def pid_of_reply(port: int) -> int:
    with LineClient(port) as client:
        return int(client.ask("pid") or 0)


def pids_serving(port: int, want: set[int]) -> set[int]:
    """Connect, holding each connection open, until every pid in ``want`` has answered
    (or SPREAD_ATTEMPTS connections); of a server started with ONE_EACH."""
    seen: set[int] = set()
    held: list[LineClient] = []
    try:
        for _ in range(SPREAD_ATTEMPTS):
            client = LineClient(port)
            held.append(client)
            seen.add(int(client.ask("pid") or 0))
            if want <= seen:
                break
    finally:
        for client in held:
            client.close()
    return seen


def start(spawn_server: SpawnServer, *args: str) -> ServerProcess:
    return spawn_server(["--workers", "2", "--app", "probe_apps:probe", *args])


def test_both_workers_accept_on_one_port(spawn_server: SpawnServer) -> None:
    server = start(spawn_server, *ONE_EACH)
    pids = worker_pids(server)
    assert len(set(pids)) == 2
    assert pids_serving(server.port, set(pids)) == set(pids)
    assert len(set(re.findall(r"listening on \S+:(\d+)", server.log))) == 1


def test_killed_worker_is_replaced_and_service_keeps_answering(spawn_server: SpawnServer) -> None:
    server = start(spawn_server, *ONE_EACH)
    victim, survivor = worker_pids(server)
    os.kill(victim, signal.SIGKILL)
    server.wait_for_log(re.escape(f"(pid {victim}) exited with code -9"))
    # The dead worker's listener is closed: every connection now reaches a live one.
    for _ in range(20):
        assert pid_of_reply(server.port) != victim
    m = RESTARTED.search(server.wait_for_log(RESTARTED.pattern))
    assert m is not None
    replacement = int(m.group(2))
    assert replacement not in (victim, survivor)
    assert pids_serving(server.port, {survivor, replacement}) == {survivor, replacement}
    assert server.stop() == 0


def test_sigterm_drains_every_worker_and_readyz_flips(
    tmp_path: Path, spawn_server: SpawnServer
) -> None:
    metrics_port = free_port()
    release = tmp_path / "release"
    server = start(spawn_server, "--metrics-port", str(metrics_port), "--shutdown-timeout", "20",
                   *ONE_EACH)
    pids = set(worker_pids(server))
    wait_until(lambda: http_get(metrics_port, "/readyz")[0] == 200, what="/readyz 200")
    # Hold one connection on each worker with a message in flight until `release`.
    held: dict[int, LineClient] = {}
    messages = 0
    for _ in range(SPREAD_ATTEMPTS):
        client = LineClient(server.port)
        pid = int(client.ask("pid") or 0)
        messages += 1
        if pid in held:
            client.close()
            continue
        held[pid] = client
        client.send(f"wait {release}\n")
        messages += 1
        if set(held) == pids:
            break
    assert set(held) == pids
    wait_until(
        lambda: scraped(metrics_port, "aiotcp_messages_received_total") == messages,
        what="both waits in flight",
    )

    server.signal(signal.SIGTERM)
    wait_until(lambda: http_get(metrics_port, "/readyz")[0] == 503, what="/readyz 503")
    assert http_get(metrics_port, "/healthz")[0] == 200
    assert server.alive()  # still draining: the waits hold it open
    release.touch()
    for client in held.values():
        assert client.line() == "released"  # the in-flight message was acked
        rest = client.line()
        assert rest is None or rest.startswith("ERR shutdown"), rest
        client.close()
    assert server.wait() == 0
    assert server.log.count("server stopped") == 2


def test_metrics_sum_every_worker_exactly(spawn_server: SpawnServer) -> None:
    metrics_port = free_port()
    clients, per_client = 40, 5
    server = spawn_server(["--workers", "2", "--metrics-port", str(metrics_port)])
    worker_pids(server)
    sent = received = 0
    for c in range(clients):
        with LineClient(server.port) as client:
            for m in range(per_client):
                text = f"client {c} message {m} 你好"
                assert client.ask(text) == ACK + text
                sent += len(text.encode()) + 1
                received += len(f"{ACK}{text}\n".encode())
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
        got = wait_until(settled, what="exact totals on /metrics")
    except AssertionError:
        pytest.fail(f"/metrics never matched {want}: last scrape {scrape(metrics_port)}")
    # The histogram is summed like the counters: one observation per acked message.
    assert got["aiotcp_ack_latency_seconds_count"] == clients * per_client
    assert got['aiotcp_ack_latency_seconds_bucket{le="+Inf"}'] == clients * per_client
    assert got['aiotcp_errors_total{code="internal"}'] == 0


def test_a_taken_metrics_port_fails_the_supervisor_before_any_worker() -> None:
    """Before any loop runs: once is enough."""
    with taken_port() as port:
        r = run_aiotcp(*SERVE_TWO, "--metrics-port", str(port))
    assert r.returncode == 1
    assert "cannot serve metrics" in r.stderr
    assert "listening on" not in r.stderr  # no worker was started


def test_a_worker_that_cannot_boot_fails_the_supervisor() -> None:
    """The app is imported before the worker's loop starts: once is enough."""
    r = run_aiotcp(*SERVE_TWO, "--app", "no_such_module_here:app")
    assert r.returncode == 1
    assert "failed to start" in r.stderr


def test_a_second_sigterm_forces_the_drain(tmp_path: Path, spawn_server: SpawnServer) -> None:
    metrics_port = free_port()
    never = tmp_path / "never-created"
    server = start(
        spawn_server,
        "--shutdown-timeout",
        str(DRAIN_NEVER_ENDS),
        "--metrics-port",
        str(metrics_port),
    )
    pids = worker_pids(server)
    client = LineClient(server.port)
    client.send(f"wait {never}\n")  # would hold the drain for as long as it is allowed
    wait_until(
        lambda: scraped(metrics_port, "aiotcp_messages_received_total") == 1,
        what="the wait in flight",
    )
    server.signal(signal.SIGTERM)
    # The worker holding the wait has taken the first signal: it is draining. (Sent
    # before that, the forwarded second signal can merge with the first in the worker.)
    server.wait_for_log(r"\[worker \d pid \d+\]: shutting down: draining 1 connection")
    server.signal(signal.SIGTERM)
    assert server.wait() in (0, 1)  # long before the drain deadline
    reply = client.line()
    assert reply is None or "released" not in reply  # aborted: EOF or a reset
    client.close()
    assert "forcing" in server.log
    for pid in pids:
        wait_until(lambda pid=pid: not pid_alive(pid), what=f"worker {pid} gone")


def test_workers_die_with_a_killed_supervisor(spawn_server: SpawnServer) -> None:
    server = start(spawn_server)
    pids = worker_pids(server)
    server.kill()
    for pid in pids:
        wait_until(lambda pid=pid: not pid_alive(pid), what=f"orphaned worker {pid} to exit")


def test_readyz_needs_every_worker_ready_by_its_app(tmp_path: Path) -> None:
    """The supervisor's rule, whatever loop the workers run: once is enough."""
    metrics_port = free_port()
    args = ["--workers", "2", "--app", "ready_apps:app", "--metrics-port", str(metrics_port)]
    with ServerProcess(args, env={"READY_DIR": str(tmp_path)}) as server:
        _first, second = worker_pids(server)
        wait_until(lambda: http_get(metrics_port, "/readyz")[0] == 200, what="/readyz 200")
        down = tmp_path / f"down-{second}"
        down.touch()  # one worker's app says it cannot serve (its broker is down, say)
        wait_until(lambda: http_get(metrics_port, "/readyz")[0] == 503, what="/readyz 503")
        down.unlink()
        wait_until(lambda: http_get(metrics_port, "/readyz")[0] == 200, what="/readyz 200 again")
        assert server.stop() == 0


def test_no_setting_is_in_a_worker_command_line_or_added_to_its_environment() -> None:
    """Workers get the Config on a pipe (no loop involved: once is enough)."""
    env = {"AIOTCP_REDIS": "redis://:envsecret@127.0.0.1:6379/0"}
    args = ["--workers", "2", "--store", "postgresql://u:flagsecret@127.0.0.1/db",
            "--ack-prefix", "via the pipe: "]  # fmt: skip
    with ServerProcess(args, env=env) as server:
        pids = worker_pids(server)
        for _ in range(10):  # the Config reached the workers whole
            with LineClient(server.port) as client:
                assert client.ask("x") == "via the pipe: x"
        for pid in pids:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            environ = Path(f"/proc/{pid}/environ").read_bytes()
            assert b"secret" not in cmdline, cmdline
            assert b"flagsecret" not in environ  # the supervisor adds no setting
            assert b"envsecret" not in environ  # nor hands on its AIOTCP_* settings
        assert server.stop() == 0


# ---- a stop signal while a worker is being started -------------------------------------

SPAWN_PATHS = {
    # path: (workers, which start the signal lands in, what the test does once booted)
    "boot": (2, 2, None),
    "respawn": (1, 2, "kill"),
    "roll": (1, 2, "hangup"),
}


@pytest.mark.parametrize("path", sorted(SPAWN_PATHS))
def test_a_stop_signal_during_a_worker_start_reaches_that_worker(
    path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SIGTERM lands while the supervisor awaits a new worker's exec (as a real signal
    can): that worker must still get it, or the supervisor waits on it for ever. The
    signal is delivered at that exact point by wrapping the start, on every path that
    starts workers."""
    import asyncio

    from aiotcp import workers
    from aiotcp.config import Config

    count, at, action = SPAWN_PATHS[path]
    config = Config(port=0, workers=str(count), shutdown_timeout=DRAIN_NEVER_ENDS)
    supervisor = workers.Supervisor(config, rebuild=lambda: config)
    real_start = workers.start_process
    started: list[asyncio.subprocess.Process] = []

    async def start(env: dict[str, str], fds: list[int]) -> asyncio.subprocess.Process:
        proc = await real_start(env, fds)
        started.append(proc)
        if len(started) == at:
            supervisor.on_signal(signal.SIGTERM)  # before the supervisor has seen proc
        return proc

    monkeypatch.setattr(workers, "start_process", start)

    async def scenario() -> int:
        run = asyncio.get_running_loop().create_task(supervisor.run())
        if action is not None:
            while supervisor.current is None:
                assert not run.done(), "the supervisor exited before serving"
                await asyncio.sleep(0.02)
            if action == "kill":
                os.kill(started[0].pid, signal.SIGKILL)
            else:
                supervisor.on_hangup()
        async with asyncio.timeout(HANG_GUARD):
            return await run

    assert asyncio.run(scenario()) == 0
    assert len(started) >= at
    for proc in started:
        assert proc.returncode in (0, -signal.SIGTERM, -signal.SIGKILL), proc.returncode


# ---- the supervisor's pure parts -------------------------------------------------------


def queued_connection(port: int) -> socket.socket:
    """A client whose handshake is done and which waits in the accept queue."""
    client = socket.create_connection(("127.0.0.1", port), timeout=5)
    client.sendall(b"queued\n")
    return client


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux accept queues")
def test_a_shared_listener_keeps_its_queue_where_closing_a_reuseport_one_drops_it() -> None:
    """Why the supervisor owns the listeners: a worker closing its copy of a shared
    socket leaves the queue to the others; closing a SO_REUSEPORT listener resets what is
    queued on it (net.ipv4.tcp_migrate_req off, its default)."""
    shared = socket.socket()
    shared.bind(("127.0.0.1", 0))
    shared.listen()
    worker_copy = socket.socket(fileno=os.dup(shared.fileno()))  # what a worker inherits
    waiting = queued_connection(shared.getsockname()[1])
    worker_copy.close()  # the old worker stops accepting
    accepted, _ = shared.accept()  # a worker still serving takes it
    assert accepted.recv(100) == b"queued\n"
    for s in (accepted, waiting, shared):
        s.close()

    migrate = Path("/proc/sys/net/ipv4/tcp_migrate_req")
    if migrate.exists() and migrate.read_text().strip() != "0":
        return  # this kernel migrates queued connections: nothing to show
    first, second = socket.socket(), socket.socket()
    for s in (first, second):
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    first.bind(("127.0.0.1", 0))
    port = first.getsockname()[1]
    first.listen()
    clients = [queued_connection(port) for _ in range(8)]  # all on the one listener
    second.bind(("127.0.0.1", port))
    second.listen()
    first.close()
    reset = 0
    for c in clients:
        try:
            reset += c.recv(1) == b""
        except ConnectionResetError:
            reset += 1
        c.close()
    second.close()
    assert reset == len(clients)


def test_restart_backoff_doubles_on_quick_failures_and_resets_after_a_stable_run() -> None:
    failures, delays = 0, []
    for _ in range(12):
        failures, delay = restart_backoff(failures, uptime=0.5)
        delays.append(delay)
    assert delays[:4] == [0.1, 0.2, 0.4, 0.8]
    assert delays[-1] == RESTART_BACKOFF_MAX
    assert restart_backoff(failures, uptime=STABLE_AFTER) == (1, 0.1)
