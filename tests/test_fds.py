"""Running out of file descriptors: the server survives, logs rarely, and serves again."""

from __future__ import annotations

import re
import resource
import socket

from support.clients import ACK, LineClient, closed_by_peer, served
from support.process import SpawnServer
from support.waiting import HANG_GUARD, wait_until

NOFILE = 128
HOLDERS = 200
# The cap the server derives from an fd limit of 128 (it keeps 16 fds in reserve).
DERIVED_CAP = NOFILE - 16


def limit_fds() -> None:
    """preexec_fn: soft and hard limit both 128, so the server cannot raise its soft limit."""
    resource.setrlimit(resource.RLIMIT_NOFILE, (NOFILE, NOFILE))


EMFILE_WARNING = re.compile(r"^\S+ WARNING aiotcp: out of file descriptors", re.MULTILINE)


def emfile_warnings(log: str) -> int:
    """Log records of running out of fds (not stack dumps that quote the logging call)."""
    return len(EMFILE_WARNING.findall(log))


def test_fd_exhaustion_survives_and_recovers(loop: str, spawn_server: SpawnServer) -> None:
    server = spawn_server(["--max-connections", "1000"], preexec_fn=limit_fds)
    holders = []
    try:
        for _ in range(HOLDERS):
            s = socket.create_connection(("127.0.0.1", server.port), timeout=HANG_GUARD)
            s.setblocking(False)
            holders.append(s)
        # The server accepts until it runs out of fds. On asyncio it says so (once per
        # interval, not per accept); uvloop (libuv) accepts and closes the excess itself.
        if loop == "asyncio":
            server.wait_for_log("WARNING aiotcp: out of file descriptors")
        else:
            wait_until(
                lambda: any(closed_by_peer(s) for s in holders), what="an excess accept closed"
            )
        # Those it did accept are served while it is out of fds.
        first = holders[0]
        first.settimeout(HANG_GUARD)
        first.sendall(b"held\n")
        assert first.recv(100) == (ACK + "held\n").encode()
        assert server.alive()
    finally:
        for s in holders:
            s.close()
    # Descriptors free up: a new client is served again.
    wait_until(lambda: served(server.port), what="serving again", interval=0.1)
    assert server.alive()
    assert server.stop() == 0
    log = server.log
    assert emfile_warnings(log) <= 3, log  # a few, not one per failed accept
    # (No "Traceback" check here: on asyncio, EMFILE retries scheduled by asyncio can log
    # tracebacks if they fire after the listener closed.)


def test_default_cap_derived_from_fd_limit(spawn_server: SpawnServer) -> None:
    server = spawn_server([], preexec_fn=limit_fds)
    clients = []
    try:
        served_count = 0
        busy = 0
        # One at a time, so the answer of each is known before the next connects.
        for i in range(DERIVED_CAP + 8):
            c = LineClient(server.port)
            reply = c.ask(f"c{i}")
            if reply == f"{ACK}c{i}":
                served_count += 1
                clients.append(c)
            else:
                assert reply is not None and reply.startswith("ERR busy "), (i, reply)
                assert f"limit {DERIVED_CAP}" in reply, reply
                assert c.eof()
                c.close()
                busy += 1
        assert served_count == DERIVED_CAP
        assert busy == 8
    finally:
        for c in clients:
            c.close()
    wait_until(lambda: served(server.port), what="serving again")
    assert server.stop() == 0
    assert emfile_warnings(server.log) == 0, server.log
