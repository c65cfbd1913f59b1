"""``aiotcp bench --mode hold``: hold N connections from several processes, ping them in rounds.

The article's claim is connections held, so this measures holding: ``procs`` spawned client
processes (:mod:`aiotcp.bench.hold`) open their shares at once, then each round every
process closes and reopens a ``churn`` fraction of its connections and pings every
connection once, paced over ``round_seconds``. Between phases the parent reads the
server's resident memory and open fds from /proc, summed over ``--server-pid`` and its
descendants (a supervisor and all its workers), so memory per connection is
``(RSS held - RSS before) / connections held``. A run is ok when every connection was
opened and still open once the server settled, every ping of every round was answered in time and every churned connection
reopened.
"""

from __future__ import annotations

import dataclasses
import json
import multiprocessing
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from aiotcp.bench.hold import HoldConfig, child_main
from aiotcp.bench.results import latency_summary_ms, new_histogram
from aiotcp.bench.serverproc import descendants, open_fds, rss_kib
from aiotcp.bench.stamp import Recorder, stamp_line

#: Seconds a client process may take to start and answer a command, beyond what the
#: command itself may take (connect timeouts, a round and its ping timeout).
CHILD_GRACE = 60.0
#: After connecting, how long the server may take to accept what was connected before it
#: is measured anyway (in all, and without a new fd).
SETTLE_MAX = 30.0
SETTLE_QUIET = 2.0


@dataclass
class ServerSample:
    """The server's processes, resident memory (KiB) and open fds at one moment, and
    each process's (a supervisor's workers: how evenly they accepted; a process's RSS
    stays near the most connections it held, as freed memory is kept for reuse)."""

    processes: int = 0
    rss_kib: int = 0
    fds: int = 0
    fds_each: list[int] = field(default_factory=list)
    rss_each: list[int] = field(default_factory=list)

    @classmethod
    def read(cls, pid: int) -> ServerSample | None:
        """The sample of ``pid`` and its descendants; None for pid 0 (not given)."""
        if not pid:
            return None
        pids = descendants(pid)
        fds = [open_fds(p) for p in pids]
        rss = [rss_kib(p) for p in pids]
        return cls(len(pids), sum(rss), sum(fds), fds, rss)


@dataclass
class HoldResult:
    """Outcome of a hold run; ``rounds`` holds one dict per ping round."""

    connections: int
    connected: int = 0
    held: int = 0
    connect_seconds: float = 0.0
    connect_rate: float = 0.0
    connect_errors: dict[str, int] = field(default_factory=dict)
    rounds: list[dict[str, Any]] = field(default_factory=list)
    server_before: ServerSample | None = None
    server_held: ServerSample | None = None
    server_after_rounds: ServerSample | None = None
    kib_per_conn: float | None = None
    error_samples: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)
    stamp: dict[str, Any] = field(default_factory=dict)  # aiotcp.bench.stamp: where from

    @property
    def failures(self) -> int:
        """Connections not opened, pings not answered, churned ones not reopened."""
        return sum(self.connect_errors.values()) + sum(int(r["failures"]) for r in self.rounds)

    @property
    def ok(self) -> bool:
        """Every connection held and nothing failed."""
        return self.held == self.connected == self.connections and self.failures == 0

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["ok"], d["failures"] = self.ok, self.failures
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False)


def _merge_errors(into: dict[str, int], errors: dict[str, int]) -> None:
    for kind, n in errors.items():
        into[kind] = into.get(kind, 0) + n


