"""Graceful shutdown on SIGTERM under load, the drain deadline, and the forcing second signal."""

from __future__ import annotations

import asyncio
import signal
import socket
import time
from dataclasses import dataclass, field
from typing import Any

import pytest

from robust_support import (  # noqa: F401 (the *_fixture names register fixtures)
    ACK,
    LineClient,
    loop_fixture,
    spawn_server_fixture,
    wait_until,
)

CLIENTS = 30
BATCH = 50
MAX_IN_FLIGHT = 1000
SHUTDOWN_TIMEOUT = 5.0
EXIT_MARGIN = 5.0


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


def drain_under_load(loop: str, app: str, spawn_server: Any) -> list[Outcome]:
    """SIGTERM while CLIENTS clients pipeline; check the exit, return what each client saw."""
    server = spawn_server(loop, ["--app", app, "--shutdown-timeout", str(SHUTDOWN_TIMEOUT)])
    outcomes = [Outcome() for _ in range(CLIENTS)]
    signalled_at = 0.0

    async def main() -> None:
        nonlocal signalled_at
        stops = [asyncio.Event() for _ in range(CLIENTS)]
        tasks = [
            asyncio.create_task(pipelining_client(server.port, o, s))
            for o, s in zip(outcomes, stops, strict=True)
        ]
        async with asyncio.timeout(20):
            # Under load: every client has had replies and keeps sending.
            while not all(o.acked >= 2 * BATCH for o in outcomes):
                if any(t.done() for t in tasks):
                    break
                await asyncio.sleep(0.01)
            server.signal(signal.SIGTERM)
            signalled_at = time.monotonic()
            await asyncio.gather(*tasks)

    asyncio.run(main())
    code = server.wait(SHUTDOWN_TIMEOUT + EXIT_MARGIN)
    took = time.monotonic() - signalled_at
    assert code == 0
    assert took < SHUTDOWN_TIMEOUT + EXIT_MARGIN, took
    log = server.log
    assert "Traceback" not in log, log
    assert "shutdown deadline passed" not in log, log
    for i, o in enumerate(outcomes):
        where = f"client {i}: {o}"
        assert o.acked >= 2 * BATCH, where  # the load was on when the signal came
        # An unbroken, in-order prefix of the acks (checked as they came), then ERR shutdown.
        assert len(o.after_acks) == 1 and o.after_acks[0].startswith("ERR shutdown "), where
    return outcomes


@pytest.mark.parametrize("app", ["ack", "robust_apps:slow"])
def test_sigterm_under_load_acks_in_order_then_err_shutdown(
    loop: str, app: str, spawn_server: Any
) -> None:
    outcomes = drain_under_load(loop, app, spawn_server)
    # Then the connection ends. EOF is what a client should see; today most see a reset,
    # because the server closes with the client's unread bytes queued (the kernel then
    # sends RST). Tighten to "eof" once the server half-closes and drains on shutdown.
    assert all(o.ending in ("eof", "reset") for o in outcomes), outcomes


def test_slow_handler_is_aborted_at_the_deadline(loop: str, spawn_server: Any) -> None:
    deadline = 1.0
    server = spawn_server(loop, ["--app", "robust_apps:slow", "--shutdown-timeout", str(deadline)])
    c = LineClient(server.port, timeout=deadline + EXIT_MARGIN)
    c.send("sleep:30\n")
    server.wait_for_log("robust_apps: sleeping for sleep:30")
    t0 = time.monotonic()
    server.signal(signal.SIGTERM)
    assert server.wait(deadline + EXIT_MARGIN) == 0
    took = time.monotonic() - t0
    assert deadline * 0.9 <= took < deadline + EXIT_MARGIN, took
    assert "shutdown deadline passed" in server.log, server.log
    assert c.line() is None  # aborted: no ack, no ERR, the connection just ends
    assert "Traceback" not in server.log, server.log


def test_second_sigterm_forces_exit(loop: str, spawn_server: Any) -> None:
    server = spawn_server(loop, ["--app", "robust_apps:slow", "--shutdown-timeout", "30"])
    clients = [LineClient(server.port, timeout=10) for _ in range(3)]
    for c in clients:
        c.send("sleep:60\n")
    wait_until(lambda: server.log.count("robust_apps: sleeping for sleep:60") == 3, 10)
    server.signal(signal.SIGTERM)
    server.wait_for_log("shutting down: draining 3 connection")
    assert server.alive()  # the drain is waiting for the handlers
    t0 = time.monotonic()
    server.signal(signal.SIGTERM)
    assert server.wait(EXIT_MARGIN) == 0
    assert time.monotonic() - t0 < EXIT_MARGIN
    for c in clients:
        assert c.line() is None
    assert "Traceback" not in server.log, server.log
