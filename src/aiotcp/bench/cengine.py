"""Run the compiled load engine (``native/loadgen.c``) and read its result into a LoadResult.

The engine is a separate process: it connects, reports ``connected N`` on stderr and waits
for a line on stdin, so several engines (``--processes``) and the caller's ``ready`` hook
(compare marks the server's CPU clock there) all start the measured window together. It
then prints ``progress`` lines and, at the end, one JSON object on stdout: counts, errors,
its own CPU seconds over the window (getrusage) and a log-linear latency histogram, which
becomes the same HDR histogram the Python engine fills.

``choose_engine`` decides between the engines: the compiled one whenever it builds and the
run needs nothing only the Python engine does (``--ramp``); otherwise the Python engine, with
a warning in the result that says why.

``run_c_connrate`` runs the connection-rate client (``native/connrate.c``) the same way and
reads its result into the same LoadResult, a message being one connect-send-reply-close
cycle (compare's ``connect<N>`` workloads).
"""

from __future__ import annotations

import json
import os
import selectors
import subprocess
import time
from collections.abc import Callable
from dataclasses import asdict
from typing import IO, Any

from aiotcp.bench.loadgen import LoadConfig
from aiotcp.bench.native import CompilerUnavailable, build
from aiotcp.bench.results import LoadResult, add_error, encode_buckets, finish, merge

ENGINES: tuple[str, ...] = ("auto", "c", "python")
#: Slack on top of the run's own timeouts before a silent engine process is killed.
HANG_GUARD = 60.0
#: Longest run assumed in --count mode (the engine itself stops when replies stall).
COUNT_MODE_LIMIT = 3600.0
#: Source addresses the connection-rate client spreads its loops over (127.0.0.1 ..
#: 127.0.0.N). With one, every connect searches one ephemeral port range crowded with the
#: client's own TIME_WAIT sockets: against the C server, 14k connections/s at 81 % of the
#: client's core with one address, 38k/s at 53 % with four (2 cores, 50 loops).
CONNECT_SOURCES = 8
#: A loopback cycle takes well under a millisecond; one still open after this many seconds
#: is a server that stopped answering (counted as a ``timeout`` error).
CYCLE_TIMEOUT = 3.0


def unsupported(cfg: LoadConfig) -> str:
    """Why the compiled engine cannot run ``cfg``, or "" when it can."""
    if cfg.ramp > 0:
        return "--ramp is implemented by the Python engine only"
    if cfg.framing == "varint":
        return "varint framing is spoken by the Python engine only"
    return ""


def choose_engine(requested: str, cfg: LoadConfig) -> tuple[str, str]:
    """Return (``"c"`` or ``"python"``, why the compiled engine was not used, or "").

    Raises CompilerUnavailable when ``requested`` is ``"c"`` (or the run needs the compiled
    engine, as ``count`` does) and it cannot be used.
    """
    if requested == "python":
        if cfg.count:
            raise CompilerUnavailable("--count needs the compiled engine")
        return "python", ""
    reason = unsupported(cfg)
    if not reason:
        try:
            build("loadgen")
            return "c", ""
        except CompilerUnavailable as exc:
            reason = str(exc)
    if requested == "c" or cfg.count:
        raise CompilerUnavailable(f"the compiled engine cannot run: {reason}")
    return "python", f"compiled engine not used ({reason}); the Python engine ran"


def engine_argv(binary: str, cfg: LoadConfig) -> list[str]:
    """The engine's command line for ``cfg`` (one process's share)."""
    return [
        binary, "--host", cfg.host, "--port", str(cfg.port),
        "--connections", str(cfg.connections), "--in-flight", str(max(1, cfg.in_flight)),
        "--size", str(cfg.size), "--duration", "0" if cfg.count else repr(cfg.duration),
        "--count", str(cfg.count), "--rate", repr(cfg.rate), "--framing", cfg.framing,
        "--verify", cfg.verify, "--prefix", cfg.expect_prefix,
        "--connect-timeout", repr(cfg.connect_timeout), "--drain-timeout", repr(cfg.drain_timeout),
        "--sync-start",
    ]  # fmt: skip


class _Engine:
    """One engine process, its stderr read line by line and its stdout collected."""

    def __init__(self, argv: list[str], cfg: LoadConfig) -> None:
        self.cfg = cfg
        self.proc = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        self.out = bytearray()
        self.err = bytearray()
        self.lines: list[str] = []
        self.ended: set[bool] = set()  # which pipes hit EOF (True: stderr)

    @property
    def open_pipes(self) -> int:
        """How many of stdout and stderr are still open."""
        return 2 - len(self.ended)

    @property
    def connected(self) -> bool:
        """True once the engine reported that its connect phase is over."""
        return any(line.startswith("connected") for line in self.lines)

    def go(self) -> None:
        """Start the measured window (the engine waits for a line on stdin)."""
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(b"go\n")
            self.proc.stdin.close()
        except OSError:
            pass  # it already exited; its result says why

    def take(self, stream: IO[bytes], is_err: bool) -> bool:
        """Read what ``stream`` has; return False at its end."""
        chunk = os.read(stream.fileno(), 65536)
        if not chunk:
            self.ended.add(is_err)
            return False
        if not is_err:
            self.out += chunk
            return True
        self.err += chunk
        *done, rest = self.err.split(b"\n")
        self.lines.extend(line.decode(errors="replace") for line in done)
        self.err = bytearray(rest)
        return True

    def result(self) -> LoadResult:
        """The engine's result, or a LoadResult holding a ``client`` error if it failed."""
        status = self.proc.wait()
        try:
            data: dict[str, Any] = json.loads(self.out)
        except ValueError:
            failed = LoadResult(connections=self.cfg.connections, engine="c")
            tail = " | ".join(self.lines[-3:] + [self.err.decode(errors="replace")]).strip(" |")
            add_error(failed.errors, failed.error_samples, "client",
                      f"load engine exited {status} without a result: {tail[-300:]}")  # fmt: skip
            return failed
        window = float(data["duration"])
        return LoadResult(
            connections=int(data["connections"]), connected=int(data["connected"]),
            duration=window, messages_sent=int(data["messages_sent"]),
            messages_acked=int(data["messages_acked"]),
            throughput=data["messages_acked"] / window if window > 0 else 0.0,
            errors={k: int(v) for k, v in data["errors"].items()},
            error_samples=list(data["error_samples"]),
            client_cpu=[round(100.0 * data["cpu_seconds"] / window, 1) if window > 0 else 0.0],
            config=asdict(self.cfg), histogram=encode_buckets(data["latency_ns"]), engine="c",
        )  # fmt: skip


