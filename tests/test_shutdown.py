"""Graceful shutdown on SIGTERM under load, the drain deadline, and the forcing second signal."""

from __future__ import annotations

import asyncio
import signal
import socket
from dataclasses import dataclass, field

import pytest

from aiotcp.apps import Ack
from aiotcp.server import Server
from support.clients import ACK, AsyncLineClient, LineClient
from support.inprocess import RunServer
from support.process import SpawnServer
from support.waiting import HANG_GUARD, wait_until, wait_until_async

CLIENTS = 30
BATCH = 50
MAX_IN_FLIGHT = 1000
# A drain that is not meant to reach its deadline: so long that only a server that never
# drains reaches it (the log then says so, and the test fails on that line).
DRAIN_NOT_EXPECTED_TO_END = 20.0
# A drain that cannot end by itself: longer than any hang guard, so that only a second
# signal can end the process within the test.
DRAIN_NEVER_ENDS = 600.0


@dataclass
class Outcome:
    """What one pipelining client saw, in order."""

    sent: int = 0
    acked: int = 0  # acks 0..acked-1 arrived, each in its place
    after_acks: list[str] = field(default_factory=list)  # every line after the last ack
    ending: str = ""  # "eof" or "reset"


async def pipelining_client(port: int, out: Outcome, stop_writing: asyncio.Event) -> None:
    """Send ``0\\n1\\n2\\n...`` continuously (bounded in flight) and check every reply line.

    A raw socket, not streams: a failed write must not throw away replies still to be read.
    """
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setblocking(False)
    await loop.sock_connect(sock, ("127.0.0.1", port))
    acked = asyncio.Event()

    async def write() -> None:
        try:
            while not stop_writing.is_set():
                start = out.sent
                batch = "".join(f"{i}\n" for i in range(start, start + BATCH)).encode()
                out.sent += BATCH
                await loop.sock_sendall(sock, batch)
                while out.sent - out.acked > MAX_IN_FLIGHT and not stop_writing.is_set():
                    acked.clear()
                    await acked.wait()
        except OSError:
            pass  # the server has closed: a write after that may fail

    async def read() -> None:
        buf = b""
        try:
            while True:
                chunk = await loop.sock_recv(sock, 65536)
                if not chunk:
                    out.ending = "eof"
                    break
                buf += chunk
                *lines, buf = buf.split(b"\n")
                for line in lines:
                    text = line.decode()
                    if not out.after_acks and text == f"{ACK}{out.acked}":
                        out.acked += 1
                    else:
                        out.after_acks.append(text)
                        stop_writing.set()
                acked.set()
        except ConnectionResetError:
            out.ending = "reset"
        finally:
            if buf:
                out.after_acks.append(buf.decode("utf-8", "replace"))
            stop_writing.set()
            acked.set()

    writer_task = asyncio.create_task(write())
    try:
        await read()
    finally:
        await writer_task
        sock.close()


def drain_under_load(app: str, spawn_server: SpawnServer) -> list[Outcome]:
    """SIGTERM while CLIENTS clients pipeline; check the exit, return what each client saw."""
    server = spawn_server(["--app", app, "--shutdown-timeout", str(DRAIN_NOT_EXPECTED_TO_END)])
    outcomes = [Outcome() for _ in range(CLIENTS)]

    async def main() -> None:
        stops = [asyncio.Event() for _ in range(CLIENTS)]
        tasks = [
            asyncio.create_task(pipelining_client(server.port, o, s))
            for o, s in zip(outcomes, stops, strict=True)
        ]
        # Under load: every client has had replies and keeps sending.
        await wait_until_async(
            lambda: all(o.acked >= 2 * BATCH for o in outcomes) or any(t.done() for t in tasks),
            what="every client acked under load",
        )
        server.signal(signal.SIGTERM)
        async with asyncio.timeout(HANG_GUARD):
            await asyncio.gather(*tasks)

    asyncio.run(main())
    assert server.wait() == 0
    log = server.log
    assert "Traceback" not in log, log
    assert "shutdown deadline passed" not in log, log
    for i, o in enumerate(outcomes):
        where = f"client {i}: {o}"
        assert o.acked >= 2 * BATCH, where  # the load was on when the signal came
        # An unbroken, in-order prefix of the acks (checked as they came), then ERR shutdown.
        assert len(o.after_acks) == 1 and o.after_acks[0].startswith("ERR shutdown "), where
    return outcomes


@pytest.mark.parametrize("app", ["ack", "fault_apps:slow"])
def test_sigterm_under_load_acks_in_order_then_err_shutdown(
    app: str, spawn_server: SpawnServer
) -> None:
    outcomes = drain_under_load(app, spawn_server)
    # Then the connection ends with EOF, never a reset: the server half-closes after
    # ERR shutdown and waits for the client's EOF, so no unread input turns the close
    # into a RST that could destroy the replies still on their way.
    assert all(o.ending == "eof" for o in outcomes), outcomes


def test_slow_handler_is_aborted_at_the_deadline(spawn_server: SpawnServer) -> None:
    server = spawn_server(["--app", "fault_apps:slow", "--shutdown-timeout", "1"])
    c = LineClient(server.port)
    c.send("sleep:600\n")
    server.wait_for_log("fault_apps: sleeping for sleep:600")
    server.signal(signal.SIGTERM)
    assert server.wait() == 0
    assert "shutdown deadline passed: aborting 1 connection(s)" in server.log, server.log
    assert c.line() is None  # aborted: no ack, no ERR, the connection just ends
    assert "Traceback" not in server.log, server.log


def test_second_sigterm_forces_exit(spawn_server: SpawnServer) -> None:
    server = spawn_server(["--app", "fault_apps:slow", "--shutdown-timeout", str(DRAIN_NEVER_ENDS)])
    clients = [LineClient(server.port) for _ in range(3)]
    for c in clients:
        c.send("sleep:600\n")
    wait_until(
        lambda: server.log.count("fault_apps: sleeping for sleep:600") == 3,
        what="three handlers busy",
    )
    server.signal(signal.SIGTERM)
    server.wait_for_log("shutting down: draining 3 connection")
    assert server.alive()  # the drain is waiting for the handlers
    server.signal(signal.SIGTERM)
    assert server.wait() == 0
    log = server.log
    assert "second stop request: aborting 3 connection(s)" in log, log
    assert "shutdown deadline passed" not in log, log
    for c in clients:
        assert c.line() is None
    assert "Traceback" not in log, log


def test_a_client_connecting_as_the_drain_begins_is_served_not_refused(
    run_server: RunServer,
) -> None:
    """A connection accepted as shutdown begins has sent nothing yet: its first message
    (on its way) is answered through the linger, then ERR shutdown and EOF, as for any
    connection. (In a rolling restart this is a client that reached an old worker.)"""

    async def client(server: Server, port: int) -> list[str]:
        c = await AsyncLineClient.connect(port)
        await wait_until_async(lambda: server.registry.members, what="the connection")
        stopping = asyncio.ensure_future(server.shutdown())
        await asyncio.sleep(0)  # the drain has begun; now the first message leaves
        await c.send("first\n")
        lines = (await c.until_eof()).decode().splitlines()
        await c.close()
        await stopping
        return lines

    assert run_server(Ack(), client) == [ACK + "first", "ERR shutdown server is shutting down"]
