"""A worker at its connection cap stops accepting from the shared queue, so the workers with
room take the connections, and accepts again once it has room (``aiotcp.accepting``):
real supervisor and workers, on both loops."""

from __future__ import annotations

from collections import Counter

from support.clients import LineClient
from support.process import ServerProcess, SpawnServer

WORKERS = 3
CAP = 4  # per worker: WORKERS * CAP connections fit in all


def start(spawn_server: SpawnServer) -> ServerProcess:
    return spawn_server(["--workers", str(WORKERS), "--max-connections", str(CAP),
                         "--app", "probe_apps:probe"])  # fmt: skip


def hold(port: int, n: int) -> list[tuple[LineClient, str | None]]:
    """Open ``n`` connections one at a time, each kept open, with the pid that answered it."""
    held = []
    for _ in range(n):
        client = LineClient(port)
        held.append((client, client.ask("pid")))
    return held


def test_full_workers_leave_connections_to_workers_with_room(spawn_server: SpawnServer) -> None:
    server = start(spawn_server)
    held = hold(server.port, WORKERS * CAP)
    try:
        answers = [pid for _, pid in held]
        # Every connection was served (none got ERR busy from a full worker)...
        assert all(a is not None and a.isdigit() for a in answers), answers
        # ...and so every worker holds exactly its cap.
        assert sorted(Counter(answers).values()) == [CAP] * WORKERS, answers
        # A worker that has room again accepts again: close one of a worker's
        # connections, and the next connection is served by that worker.
        client, freed = held.pop(0)
        client.close()
        late = LineClient(server.port)
        held.append((late, late.ask("pid")))
        assert held[-1][1] == freed
    finally:
        for client, _ in held:
            client.close()
    assert server.stop() == 0
