"""Misbehaving clients: what a server meets in the wild, and what it did about each.

Modes (``aiotcp bench --mode ...``), all against ``cfg.host:cfg.port`` with ``cfg.connections``:

* ``idle``: open the connections and hold them for ``cfg.duration`` without sending.
* ``trickle``: send one byte every ``interval`` seconds, never finishing a message.
* ``no-read``: pause reading at once and write messages as fast as the socket accepts them.
* ``half-close``: send ``messages`` complete messages plus a partial one, then
  ``shutdown(SHUT_WR)``; every complete message must be acked (in order, byte-exact), the
  partial one must not, and the server must then close.
* ``storm``: start every connect at the same instant; each sends one message and waits for
  its reply. Reports connect-time percentiles.

Every mode reports how many connections stayed open, when the server closed the others
(seconds after connect) and what it said first (``ERR idle-timeout ...`` is counted under
``ERR idle-timeout``).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from aiotcp.bench.loadgen import LoadConfig
from aiotcp.bench.results import add_error, latency_summary_ms, new_histogram
from aiotcp.bench.verify import Pattern, StrictVerifier, VerifyError, frame, make_message

#: How long no-read mode listens, after resuming reading, for what the server said.
LISTEN_AFTER = 0.5


@dataclass
class MisbehaveResult:
    """Outcome of one misbehaving-client run. Times are seconds after each connect."""

    mode: str
    connections: int
    duration: float = 0.0
    opened: int = 0
    still_open: int = 0
    closed_by_server: int = 0
    close_after_s: dict[str, float] = field(default_factory=dict)  # min / median / max
    server_said: dict[str, int] = field(default_factory=dict)  # first reply kind -> count
    bytes_sent: int = 0
    messages_sent: int = 0
    messages_acked: int = 0
    connect_ms: dict[str, float] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)
    error_samples: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict."""
        return asdict(self)


