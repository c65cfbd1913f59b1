"""A client that floods without reading: bounded server memory, others still served, dropped.

How fast the others are served meanwhile is a benchmark figure (``aiotcp bench`` with
misbehaving clients), not asserted here: the machine is shared.

The server pauses reading from a client whose replies pile up, so the flood may never all be
written: the sender writes until it has sent FLOOD_BYTES, the server drops it, or (with a
long write timeout) its writes have been blocked for STALLED seconds in a row.
"""

from __future__ import annotations

import socket
import threading
import time

import pytest

from support.clients import ACK, LineClient, served
from support.process import SpawnServer
from support.waiting import HANG_GUARD

FLOOD_BYTES = 300 * 1024 * 1024
RSS_GROWTH_LIMIT_KIB = 64 * 1024
# Probes answered while the flooder's writes were blocked: the others are still served.
MIN_PROBES_WHILE_BLOCKED = 10
STALLED = 1.5
LINE = b"x" * 63 + b"\n"
CHUNK = LINE * (1024 * 1024 // len(LINE))


class Flooder(threading.Thread):
    """Writes lines without ever reading; records when it blocked and when it was dropped."""

    def __init__(self, port: int, deadline: float, stall_limit: float | None) -> None:
        super().__init__(daemon=True)
        self.stall_limit = stall_limit
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.settimeout(0.1)
        self.deadline = deadline
        self.sent = 0
        self.dropped_at: float | None = None
        self.blocked_since: float | None = None
        self.stalled = False
        self.done = threading.Event()

    def run(self) -> None:
        view = memoryview(CHUNK)
        off = 0
        try:
            while self.sent < FLOOD_BYTES and time.monotonic() < self.deadline:
                try:
                    n = self.sock.send(view[off:])
                except TimeoutError:
                    now = time.monotonic()
                    if self.blocked_since is None:
                        self.blocked_since = now
                    elif self.stall_limit and now - self.blocked_since >= self.stall_limit:
                        self.stalled = True
                        return
                    continue
                except OSError:  # EPIPE / ECONNRESET: the server dropped us
                    self.dropped_at = time.monotonic()
                    return
                self.blocked_since = None
                self.sent += n
                off = (off + n) % len(CHUNK)
        finally:
            self.done.set()


@pytest.mark.parametrize("write_timeout", [2.0, 60.0])
def test_non_reader_is_paused_not_buffered(write_timeout: float, spawn_server: SpawnServer) -> None:
    server = spawn_server(["--write-timeout", str(write_timeout)])
    probe = LineClient(server.port)
    for i in range(50):  # warm up before the baseline
        assert probe.ask(f"warm{i}") == f"{ACK}warm{i}"
    baseline = server.rss_kib()
    peak = [baseline]
    sampling = threading.Event()

    def sample_rss() -> None:
        while not sampling.wait(0.02):
            peak[0] = max(peak[0], server.rss_kib())

    sampler = threading.Thread(target=sample_rss, daemon=True)
    sampler.start()
    dropping = write_timeout < 10
    flooder = Flooder(
        server.port,
        deadline=time.monotonic() + HANG_GUARD,
        stall_limit=None if dropping else STALLED,
    )
    flooder.start()
    probes = probes_while_blocked = 0
    try:
        while not flooder.done.is_set():
            blocked = flooder.blocked_since is not None
            assert probe.ask(f"probe{probes}") == f"{ACK}probe{probes}"
            probes += 1
            if blocked and flooder.blocked_since is not None:
                probes_while_blocked += 1
            time.sleep(0.002)  # pacing: spread the probes over the whole flood
        flooder.join(HANG_GUARD)
    finally:
        sampling.set()
        sampler.join(HANG_GUARD)
        flooder.sock.close()
    growth = peak[0] - baseline
    assert growth <= RSS_GROWTH_LIMIT_KIB, f"RSS grew {growth} KiB (baseline {baseline} KiB)"
    assert flooder.sent < FLOOD_BYTES, "the server never pushed back"
    if dropping:
        assert flooder.dropped_at is not None, "the non-reader was never disconnected"
        # Dropped for not reading: its writes had been blocking when the server let go.
        assert flooder.blocked_since is not None
    else:
        assert flooder.stalled and flooder.dropped_at is None
    assert probes_while_blocked >= MIN_PROBES_WHILE_BLOCKED, (probes_while_blocked, probes)
    probe.close()
    assert served(server.port)
    assert server.stop() == 0
    assert "Traceback" not in server.log, server.log