def _pump(engines: list[_Engine], until: Callable[[], bool], deadline: float) -> None:
    """Read every engine's pipes until ``until()`` holds or every pipe closed or time is up."""
    sel = selectors.DefaultSelector()
    for eng in engines:
        for is_err, pipe in ((False, eng.proc.stdout), (True, eng.proc.stderr)):
            if pipe is not None and is_err not in eng.ended:
                sel.register(pipe, selectors.EVENT_READ, (eng, is_err))
    try:
        while not until() and sel.get_map() and time.monotonic() < deadline:
            for key, _ in sel.select(timeout=0.25):
                eng, is_err = key.data
                stream: IO[bytes] = key.fileobj  # type: ignore[assignment]
                if not eng.take(stream, is_err):
                    sel.unregister(stream)
    finally:
        sel.close()


def run_c_load(
    cfg: LoadConfig,
    ready: Callable[[], object] | None = None,
    progress: Callable[[float, int], None] | None = None,
) -> LoadResult:
    """Run ``cfg`` with the compiled engine over ``cfg.processes`` processes; finished result.

    ``ready()`` is called once every process has connected, just before the measured window.
    ``progress(elapsed, acked)`` is called about four times a second (``acked`` is -1 when
    several processes run). Raises CompilerUnavailable if the engine cannot be built; never
    raises for server misbehaviour (it is in the result).
    """
    binary = build("loadgen")
    parts = max(1, min(cfg.processes, cfg.connections))
    shares = [cfg.share(i, parts) if parts > 1 else cfg for i in range(parts)]
    engines = [_Engine(engine_argv(binary, share), share) for share in shares]
    try:
        connect_guard = cfg.connect_timeout * (cfg.connections / 256 + 1) + HANG_GUARD
        _pump(engines, lambda: all(e.connected or not e.open_pipes for e in engines),
              time.monotonic() + connect_guard)  # fmt: skip
        if ready is not None:
            ready()
        for eng in engines:
            eng.go()
        seen = [0]

        def report() -> bool:
            lines = engines[0].lines
            for line in lines[seen[0] :]:
                if line.startswith("progress") and progress is not None:
                    _, elapsed, acked = line.split()
                    progress(float(elapsed), int(acked) if parts == 1 else -1)
            seen[0] = len(lines)
            return False

        run_time = cfg.duration if not cfg.count else COUNT_MODE_LIMIT
        _pump(engines, report, time.monotonic() + run_time + cfg.drain_timeout + HANG_GUARD)
    finally:
        for eng in engines:
            if eng.open_pipes:  # still talking after its guard ran out: hung
                eng.proc.kill()
    results = [eng.result() for eng in engines]
    if parts == 1:
        return finish(results[0])
    return merge(results, cfg.connections, asdict(cfg))


def connrate_argv(binary: str, cfg: LoadConfig, sources: int = CONNECT_SOURCES) -> list[str]:
    """The connection-rate client's command line: ``cfg.connections`` loops, ``cfg.size``-byte
    lines, ``cfg.duration`` seconds, ``cfg.expect_prefix``, ``sources`` source addresses."""
    return [
        binary, "--host", cfg.host, "--port", str(cfg.port), "--loops", str(cfg.connections),
        "--size", str(cfg.size), "--duration", repr(cfg.duration), "--sources", str(sources),
        "--prefix", cfg.expect_prefix, "--timeout", repr(CYCLE_TIMEOUT),
        "--drain-timeout", repr(cfg.drain_timeout), "--sync-start",
    ]  # fmt: skip


def run_c_connrate(
    cfg: LoadConfig, ready: Callable[[], object] | None = None, sources: int = CONNECT_SOURCES
) -> LoadResult:
    """Run the connection-rate client (``native/connrate.c``) against ``cfg.host:cfg.port``.

    Each of ``cfg.connections`` loops connects, sends one ``cfg.size``-byte line, reads the
    whole reply (verified byte for byte), closes, and starts again, for ``cfg.duration``
    seconds. In the result a message is one such cycle: ``messages_acked`` counts the cycles
    completed in the window, ``throughput`` is new connections per second and the latencies
    are per cycle (socket() to close()). ``ready()`` is called just before the window.
    Raises CompilerUnavailable if the client cannot be built; never raises for server
    misbehaviour (it is in the result's errors).
    """
    eng = _Engine(connrate_argv(build("connrate"), cfg, sources), cfg)
    try:
        _pump([eng], lambda: eng.connected or not eng.open_pipes, time.monotonic() + HANG_GUARD)
        if ready is not None:
            ready()
        eng.go()
        run_time = cfg.duration + cfg.drain_timeout
        _pump([eng], lambda: False, time.monotonic() + run_time + HANG_GUARD)
    finally:
        if eng.open_pipes:  # still talking after its guard ran out: hung
            eng.proc.kill()
    return finish(eng.result())
