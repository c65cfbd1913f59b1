"""The load generator: many connections, pipelined or rate-limited, every reply verified.

Closed loop (default): each connection keeps ``in_flight`` messages outstanding; every read
that completes ``n`` replies sends ``n`` new messages in one ``transport.write``. Latency is
from the write of a message to the read that completed its reply; messages written together
share a timestamp, so one histogram record covers a whole batch.

Open loop (``rate > 0``): each connection sends at ``rate / connections`` messages per second
on a fixed schedule, with at most ``in_flight`` outstanding; latency is measured from each
message's *scheduled* send time (wrk2's correction for coordinated omission), so a server
that stalls is charged for the messages the client could not send meanwhile.

``run_load`` is the async core for one process; ``multiproc.run_load_processes`` splits a run
across processes and merges the histograms.
"""

from __future__ import annotations

import asyncio
import contextlib
import resource
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from aiotcp.bench.results import MAX_LATENCY_US, LoadResult, add_error, finish, new_histogram
from aiotcp.bench.verify import Framing, Pattern, VerifyError, VerifyMode, make_verifier

#: Connects in progress at once when no ramp is given (a burst larger than the server's
#: listen backlog only produces SYN retransmits, which would pollute connect-time numbers).
CONNECT_CONCURRENCY = 256


