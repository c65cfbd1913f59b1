"""Worker supervisor: N server processes sharing one port through SO_REUSEPORT.

``aiotcp serve --workers N`` calls :func:`supervise`. The supervisor:

1. binds (without listening) a SO_REUSEPORT socket on ``host:port`` to claim the port;
   with ``--port 0`` this picks the one port every worker then binds. It holds the
   socket until exit, so the port stays claimed while a worker restarts;
2. starts N processes ``python -c <boot> <config-json>``, each running the ordinary
   ``aiotcp.runner.run`` with ``reuse_port=True``: each has its own listener and the
   kernel spreads new connections over them;
3. waits until every worker is serving (its first stats snapshot appears), then logs
   ``aiotcp listening on HOST:PORT`` and the worker pids;
4. restarts a worker that dies, after a backoff that doubles per quick failure and
   resets once a worker has stayed up ``STABLE_AFTER`` seconds;
5. forwards SIGTERM/SIGINT to every worker (first: graceful drain; a second signal is
   forwarded again: forced), kills what is still alive ``KILL_GRACE`` seconds after the
   drain deadline, and returns 0 once all workers have exited cleanly;
6. serves ``/metrics`` ``/healthz`` ``/readyz`` for all workers if ``metrics_port``.

Limits (max_connections, per-IP caps, threads) apply per worker.
Workers run in their own process group, so a terminal's Ctrl-C reaches only the
supervisor (which forwards it once), and they ask the kernel for SIGTERM if the
supervisor dies (Linux).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
from collections.abc import Iterator
from typing import Any

from aiotcp.config import Config
from aiotcp.listeners import bind_sockets
from aiotcp.observe.logs import ENV_WORKER_INDEX
from aiotcp.observe.snapshots import ENV_DIR, ENV_SERIAL, ENV_TIMED, SnapshotAggregator

log = logging.getLogger("aiotcp.workers")

# First restart after 0.1 s (systemd's default RestartSec), doubling per quick failure up
# to 10 s, so a crash loop neither spins the CPU nor leaves a slot dead for long.
RESTART_BACKOFF_INITIAL = 0.1
RESTART_BACKOFF_MAX = 10.0
# A worker that ran this long before dying was healthy: its next restart is immediate-ish.
STABLE_AFTER = 10.0
# A worker that has not started serving this long after spawn has failed to boot.
BOOT_TIMEOUT = 30.0
# After the drain deadline (shutdown_timeout), workers get this long to exit, then SIGKILL.
KILL_GRACE = 5.0
READY_POLL = 0.02

BOOT = (
    "import sys; from aiotcp.workers import worker_main; "
    "raise SystemExit(worker_main(sys.argv[1:]))"
)


def reserve_port(host: str, port: int) -> tuple[int, list[socket.socket]]:
    """Bind unlistened SO_REUSEPORT sockets on every address of ``host`` at one port.

    With ``port == 0`` the first address picks the port and the others follow. Returns
    (port, sockets). Raises OSError if the address cannot be bound.
    """
    socks = bind_sockets(host, port, reuse_port=True, listen=False)
    return socks[0].getsockname()[1], socks


def restart_backoff(failures: int, uptime: float) -> tuple[int, float]:
    """(quick failures so far, seconds to wait) after a worker died after ``uptime`` s.

    A worker that stayed up ``STABLE_AFTER`` seconds resets the count, so one crash of a
    healthy worker restarts it after ``RESTART_BACKOFF_INITIAL``.
    """
    failures = 1 if uptime >= STABLE_AFTER else failures + 1
    return failures, min(RESTART_BACKOFF_MAX, RESTART_BACKOFF_INITIAL * 2 ** (failures - 1))


def worker_config(config: Config, port: int) -> Config:
    """The Config a worker runs: the shared port, reuse_port, no metrics of its own."""
    return config.replace(port=port, workers="1", reuse_port=True, metrics_port=0)


def worker_environment(
    config: Config, env: dict[str, str], stats_dir: str, serial: int, index: int
) -> dict[str, str]:
    """``env`` with what a worker needs: where to write its stats, its serial and index,
    and whether to time ack latency (only when the supervisor exports it)."""
    env[ENV_DIR] = stats_dir
    env[ENV_SERIAL] = str(serial)
    env[ENV_WORKER_INDEX] = str(index)
    if config.metrics_port:
        env[ENV_TIMED] = "1"
    else:
        env.pop(ENV_TIMED, None)
    return env


def worker_main(argv: list[str]) -> int:
    """Entry point of a worker process: ``argv[0]`` is the Config as JSON."""
    _die_with_parent()
    config = Config(**json.loads(argv[0])).validate()
    from aiotcp.runner import run

    return run(config)


def _die_with_parent() -> None:
    """Ask Linux to SIGTERM this process when the supervisor dies (no-op elsewhere)."""
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, int(signal.SIGTERM), 0, 0, 0)
    except (OSError, AttributeError):
        return
    if os.getppid() == 1:  # the supervisor died before prctl took effect
        os.kill(os.getpid(), signal.SIGTERM)


@dataclasses.dataclass
class Slot:
    """One worker position; its process is replaced when it dies."""

    index: int
    proc: asyncio.subprocess.Process | None = None
    serial: int = -1
    started_at: float = 0.0
    ready: bool = False
    failures: int = 0
    restarts: int = 0


class Supervisor:
    """Runs and restarts the workers; see the module docstring for the contract."""

    def __init__(self, config: Config, workers: int) -> None:
        self.config = config
        self.slots = [Slot(i) for i in range(workers)]
        self.port = config.port
        self.stopping = False
        self.signals = 0
        self.exit_ok = True
        self.booted = False
        self._serials = 0
        self._stats_dir = ""
        self._aggregator: SnapshotAggregator | None = None
        self._wake = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()

    # ---- entry -------------------------------------------------------------------

    async def run(self) -> int:
        """Serve until signalled; returns the process exit code."""
        try:
            self.port, reserved = reserve_port(self.config.host, self.config.port)
        except OSError as e:
            log.error("cannot listen on %s:%d: %s", self.config.host, self.config.port,
                      e.strerror or e)
            return 1
        self._stats_dir = tempfile.mkdtemp(prefix="aiotcp-workers-")
        self._aggregator = SnapshotAggregator(self._stats_dir)
        loop = asyncio.get_running_loop()
        metrics = None
        if self.config.metrics_port:
            try:  # before any worker exists, so a taken port fails fast and clean
                metrics = await self._start_metrics()
            except OSError as e:
                log.error("cannot serve metrics on %s:%d: %s", self.config.metrics_host,
                          self.config.metrics_port, e.strerror or e)
                for sock in reserved:
                    sock.close()
                shutil.rmtree(self._stats_dir, ignore_errors=True)
                return 1
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self.on_signal, sig)
        loop.add_signal_handler(signal.SIGHUP, self.on_reload)
        try:
            for slot in self.slots:
                await self._spawn(slot)
            booted = await self._boot()
            if self.stopping:  # a signal during boot: the workers were told to stop
                await self._wait_all_exited()
                return 0 if self.exit_ok else 1
            if not booted:
                return 1
            self.booted = True
            for sock in reserved:
                host, port = sock.getsockname()[:2]
                log.info("aiotcp listening on %s:%d", host, port)
            log.info("%d workers serving: pids %s", len(self.slots),
                     " ".join(str(s.proc.pid) for s in self.slots if s.proc))
            while self._live() or not self.stopping:
                self._wake.clear()
                await self._wake.wait()
            return 0 if self.exit_ok else 1
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
                loop.remove_signal_handler(sig)
            await self._kill_all()
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            if metrics is not None:
                await metrics.aclose()
            for sock in reserved:
                sock.close()
            shutil.rmtree(self._stats_dir, ignore_errors=True)

    async def _boot(self) -> bool:
        """Wait until every worker serves; False if one exits first or a signal came."""
        assert self._aggregator is not None
        deadline = time.monotonic() + BOOT_TIMEOUT
        while not all(s.ready for s in self.slots):
            if self.stopping:
                return False
            for slot in self.slots:
                if slot.proc is None or slot.proc.returncode is not None:
                    log.error("worker %d failed to start (exit code %s)", slot.index,
                              None if slot.proc is None else slot.proc.returncode)
                    return False
                slot.ready = slot.ready or self._aggregator.is_ready(slot.serial)
            if time.monotonic() > deadline:
                log.error("workers did not start serving within %.0fs", BOOT_TIMEOUT)
                return False
            await asyncio.sleep(READY_POLL)
        return True

    # ---- processes ---------------------------------------------------------------

    async def _spawn(self, slot: Slot) -> None:
        self._serials += 1
        slot.serial = self._serials
        slot.ready = False
        env = worker_environment(
            self.config, dict(os.environ), self._stats_dir, slot.serial, slot.index
        )
        # Make the child import this very aiotcp, installed or not (src/ layout, tests).
        package_root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (package_root, env.get("PYTHONPATH", "")) if p
        )
        payload = json.dumps(dataclasses.asdict(worker_config(self.config, self.port)))
        slot.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", BOOT, payload, env=env, process_group=0
        )
        slot.started_at = time.monotonic()
        log.debug("worker %d started (pid %d)", slot.index, slot.proc.pid)
        self._track(self._watch(slot, slot.proc, slot.serial))

    def _track(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _watch(self, slot: Slot, proc: asyncio.subprocess.Process, serial: int) -> None:
        code = await proc.wait()
        assert self._aggregator is not None
        self._aggregator.retire(serial)
        self._wake.set()
        if self.stopping:
            if code not in (0, -signal.SIGTERM, -signal.SIGINT):
                self.exit_ok = False
                log.warning("worker %d (pid %d) exited with code %d during shutdown",
                            slot.index, proc.pid, code)
            return
        if not self.booted:
            # A worker that dies during the first boot is a configuration error:
            # _boot() reports it and the supervisor exits instead of crash-looping.
            return
        uptime = time.monotonic() - slot.started_at
        slot.failures, delay = restart_backoff(slot.failures, uptime)
        log.warning("worker %d (pid %d) exited with code %d after %.1fs; restarting in %.1fs",
                    slot.index, proc.pid, code, uptime, delay)
        await asyncio.sleep(delay)
        if self.stopping:
            return
        slot.restarts += 1
        await self._spawn(slot)
        self._track(self._await_ready(slot, slot.serial))

    async def _await_ready(self, slot: Slot, serial: int) -> None:
        assert self._aggregator is not None
        while slot.serial == serial and slot.proc is not None and slot.proc.returncode is None:
            if self._aggregator.is_ready(serial):
                slot.ready = True
                log.info("worker %d restarted (pid %d)", slot.index, slot.proc.pid)
                return
            await asyncio.sleep(READY_POLL)

    def _live(self) -> list[asyncio.subprocess.Process]:
        return [s.proc for s in self.slots if s.proc is not None and s.proc.returncode is None]

    # ---- shutdown ------------------------------------------------------------------

    def on_signal(self, sig: int) -> None:
        """Forward ``sig`` to every worker; the first starts the drain deadline."""
        self.signals += 1
        first = not self.stopping
        self.stopping = True
        name = signal.Signals(sig).name
        if first:
            log.info("%s: draining %d worker(s)", name, len(self._live()))
            self._track(self._deadline())
        else:
            log.warning("%s again: forcing %d worker(s) to stop", name, len(self._live()))
            # A second signal of the same kind can merge with the first while the worker
            # has not handled it yet (POSIX does not queue them): force with the other one.
            sig = signal.SIGINT if sig == signal.SIGTERM else signal.SIGTERM
        for proc in self._live():
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(sig)
        self._wake.set()

    def on_reload(self) -> None:
        """SIGHUP: every worker reloads its TLS certificate and key."""
        log.info("SIGHUP: reloading %d worker(s)", len(self._live()))
        for proc in self._live():
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGHUP)

    async def _deadline(self) -> None:
        await asyncio.sleep(self.config.shutdown_timeout + KILL_GRACE)
        live = self._live()
        if live:
            log.error("%d worker(s) still running after the drain deadline: killing",
                      len(live))
            self.exit_ok = False
            for proc in live:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()

    async def _wait_all_exited(self) -> None:
        while self._live():
            self._wake.clear()
            await self._wake.wait()

    async def _kill_all(self) -> None:
        """Last resort on the way out (boot failure, cancellation): kill and reap."""
        live = self._live()
        for proc in live:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
        for proc in live:
            await proc.wait()

    # ---- metrics -----------------------------------------------------------------

    def ready(self) -> bool:
        """What ``/readyz`` says: not shutting down and at least one worker serving."""
        return not self.stopping and any(s.ready and s.proc is not None
                                         and s.proc.returncode is None for s in self.slots)

    def snapshot(self) -> dict[str, Any]:
        assert self._aggregator is not None
        return self._aggregator.total(s.serial for s in self.slots if s.proc is not None
                                      and s.proc.returncode is None)

    def worker_families(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        yield GaugeMetricFamily("aiotcp_workers", "Worker processes serving now.",
                                value=sum(1 for s in self.slots if s.ready and s.proc
                                          and s.proc.returncode is None))
        yield CounterMetricFamily("aiotcp_worker_restarts", "Workers restarted after dying.",
                                  value=sum(s.restarts for s in self.slots))

    async def _start_metrics(self) -> Any:
        from aiotcp.observe.endpoints import serve_endpoints

        return await serve_endpoints(self.config.metrics_host, self.config.metrics_port,
                                     self.snapshot, self.ready, self.worker_families)


def supervise(config: Config) -> int:
    """Run ``config.worker_count()`` workers until SIGTERM/SIGINT; returns the exit code.

    0 after every worker drained and exited cleanly; 1 if the port could not be bound,
    a worker failed to boot, or a worker had to be killed at the deadline.
    """
    from aiotcp.observe.logs import configure_logging

    configure_logging(config.log_level, config.log_format)
    with asyncio.Runner() as runner:
        return runner.run(Supervisor(config, config.worker_count()).run())
