"""Idle timeout (idle and trickling clients) and handler timeout, against a server process.

Each test waits for the event (the ``ERR`` line, then the close) under a hang guard and
checks its reason; none asserts how long it took. How early or late a deadline fires is
for unit tests with a fake clock, and for the benchmark.
"""

from __future__ import annotations

import threading

from support.clients import ACK, LineClient
from support.process import ServerProcess, SpawnServer
from support.waiting import wait_until

IDLE = 1.0
IDLE_ERR = f"ERR idle-timeout no complete message for {IDLE:g}s"
# How often the clients below send: well inside IDLE, so that a client that sends is
# never idle, however the machine is loaded.
PACE = IDLE / 10
HANDLER_TIMEOUT = 0.3


def idle_server(spawn_server: SpawnServer) -> ServerProcess:
    return spawn_server(["--idle-timeout", str(IDLE)])


def assert_closed_for_idleness(c: LineClient) -> None:
    assert c.line() == IDLE_ERR
    assert c.eof()


def test_idle_client_is_closed(spawn_server: SpawnServer) -> None:
    server = idle_server(spawn_server)
    assert_closed_for_idleness(LineClient(server.port))


def test_idle_counts_from_the_last_complete_message(spawn_server: SpawnServer) -> None:
    """A client that sends is kept while a silent one is closed; then, silent, it goes too."""
    server = idle_server(spawn_server)
    quiet = LineClient(server.port)
    active = LineClient(server.port)
    sent = 0

    def send_one_and_look() -> bool:
        nonlocal sent
        assert active.ask(f"m{sent}") == f"{ACK}m{sent}"
        sent += 1
        return quiet.pending()

    wait_until(send_one_and_look, what="the quiet client's idle timeout", interval=PACE)
    # The idle timeout was live all along: the silent client was closed meanwhile...
    assert_closed_for_idleness(quiet)
    # ...and the one that kept sending is open and served; once silent, it is closed too.
    assert active.ask("last") == ACK + "last"
    assert_closed_for_idleness(active)


def test_trickling_client_is_closed(spawn_server: SpawnServer) -> None:
    """Bytes every PACE, never a newline: bytes arrive, but no message completes."""
    server = idle_server(spawn_server)
    c = LineClient(server.port)
    stop = threading.Event()

    def trickle() -> None:
        while not stop.wait(PACE):
            try:
                c.send(b"x")
            except OSError:
                return

    sender = threading.Thread(target=trickle, daemon=True)
    sender.start()
    try:
        assert_closed_for_idleness(c)
    finally:
        stop.set()
        sender.join()


def test_slow_handler_times_out_and_connection_continues(spawn_server: SpawnServer) -> None:
    server = spawn_server(["--app", "fault_apps:slow", "--handler-timeout", str(HANDLER_TIMEOUT)])
    timed_out = f"ERR timeout handler took over {HANDLER_TIMEOUT:g}s"
    c = LineClient(server.port)
    assert c.ask("sleep:30") == timed_out
    assert c.ask("next") == ACK + "next"
    # Pipelined: the timed-out message and the ones behind it, replies in order.
    c.send("sleep:30\nafter\nsleep:0.01\n")
    assert c.lines(3) == [timed_out, ACK + "after", ACK + "sleep:0.01"]
    c.close()
    assert server.stop() == 0
    assert "Traceback" not in server.log, server.log