@dataclass(frozen=True)
class LoadConfig:
    """Parameters of one load run. ``rate`` is the total messages/s (0 = closed loop)."""

    host: str = "127.0.0.1"
    port: int = 8888
    connections: int = 10
    duration: float = 5.0
    size: int = 64
    in_flight: int = 1
    rate: float = 0.0
    ramp: float = 0.0
    framing: Framing = "line"
    verify: VerifyMode = "strict"
    expect_prefix: str = "已收到: "
    processes: int = 1
    connect_timeout: float = 10.0
    drain_timeout: float = 3.0
    count: int = 0  # total messages instead of a duration (compiled engine only)

    def share(self, index: int, parts: int) -> LoadConfig:
        """Return the config for client process ``index`` of ``parts`` (connections, rate split)."""
        conns = self.connections // parts + (1 if index < self.connections % parts else 0)
        rate = self.rate * conns / self.connections if self.connections else 0.0
        count = -(-self.count * conns // self.connections) if self.connections else 0
        return LoadConfig(
            **{**asdict(self), "connections": conns, "rate": rate, "processes": 1, "count": count}
        )


class _Run:
    """State shared by the connections of one process."""

    __slots__ = (
        "acked",
        "clock",
        "errors",
        "hist",
        "outstanding_zero",
        "samples",
        "sending",
        "sent",
    )

    def __init__(self) -> None:
        self.hist = new_histogram()
        self.errors: dict[str, int] = {}
        self.samples: list[str] = []
        self.sending = False
        self.acked = 0
        self.sent = 0
        self.outstanding_zero: asyncio.Event = asyncio.Event()
        self.clock: Callable[[], float] = time.perf_counter


class LoadProtocol(asyncio.Protocol):
    """One client connection; see the module docstring for the send/measure discipline."""

    def __init__(
        self, run: _Run, pattern: Pattern, verify: VerifyMode, in_flight: int, rate: float
    ) -> None:
        self.run = run
        self.pattern = pattern
        self.verifier = make_verifier(pattern, verify)
        self.in_flight = in_flight
        self.rate = rate
        self.transport: asyncio.Transport | None = None
        self.sent = 0
        self.acked = 0
        self.stamps: deque[list[float]] = deque()  # [time, count] per write
        self.t0 = 0.0
        self.timer: asyncio.TimerHandle | None = None
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def start(self, t0: float) -> None:
        """Begin sending: fill the window (closed loop) or start the schedule (open loop)."""
        if self.rate > 0:
            self.t0 = t0
            self.tick()
        else:
            self._send(self.in_flight, self.run.clock())

    def _send(self, count: int, now: float) -> None:
        assert self.transport is not None
        self.stamps.append([now, count])
        self.transport.write(self.pattern.batch(self.sent, count))
        self.sent += count
        self.run.sent += count

    def tick(self) -> None:
        """Open loop: send what the schedule says is due, within the in-flight cap."""
        self.timer = None
        if not self.run.sending or self.closed or self.transport is None:
            return
        now = self.run.clock()
        due = int((now - self.t0) * self.rate) + 1
        room = self.in_flight - (self.sent - self.acked)
        count = min(due - self.sent, room)
        if count > 0:
            first = self.sent
            for i in range(count):
                self.stamps.append([self.t0 + (first + i) / self.rate, 1])
            self.transport.write(self.pattern.batch(first, count))
            self.sent += count
            self.run.sent += count
        if self.sent < due:
            return  # at the cap: data_received calls tick again
        delay = self.t0 + self.sent / self.rate - now
        self.timer = asyncio.get_running_loop().call_later(max(0.0, delay), self.tick)

    def data_received(self, data: bytes) -> None:
        try:
            done = self.verifier.feed(data)
        except VerifyError as exc:
            kind = "verify"
            if b"ERR " in data:
                at = data.index(b"ERR ")
                kind = "ERR " + data[at + 4 :].split(b" ", 1)[0].split(b"\n", 1)[0].decode(
                    errors="replace"
                )
            self._fail(kind, str(exc))
            return
        if not done:
            return
        now = self.run.clock()
        self.acked += done
        self.run.acked += done
        stamps = self.stamps
        hist = self.run.hist
        left = done
        while left and stamps:
            entry = stamps[0]
            take = left if left < entry[1] else int(entry[1])
            micros = int((now - entry[0]) * 1e6)
            hist.record_value(min(max(micros, 1), MAX_LATENCY_US), take)
            left -= take
            if take == entry[1]:
                stamps.popleft()
            else:
                entry[1] -= take
        if self.run.sending:
            if self.rate > 0:
                if self.timer is None:
                    self.tick()
            else:
                self._send(done, now)
        elif self.acked >= self.sent:
            self._maybe_all_done()

    def _maybe_all_done(self) -> None:
        if self.run.acked >= self.run.sent:
            self.run.outstanding_zero.set()

    def _fail(self, kind: str, detail: str) -> None:
        add_error(self.run.errors, self.run.samples, kind, detail)
        self.closed = True
        self.run.sent -= self.sent - self.acked  # do not wait for replies that will never come
        self.sent = self.acked
        if self.transport is not None:
            self.transport.abort()
        self._maybe_all_done()

    def eof_received(self) -> bool | None:
        if not self.closed:
            self._fail(
                "closed",
                f"server closed the connection with {self.sent - self.acked} messages unanswered",
            )
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        if self.timer is not None:
            self.timer.cancel()
        if not self.closed:
            self._fail("closed", f"connection lost: {exc!r}")

    def stop(self) -> None:
        """Close the connection quietly (after the run)."""
        self.closed = True
        if self.timer is not None:
            self.timer.cancel()
        if self.transport is not None:
            self.transport.close()


async def connect_all(
    cfg: LoadConfig,
    factory: Callable[[], asyncio.Protocol],
    errors: dict[str, int],
    samples: list[str],
) -> list[Any]:
    """Open ``cfg.connections`` connections (spread over ``cfg.ramp`` s); return the protocols.

    Failures are counted as ``connect`` errors; the run goes on with whoever connected.
    """
    loop = asyncio.get_running_loop()
    gate = asyncio.Semaphore(CONNECT_CONCURRENCY if cfg.ramp <= 0 else max(cfg.connections, 1))
    start = loop.time()

    async def one(index: int) -> Any:
        if cfg.ramp > 0:
            await asyncio.sleep(max(0.0, start + cfg.ramp * index / cfg.connections - loop.time()))
        async with gate:
            try:
                _, proto = await asyncio.wait_for(
                    loop.create_connection(factory, cfg.host, cfg.port), cfg.connect_timeout
                )
                return proto
            except (TimeoutError, OSError) as exc:
                add_error(errors, samples, "connect", repr(exc))
                return None

    protos = await asyncio.gather(*(one(i) for i in range(cfg.connections)))
    return [p for p in protos if p is not None]


async def run_load(
    cfg: LoadConfig,
    ready: Callable[[], Any] | None = None,
    progress: Callable[[float, int], None] | None = None,
) -> LoadResult:
    """Run one load test in this process on the running loop and return its result.

    ``ready`` (optional, may return an awaitable) is called after connecting and before the
    measured window: multi-process runs use it as a start barrier. ``progress(elapsed,
    acked)`` is called about four times a second during the window. Never raises for server
    misbehaviour; everything is reported in the result.
    """
    pattern = Pattern(cfg.framing, cfg.size, cfg.expect_prefix.encode(), max(256, cfg.in_flight))
    run = _Run()
    per_conn_rate = cfg.rate / cfg.connections if cfg.rate > 0 and cfg.connections else 0.0
    in_flight = max(1, cfg.in_flight)
    protos: list[LoadProtocol] = await connect_all(
        cfg,
        lambda: LoadProtocol(run, pattern, cfg.verify, in_flight, per_conn_rate),
        run.errors,
        run.samples,
    )
    if ready is not None:
        waited = ready()
        if asyncio.iscoroutine(waited) or isinstance(waited, asyncio.Future):
            await waited
    usage0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = run.clock()
    run.sending = True
    for i, proto in enumerate(protos):
        proto.start(t0 + (i / cfg.rate if cfg.rate > 0 else 0.0))
    end = t0 + cfg.duration
    while (now := run.clock()) < end:
        await asyncio.sleep(min(0.25, end - now))
        if progress is not None:
            progress(min(cfg.duration, run.clock() - t0), run.acked)
    run.sending = False
    acked_in_window = run.acked
    window = run.clock() - t0
    usage1 = resource.getrusage(resource.RUSAGE_SELF)
    if run.acked < run.sent:
        run.outstanding_zero.clear()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(run.outstanding_zero.wait(), cfg.drain_timeout)
    unanswered = sum(p.sent - p.acked for p in protos if not p.closed)
    if unanswered:
        run.errors["unanswered"] = unanswered
        run.samples.append(
            f"unanswered: {unanswered} messages had no reply {cfg.drain_timeout}s after the run"
        )
    for proto in protos:
        proto.stop()
    cpu = (usage1.ru_utime - usage0.ru_utime) + (usage1.ru_stime - usage0.ru_stime)
    result = LoadResult(
        connections=cfg.connections,
        connected=len(protos),
        duration=window,
        messages_sent=run.sent,
        messages_acked=acked_in_window,
        throughput=acked_in_window / window if window > 0 else 0.0,
        errors=run.errors,
        error_samples=run.samples,
        client_cpu=[round(100.0 * cpu / window, 1) if window > 0 else 0.0],
        config=asdict(cfg),
        histogram=run.hist.encode().decode() if run.hist.get_total_count() else "",
    )
    await asyncio.sleep(0)  # let transports close
    return result


def run_load_sync(
    cfg: LoadConfig, progress: Callable[[float, int], None] | None = None
) -> LoadResult:
    """Run ``cfg`` in this process on a fresh uvloop (asyncio if uvloop is missing); finished result."""
    try:
        import uvloop

        result = uvloop.run(run_load(cfg, progress=progress))
    except ImportError:
        result = asyncio.run(run_load(cfg, progress=progress))
    return finish(result)