class Client(asyncio.Protocol):
    """A connection that records what the server sent and when it closed."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock
        self.transport: asyncio.Transport | None = None
        self.connected_at = clock()
        self.closed_at: float | None = None
        self.received = bytearray()
        self.bytes_sent = 0
        self.write_paused = False
        self.acked = 0
        self.on_data: Callable[[bytes], None] | None = None
        self.on_resume: Callable[[], None] | None = None
        self.eof = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.connected_at = self.clock()

    def data_received(self, data: bytes) -> None:
        if len(self.received) < 4096:
            self.received += data[:4096]
        if self.on_data is not None:
            self.on_data(data)

    def eof_received(self) -> bool | None:
        self._closed()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed()

    def _closed(self) -> None:
        if self.closed_at is None:
            self.closed_at = self.clock()
        if not self.eof.done():
            self.eof.set_result(None)

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        if self.on_resume is not None:
            self.on_resume()

    def write(self, data: bytes) -> None:
        """Write unless closed; count the bytes."""
        if (
            self.transport is not None
            and self.closed_at is None
            and not self.transport.is_closing()
        ):
            self.transport.write(data)
            self.bytes_sent += len(data)

    @property
    def first_words(self) -> str:
        """What the server said first, reduced to a kind: ``ERR <code>``, ``reply`` or ``nothing``."""
        if not self.received:
            return "nothing"
        at = self.received.find(b"ERR ")
        if at >= 0:
            return "ERR " + bytes(self.received[at + 4 :]).split(b"\n")[0].split(b" ")[0].decode(
                errors="replace"
            )
        return "reply"


async def open_clients(cfg: LoadConfig, burst: bool, result: MisbehaveResult) -> list[Client]:
    """Connect ``cfg.connections`` clients (all at once if ``burst``, else 256 at a time)."""
    loop = asyncio.get_running_loop()
    gate = asyncio.Semaphore(cfg.connections if burst else 256)
    hist = new_histogram()

    async def one() -> Client | None:
        async with gate:
            t0 = time.perf_counter()
            try:
                _, proto = await asyncio.wait_for(
                    loop.create_connection(lambda: Client(time.perf_counter), cfg.host, cfg.port),
                    cfg.connect_timeout,
                )
            except (TimeoutError, OSError) as exc:
                add_error(result.errors, result.error_samples, "connect", repr(exc))
                return None
            hist.record_value(max(1, int((time.perf_counter() - t0) * 1e6)))
            return proto

    clients = [
        c for c in await asyncio.gather(*(one() for _ in range(cfg.connections))) if c is not None
    ]
    result.opened = len(clients)
    result.connect_ms = latency_summary_ms(hist)
    return clients


async def _hold(
    clients: list[Client], duration: float, tick: Callable[[], None] | None, interval: float
) -> None:
    """Wait ``duration`` s or until every client closed, calling ``tick`` every ``interval`` s."""
    end = time.perf_counter() + duration
    while (now := time.perf_counter()) < end and any(c.closed_at is None for c in clients):
        if tick is not None:
            tick()
        await asyncio.sleep(min(interval, end - now))


def _tally(result: MisbehaveResult, clients: list[Client]) -> None:
    closed = sorted(c.closed_at - c.connected_at for c in clients if c.closed_at is not None)
    result.closed_by_server = len(closed)
    result.still_open = len(clients) - len(closed)
    if closed:
        result.close_after_s = {
            "min": round(closed[0], 3),
            "median": round(closed[len(closed) // 2], 3),
            "max": round(closed[-1], 3),
        }
    for c in clients:
        result.server_said[c.first_words] = result.server_said.get(c.first_words, 0) + 1
    result.bytes_sent = sum(c.bytes_sent for c in clients)


async def _no_read(clients: list[Client], pattern: Pattern) -> None:
    chunk = pattern.batch(0, pattern.distinct)
    for c in clients:
        assert c.transport is not None
        c.transport.pause_reading()

        def pump(c: Client = c) -> None:
            while (
                not c.write_paused
                and c.closed_at is None
                and c.transport is not None
                and not c.transport.is_closing()
            ):
                c.write(chunk)

        c.on_resume = pump
        pump()


def _verify_replies(c: Client, pattern: Pattern, result: MisbehaveResult) -> None:
    """Make ``c`` check its replies strictly and count them in ``c.acked``."""
    verifier = StrictVerifier(pattern)

    def on_data(data: bytes) -> None:
        try:
            c.acked += verifier.feed(data)
        except VerifyError as exc:
            add_error(result.errors, result.error_samples, "verify", str(exc))
            c.on_data = None

    c.on_data = on_data


async def _wait_closed(clients: list[Client], timeout: float) -> None:
    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(asyncio.gather(*(c.eof for c in clients)), timeout)


async def _half_close(
    cfg: LoadConfig, clients: list[Client], pattern: Pattern, messages: int, result: MisbehaveResult
) -> None:
    partial = b""
    if cfg.framing != "raw":
        partial = frame(make_message(0, max(cfg.size, 2)), cfg.framing)[:-1]
    for c in clients:
        _verify_replies(c, pattern, result)
        c.write(pattern.batch(0, messages) + partial)
        assert c.transport is not None
        if c.transport.can_write_eof():
            c.transport.write_eof()
    await _wait_closed(clients, cfg.duration)
    result.messages_sent = messages * len(clients)
    result.messages_acked = sum(c.acked for c in clients)
    missing = result.messages_sent - result.messages_acked
    if missing:
        add_error(
            result.errors,
            result.error_samples,
            "unacked",
            f"{missing} complete messages were not acked before EOF",
        )
    still = sum(1 for c in clients if c.closed_at is None)
    if still:
        add_error(
            result.errors,
            result.error_samples,
            "not-closed",
            f"{still} connections still open {cfg.duration}s after SHUT_WR",
        )


async def _storm(
    clients: list[Client], pattern: Pattern, timeout: float, result: MisbehaveResult
) -> None:
    """Each client sends one message; wait until all have a reply or EOF, or ``timeout``."""
    for c in clients:
        _verify_replies(c, pattern, result)
        c.write(pattern.batch(0, 1))
    end = time.perf_counter() + timeout
    while time.perf_counter() < end and any(c.acked < 1 and c.closed_at is None for c in clients):
        await asyncio.sleep(0.02)
    result.messages_sent = len(clients)
    result.messages_acked = sum(c.acked for c in clients)


async def run_misbehave(
    mode: str, cfg: LoadConfig, interval: float = 1.0, messages: int = 10
) -> MisbehaveResult:
    """Run misbehaving-client ``mode`` (see module docstring) and return what happened.

    Never raises for server behaviour; connect failures and protocol violations are in
    ``errors``. Raises ValueError for an unknown mode.
    """
    if mode not in ("idle", "trickle", "no-read", "half-close", "storm"):
        raise ValueError(f"unknown mode {mode!r}")
    result = MisbehaveResult(mode=mode, connections=cfg.connections)
    pattern = Pattern(cfg.framing, cfg.size, cfg.expect_prefix.encode(), max(256, messages))
    t0 = time.perf_counter()
    clients = await open_clients(cfg, mode == "storm", result)
    if mode == "idle":
        await _hold(clients, cfg.duration, None, 0.05)
    elif mode == "trickle":

        def one_byte_each() -> None:
            for c in clients:
                c.write(b"x")

        await _hold(clients, cfg.duration, one_byte_each, interval)
    elif mode == "no-read":
        await _no_read(clients, pattern)
        await _hold(clients, cfg.duration, None, 0.05)
        for c in clients:
            if c.transport is not None and not c.transport.is_closing():
                c.transport.resume_reading()
        await asyncio.sleep(LISTEN_AFTER)
        result.messages_sent = sum(c.bytes_sent for c in clients) // pattern.wire_len
    elif mode == "half-close":
        await _half_close(cfg, clients, pattern, messages, result)
    else:
        await _storm(clients, pattern, max(cfg.duration, cfg.connect_timeout), result)
    result.duration = round(time.perf_counter() - t0, 3)
    _tally(result, clients)
    for c in clients:
        if c.transport is not None:
            c.transport.abort()
    await asyncio.sleep(0)
    return result


def run_misbehave_sync(
    mode: str, cfg: LoadConfig, interval: float = 1.0, messages: int = 10
) -> MisbehaveResult:
    """``run_misbehave`` on a fresh event loop (uvloop when available)."""
    try:
        import uvloop

        return uvloop.run(run_misbehave(mode, cfg, interval, messages))
    except ImportError:
        return asyncio.run(run_misbehave(mode, cfg, interval, messages))


def format_misbehave(r: MisbehaveResult) -> str:
    """Human-readable report of a misbehaving-client run."""
    lines = [
        f"aiotcp bench --mode {r.mode}: {r.opened}/{r.connections} connections opened, {r.duration:.1f} s",
        f"  still open at the end   {r.still_open}",
        f"  closed by the server    {r.closed_by_server}"
        + (f"  after {r.close_after_s} s" if r.close_after_s else ""),
        "  server said first       "
        + ", ".join(f"{k}: {v}" for k, v in sorted(r.server_said.items())),
        f"  bytes sent              {r.bytes_sent:,}",
    ]
    if r.mode == "no-read":
        lines.append(f"  messages written        {r.messages_sent:,} (replies never read)")
    elif r.messages_sent:
        lines.append(f"  messages acked          {r.messages_acked:,} of {r.messages_sent:,}")
    if r.connect_ms:
        lines.append(
            "  connect ms              "
            + "  ".join(f"{k} {v:.2f}" for k, v in r.connect_ms.items())
        )
    if r.errors:
        lines.append(
            "  ERRORS                  "
            + ", ".join(f"{k}: {v}" for k, v in sorted(r.errors.items()))
        )
        lines.extend(f"    {s}" for s in r.error_samples)
    return "\n".join(lines)