class _Clients:
    """The client processes and their pipes."""

    def __init__(self, cfg: HoldConfig) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.pipes = []
        self.procs = []
        for i in range(cfg.procs):
            ours, theirs = ctx.Pipe()
            proc = ctx.Process(target=child_main, args=(asdict(cfg), i, theirs), daemon=True)
            proc.start()
            self.pipes.append(ours)
            self.procs.append(proc)

    def ask(self, command: Any, timeout: float) -> list[dict[str, Any]]:
        """Send ``command`` to every process; their answers (a dict with ``failed`` for
        one that died or did not answer in ``timeout`` s)."""
        for pipe in self.pipes:
            pipe.send(command)
        deadline = time.monotonic() + timeout
        out = []
        for i, pipe in enumerate(self.pipes):
            if pipe.poll(max(0.0, deadline - time.monotonic())):
                try:
                    out.append(pipe.recv())
                    continue
                except EOFError:
                    pass
            out.append({"failed": f"client process {i} gave no answer to {command!r}"})
        return out

    def close(self) -> None:
        try:
            self.ask("close", CHILD_GRACE)
        except (BrokenPipeError, OSError):
            pass
        for proc in self.procs:
            proc.join(timeout=5)
            if proc.is_alive():
                proc.kill()


def _failed(answers: list[dict[str, Any]], result: HoldResult) -> list[dict[str, Any]]:
    """The answers that are not failures; each failure is a warning of the result."""
    for a in answers:
        if "failed" in a:
            result.warnings.append(a["failed"])
    return [a for a in answers if "failed" not in a]


def run_hold(cfg: HoldConfig) -> HoldResult:
    """Run ``cfg`` (see the module docstring); the finished result."""
    recorder = Recorder("aiotcp bench --mode hold")
    result = HoldResult(connections=cfg.connections, config=asdict(cfg))
    result.server_before = ServerSample.read(cfg.server_pid)
    clients = _Clients(cfg)
    try:
        _failed(clients.ask("ready", CHILD_GRACE), result)  # started and imported
        t0 = time.perf_counter()
        answers = _failed(clients.ask("connect", cfg.connect_timeout * 4 + CHILD_GRACE), result)
        result.connect_seconds = round(time.perf_counter() - t0, 3)
        for a in answers:
            result.connected += a["held"]
            _merge_errors(result.connect_errors, a["errors"])
            result.error_samples.extend(a["samples"][: max(0, 5 - len(result.error_samples))])
        if result.connect_seconds > 0:
            result.connect_rate = round(result.connected / result.connect_seconds, 1)
        result.server_held = _settled(cfg.server_pid, result.server_before, result.connected)
        # A server may close what it accepted (a full one answering ERR busy, or libuv's
        # EMFILE handling): held is what is still open once the server has settled.
        result.held = sum(a["held"] for a in _failed(clients.ask("held", CHILD_GRACE), result))
        if result.server_before and result.server_held and result.held:
            grown = result.server_held.rss_kib - result.server_before.rss_kib
            result.kib_per_conn = round(grown / max(1, result.held), 3)
        for number in range(1, cfg.rounds + 1):
            result.rounds.append(_round(clients, cfg, number, result))
        result.server_after_rounds = ServerSample.read(cfg.server_pid) if cfg.rounds else None
    finally:
        clients.close()
    if not cfg.server_pid:
        result.warnings.append("no --server-pid: the server's memory and fds were not read")
    result.stamp = recorder.stamp()
    return result


def _settled(pid: int, before: ServerSample | None, connected: int) -> ServerSample | None:
    """The server once it has accepted what the clients connected (a connect completes
    before the server's accept): its fds grew by ``connected``, or stopped growing for
    SETTLE_QUIET s, or SETTLE_MAX s passed."""
    sample = ServerSample.read(pid)
    if sample is None or before is None:
        return sample
    deadline = time.monotonic() + SETTLE_MAX
    quiet_since, fds = time.monotonic(), sample.fds
    while sample.fds - before.fds < connected and time.monotonic() < deadline:
        time.sleep(0.1)
        sample = ServerSample.read(pid) or sample
        if sample.fds != fds:
            quiet_since, fds = time.monotonic(), sample.fds
        elif time.monotonic() - quiet_since > SETTLE_QUIET:
            break
    return sample


