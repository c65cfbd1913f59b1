"""Rolling restart under ``--workers 2``: SIGHUP starts a new generation from the changed
app module and config file, then drains the old one. Real supervisor, workers, signals
and a client that keeps connecting throughout; and a new generation that fails."""

from __future__ import annotations

import re
import signal
import threading
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from support.clients import LineClient
from support.metrics import http_get, scrape, scraped
from support.ports import free_port
from support.process import ServerProcess, SpawnServer, child_env
from support.waiting import wait_until

APP = '''
import os

PREFIX = {prefix!r}


def handle(message, conn):
    return f"{{PREFIX}} {{os.getpid()}} {{message}}"
'''
# A module that fails as each kind of bad deploy does.
BROKEN = {
    "import": "raise RuntimeError('broken deploy')\n",
    "lifespan": '''
import aiotcp

app = aiotcp.App(lambda message, conn: message)


@app.lifespan
async def pools(state):
    raise ConnectionRefusedError("the new database is not there")
    yield


handle = app
''',
}
PIDS = re.compile(r"(\d+) workers serving: pids ([\d ]+)")


def write_app(directory: Path, prefix: str) -> None:
    # Different lengths: a .pyc is reused when size and mtime (in seconds) both match.
    (directory / "roll_app.py").write_text(APP.format(prefix=prefix))


def app_env(directory: Path) -> dict[str, str]:
    base = child_env()["PYTHONPATH"]
    return {"PYTHONPATH": f"{directory}:{base}", "PYTHONDONTWRITEBYTECODE": "1"}


def pids_of(line: str) -> set[int]:
    m = PIDS.search(line) or re.search(r"serving: pids ([\d ]+)", line)
    assert m is not None, line
    return {int(p) for p in m.groups()[-1].split()}


@dataclass
class Traffic:
    """A client that opens connection after connection, two requests on each, until told
    to stop; a request not served is sent again on the next connection, as a client of
    the drain's rules does. Counts how every attempt ended."""

    port: int
    connections: int = 0
    refused: int = 0  # the connect itself failed
    lost: int = 0  # a request on a connection that had answered: ended with no reply
    turned_away: int = 0  # ERR shutdown instead of a reply, by the drain's rule
    # The first request of a connection that got no reply: none may (a connection an old
    # worker accepted as its drain began is served through the linger).
    unserved_first: int = 0
    replies: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        n = 0
        while not self.stop.is_set():
            try:
                client = LineClient(self.port, timeout=10)
            except OSError as e:
                self.refused += 1
                self.errors.append(f"connect: {e!r}")
                continue
            self.connections += 1
            with client:
                for first in (True, False):
                    message = f"m{n + 1}"
                    try:
                        reply = client.ask(message)
                    except OSError as e:
                        reply = None
                        self.errors.append(f"{message}: {e!r}")
                    if reply is None or reply.startswith("ERR shutdown"):
                        if first:
                            self.unserved_first += 1
                        elif reply is None:
                            self.lost += 1
                        else:
                            self.turned_away += 1
                        break  # sent again on the next connection
                    assert reply.endswith(f" {message}"), reply  # the reply to this request
                    self.replies.append(reply)
                    n += 1

    def prefixes(self) -> list[str]:
        return [r.split()[0] for r in self.replies]


def test_sighup_rolls_to_new_code_with_nothing_refused_or_lost(
    tmp_path: Path, spawn_server: SpawnServer
) -> None:
    write_app(tmp_path, "one")
    metrics_port = free_port()
    server = spawn_server(
        ["--workers", "2", "--app", "roll_app:handle", "--metrics-port", str(metrics_port)],
        env=app_env(tmp_path),
    )
    old = pids_of(server.wait_for_log(PIDS.pattern))
    assert scraped(metrics_port, "aiotcp_generation") == 1
    traffic = Traffic(server.port)
    client = threading.Thread(target=traffic.run, daemon=True)
    client.start()
    try:
        wait_until(lambda: len(traffic.replies) >= 50, what="traffic before the roll")
        write_app(tmp_path, "second")
        server.signal(signal.SIGHUP)
        new = pids_of(server.wait_for_log(r"generation 2 serving: pids"))
        assert not new & old
        for pid in old:
            server.wait_for_log(rf"generation 1 \(pid {pid}\) drained and exited")
        mark = len(traffic.replies)
        wait_until(lambda: len(traffic.replies) >= mark + 50, what="traffic after the roll")
    finally:
        traffic.stop.set()
        client.join(30)
    assert (traffic.refused, traffic.lost, traffic.unserved_first) == (0, 0, 0), traffic.errors
    # Every request was answered, once, in order (those not served were sent again).
    answered = [r.split()[-1] for r in traffic.replies]
    assert answered == [f"m{i + 1}" for i in range(len(answered))]
    after = traffic.prefixes()[mark:]
    assert set(after) == {"second"}  # the new code answers, and only it
    assert set(traffic.prefixes()[:mark]) <= {"one", "second"}
    assert {int(r.split()[1]) for r in traffic.replies[mark:]} <= new
    # Every message a worker acked reached the client: nothing answered was lost.
    wait_until(
        lambda: scraped(metrics_port, "aiotcp_messages_acked_total") == len(traffic.replies),
        what=f"acked_total == {len(traffic.replies)} replies received",
    )
    got = scrape(metrics_port) or {}
    assert (got.get("aiotcp_generation"), got.get("aiotcp_workers")) == (2, 2)
    assert "aiotcp_generation" in (http_get(metrics_port, "/metrics")[1])
    print(f"roll: {traffic.connections} connections, {len(traffic.replies)} replies, "
          f"{traffic.turned_away} turned away by ERR shutdown, "
          f"({traffic.errors})")  # fmt: skip
    assert server.stop() == 0


@pytest.mark.parametrize("failure", ["import", "lifespan", "config"])
def test_a_failing_new_generation_leaves_the_old_one_serving(
    tmp_path: Path, failure: str
) -> None:
    """The supervisor's rule is loop-independent: one loop is enough."""
    write_app(tmp_path, "one")
    toml = tmp_path / "aiotcp.toml"
    toml.write_text("idle_timeout = 60\n")
    args = ["--workers", "2", "--app", "roll_app:handle", "--config", str(toml)]
    with ServerProcess(args, env=app_env(tmp_path)) as server:
        old = pids_of(server.wait_for_log(PIDS.pattern))
        if failure == "config":
            toml.write_text("idle_timeout = -1\n")
            want = (rf"SIGHUP: rolling restart refused: idle_timeout in {re.escape(str(toml))} "
                    r"must be a finite number >= 0, not -1\.0; generation 1 keeps serving")  # fmt: skip
        else:
            (tmp_path / "roll_app.py").write_text(BROKEN[failure])
            why = {"import": r"cannot import app module 'roll_app': RuntimeError: broken deploy",
                   "lifespan": r"startup failed: .*the new database is not there"}[failure]  # fmt: skip
            want = (rf"generation 2 failed to start: worker \d \(pid \d+\) exited with code 1: "
                    rf"{why}; generation 1 keeps serving")  # fmt: skip
        server.signal(signal.SIGHUP)
        server.wait_for_log(want)
        assert len(re.findall(want, server.log)) == 1
        seen = set()
        for _ in range(40):
            with LineClient(server.port) as client:
                reply = client.ask("still")
            assert reply is not None and reply.startswith("one "), reply
            seen.add(int(reply.split()[1]))
        assert seen <= old
        assert server.stop() == 0


def test_a_hangup_during_a_roll_rolls_once_more(tmp_path: Path) -> None:
    write_app(tmp_path, "one")
    with ServerProcess(["--workers", "1", "--app", "roll_app:handle"],
                       env=app_env(tmp_path)) as server:  # fmt: skip
        server.wait_for_log(PIDS.pattern)
        server.signal(signal.SIGHUP)
        server.wait_for_log(r"SIGHUP: starting generation 2")
        server.signal(signal.SIGHUP)
        server.wait_for_log(r"generation 3 serving")
        with LineClient(server.port) as client:
            assert (client.ask("x") or "").startswith("one ")
        assert server.stop() == 0