def _round(clients: _Clients, cfg: HoldConfig, number: int, result: HoldResult) -> dict[str, Any]:
    timeout = cfg.round_seconds + cfg.ping_timeout + cfg.connect_timeout * 2 + CHILD_GRACE
    t0 = time.perf_counter()
    answers = _failed(clients.ask(("round", number), timeout), result)
    seconds = time.perf_counter() - t0
    hist = new_histogram()
    errors: dict[str, int] = {}
    churn_errors: dict[str, int] = {}
    pings = answered = held = churned = 0
    for a in answers:
        pings += a["pings"]
        answered += a["answered"]
        held += a["held"]
        churned += a["churn"]["closed"]
        _merge_errors(errors, a["errors"])
        _merge_errors(churn_errors, a["churn"]["errors"])
        result.error_samples.extend(a["samples"][: max(0, 5 - len(result.error_samples))])
        if a["histogram"]:
            hist.decode_and_add(a["histogram"])
    lat = latency_summary_ms(hist)
    server = ServerSample.read(cfg.server_pid)
    lost = cfg.connections - sum(a["pings"] for a in answers) if len(answers) < cfg.procs else 0
    return {
        "round": number, "seconds": round(seconds, 2), "held": held, "pings": pings,
        "answered": answered, "failures": sum(errors.values()) + sum(churn_errors.values()) + lost,
        "errors": errors, "churned": churned, "reconnect_errors": churn_errors,
        "latency_ms": {k: lat[k] for k in ("p50", "p99", "max")},
        "server": asdict(server) if server else None,
    }  # fmt: skip


def format_hold(result: HoldResult) -> str:
    """Human-readable multi-line report of a hold run."""
    c = result.config
    lines = [
        (f"aiotcp bench --mode hold: {result.held:,}/{result.connections:,} connections "
         f"held ({result.connected:,} connected) from {c['procs']} processes over "
         f"{c['sources']} source addresses from {c['source_base']} to {c['host']}:{c['port']}"),
        (f"  connect     {result.connect_seconds:.2f} s, {result.connect_rate:,.0f} connections/s "
         f"({c['in_progress']} in progress per process)"),
    ]  # fmt: skip
    if result.connect_errors:
        lines.append("  CONNECT FAILURES  " + ", ".join(
            f"{k}: {v}" for k, v in sorted(result.connect_errors.items())))  # fmt: skip
    before, held = result.server_before, result.server_held
    if before and held:
        lines.append(
            f"  server      {held.processes} processes, RSS {before.rss_kib / 1024:,.1f} MiB "
            f"before, {held.rss_kib / 1024:,.1f} MiB held: {result.kib_per_conn} KiB per "
            f"connection; {held.fds:,} fds (before {before.fds:,}); fds per process "
            + " ".join(f"{n:,}" for n in held.fds_each)
        )
    for r in result.rounds:
        lat = r["latency_ms"]
        srv = r["server"]
        where = f"; server RSS {srv['rss_kib'] / 1024:,.1f} MiB, {srv['fds']:,} fds" if srv else ""
        churn = f", {r['churned']:,} churned" if r["churned"] else ""
        lines.append(
            f"  round {r['round']:<4}  {r['answered']:,}/{r['pings']:,} answered in "
            f"{r['seconds']:.1f} s{churn}, p50 {lat['p50']:.2f} ms p99 {lat['p99']:.2f} ms "
            f"max {lat['max']:.2f} ms, {r['failures']} failures{where}"
        )
        for kind, n in sorted({**r["errors"], **r["reconnect_errors"]}.items()):
            lines.append(f"    {kind}: {n}")
    if result.failures:
        lines.append(f"  FAILURES    {result.failures:,}")
        lines.extend(f"    {s}" for s in result.error_samples)
    else:
        lines.append("  failures    none (every connection opened, every ping answered)")
    lines.extend(f"  WARNING: {w}" for w in result.warnings)
    if result.stamp:
        lines.append(stamp_line(result.stamp))
    return "\n".join(lines)
