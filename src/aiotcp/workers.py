"""Worker supervisor: N server processes sharing the supervisor's listeners; rolling restart.

``aiotcp serve --workers N`` (and ``--reload``, with one worker) runs a :class:`Supervisor`:

1. it opens every listener itself (:func:`aiotcp.listeners.open_listeners`: ``--bind``,
   ``--uds``, ``--fd``, systemd's, or ``--host/--port``), and keeps them until it exits;
2. it starts a *generation* of N workers (``python -c BOOT``, the Config on a pipe, see
   :mod:`aiotcp.workerprocess`). Each inherits the listening sockets and runs the ordinary
   :func:`aiotcp.runner.run` on them; every worker accepts from the same kernel queue;
3. once every worker is serving (its first stats snapshot appears: its lifespan is up and
   it is listening) it logs ``aiotcp listening on ...`` and the worker pids;
4. it restarts a worker that dies, after a backoff that doubles per quick failure and
   resets once a worker has stayed up ``STABLE_AFTER`` seconds;
5. SIGHUP rolls the workers: the config file is read again and a new generation starts
   (re-importing the app, re-reading the certificates); once every new worker is serving,
   the old generation gets SIGTERM and drains by the usual shutdown rules. If the new
   generation fails (a config, import or lifespan error, or not serving within
   ``BOOT_TIMEOUT``), the old one keeps serving and one line says why. A SIGHUP during a
   roll starts one more roll after it. The listeners (and the metrics address) stay those
   the supervisor opened: changing them needs a full restart, and a roll says so;
6. SIGTERM/SIGINT are forwarded to every worker (first: graceful drain; a second signal
   is forwarded again: forced); what is still alive ``KILL_GRACE`` seconds after its drain
   deadline is killed; it returns 0 once all workers have exited cleanly;
7. ``/metrics`` ``/healthz`` ``/readyz`` for all workers if ``metrics_port``, with the
   generation serving as the ``aiotcp_generation`` gauge; ``/readyz`` is 200 only while
   every worker of that generation is serving and its app's readiness checks hold.

Why the supervisor owns the listeners (as gunicorn's arbiter and nginx's master do)
rather than each worker binding its own SO_REUSEPORT socket: a SO_REUSEPORT listener has
an accept queue of its own, and closing it resets every connection still queued there.
Linux can move those to a sibling listener (``net.ipv4.tcp_migrate_req``, 5.14+), but
that sysctl is off by default (0 on the machines this is tested on), is set per network
namespace with CAP_NET_ADMIN, and a deploy cannot depend on it. With one shared socket
per address there is one queue that outlives every worker: a draining worker closes only
its own descriptor and stops accepting; what waits in the queue is taken by the workers
still accepting, and while no worker accepts (between the first spawn and the first
ready worker) connections wait in the backlog rather than being refused.

Limits (max_connections, per-IP caps, threads) apply per worker. A worker at its cap (or
its fd limit) stops accepting from the shared queue until it has room again, so the
workers with room take what waits there (:mod:`aiotcp.accepting`).
Workers run in their own process group, so a terminal's Ctrl-C reaches only the
supervisor (which forwards it once), and they ask the kernel for SIGTERM if the
supervisor dies (Linux).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

from aiotcp.config import Config, ConfigError
from aiotcp.listeners import Listener, ListenerError, close_listeners, open_listeners
from aiotcp.observe.snapshots import SnapshotAggregator
from aiotcp.workerprocess import (
    FAILED,
    RETIRING,
    SERVING,
    Generation,
    Worker,
    other_stop_signal,
    restart_backoff,
    send_config,
    start_process,
    worker_config,
    worker_environment,
)

log = logging.getLogger("aiotcp.workers")

# A worker that has not started serving this long after spawn has failed to boot.
BOOT_TIMEOUT = 30.0
# After the drain deadline (shutdown_timeout), workers get this long to exit, then SIGKILL.
KILL_GRACE = 5.0

READY_POLL = 0.02

# What a roll keeps from the running supervisor: the listeners are open already and the
# metrics endpoint is the supervisor's own; a new value needs a full restart.
FIXED_SETTINGS = ("host", "port", "bind", "uds", "uds_mode", "fd", "reuse_port",
                  "metrics_host", "metrics_port", "reload")  # fmt: skip

# A source of file changes for --reload: called with the callback to call on each change.
Watcher = Callable[[Callable[[str], None]], Awaitable[None]]


class Supervisor:
    """Runs, restarts and rolls the workers; see the module docstring for the contract.

    ``rebuild`` makes the Config again for a roll (from the same flags, environment and
    config file); ``watcher`` (``--reload``) calls back on each source change, which rolls
    as SIGHUP does, and a failed first generation then waits for the next change.
    """

    def __init__(
        self,
        config: Config,
        rebuild: Callable[[], Config] | None = None,
        watcher: Watcher | None = None,
    ) -> None:
        self.config = config
        self.rebuild = rebuild
        self.watcher = watcher
        self.listeners: list[Listener] = []
        self.current: Generation | None = None
        self.workers: dict[int, Worker] = {}  # live workers of every generation, by serial
        self.stopping = False
        self.signals = 0
        self.exit_ok = True
        self.restarts = 0
        self._generations = 0
        self._serials = 0
        self._stats_dir = ""
        self._aggregator: SnapshotAggregator | None = None
        self._wake = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._rolling: asyncio.Task[None] | None = None
        self._roll_again = False

    @property
    def fds(self) -> list[int]:
        return [listener.sock.fileno() for listener in self.listeners]

    # ---- entry -------------------------------------------------------------------

    async def run(self) -> int:
        """Serve until signalled; returns the process exit code."""
        try:
            self.listeners = open_listeners(self.config)
        except ListenerError as e:
            log.error("%s", e)
            return 1
        self._stats_dir = tempfile.mkdtemp(prefix="aiotcp-workers-")
        self._aggregator = SnapshotAggregator(self._stats_dir)
        loop = asyncio.get_running_loop()
        metrics = None
        try:
            if self.config.metrics_port:
                try:  # before any worker exists, so a taken port fails fast and clean
                    metrics = await self._start_metrics()
                except OSError as e:
                    log.error("cannot serve metrics on %s:%d: %s", self.config.metrics_host,
                              self.config.metrics_port, e.strerror or e)
                    return 1
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, self.on_signal, sig)
            loop.add_signal_handler(signal.SIGHUP, self.on_hangup)
            if self.watcher is not None:
                self._track(self.watcher(self.on_change))
            self._rolling = loop.create_task(self._roll(None))  # the first generation
            await self._rolling
            if self.current is None and not self.stopping and self.watcher is None:
                return 1
            while not (self.stopping and not self.workers):
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
            close_listeners(self.listeners)
            shutil.rmtree(self._stats_dir, ignore_errors=True)

    # ---- generations ---------------------------------------------------------------

    async def _start_generation(self, config: Config) -> Generation | None:
        """Start a generation and wait until every worker serves; None if it failed (its
        workers are then told to stop, and the reason is logged) or a stop came."""
        self._generations += 1
        count = max(1, config.worker_count())  # --reload: one worker
        gen = Generation(self._generations, config, workers=[None] * count,
                         failures=[0] * count)  # fmt: skip
        for slot in range(count):
            if self.stopping:
                break
            await self._spawn(gen, slot)
        why = await self._await_serving(gen)
        if why is None:
            return gen
        gen.state = FAILED
        for worker in gen.live():
            self._stop(worker, signal.SIGTERM)
        if not self.stopping:
            serving = self.current
            if serving is not None:
                then = f"generation {serving.number} keeps serving"
            elif self.watcher is not None:
                then = "waiting for a change to try again"
            else:
                then = "stopping"
            log.error("generation %d failed to start: %s; %s", gen.number, why, then)
        return None

    async def _await_serving(self, gen: Generation) -> str | None:
        """None once every worker of ``gen`` serves, else why not."""
        assert self._aggregator is not None
        deadline = time.monotonic() + BOOT_TIMEOUT
        while True:
            if self.stopping:
                return "a stop signal came"
            waiting = False
            for worker in gen.workers:
                if worker is None:
                    return "not every worker was started"
                if not worker.alive:
                    return self._exit_reason(worker)
                worker.ready = worker.ready or self._aggregator.is_ready(worker.serial)
                waiting = waiting or not worker.ready
            if not waiting:
                return None
            if time.monotonic() > deadline:
                return f"its workers were not serving within {BOOT_TIMEOUT:.0f}s"
            await asyncio.sleep(READY_POLL)

    def _exit_reason(self, worker: Worker) -> str:
        assert self._aggregator is not None
        why = self._aggregator.failure(worker.serial)
        return (f"worker {worker.slot} (pid {worker.proc.pid}) exited with code "
                f"{worker.proc.returncode}" + (f": {why}" if why else ""))  # fmt: skip

    def _promote(self, gen: Generation) -> None:
        """``gen`` serves from now on; the generation before it drains."""
        old, self.current = self.current, gen
        gen.state = SERVING
        if old is None:
            for listener in self.listeners:
                log.info("aiotcp listening on %s", listener.name)
            log.info("%d workers serving: pids %s (generation %d)", len(gen.workers),
                     gen.pids(), gen.number)
            return
        log.info("generation %d serving: pids %s; draining generation %d", gen.number,
                 gen.pids(), old.number)
        old.state = RETIRING
        for worker in old.live():
            self._stop(worker, signal.SIGTERM)

    # ---- rolling restart -------------------------------------------------------------

    def on_hangup(self) -> None:
        """SIGHUP: roll the workers (see the module docstring)."""
        self._request_roll("SIGHUP")

    def on_change(self, what: str) -> None:
        """--reload: a source or the config file changed."""
        self._request_roll(f"{what} changed")

    def _request_roll(self, why: str) -> None:
        if self.stopping:
            return
        if self._rolling is not None and not self._rolling.done():
            self._roll_again = True
            log.info("%s: a rolling restart is under way; another follows it", why)
            return
        task = asyncio.get_running_loop().create_task(self._roll(why))
        self._rolling = task
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _roll(self, why: str | None) -> None:
        """Start a generation (``why`` None: the first, from the Config given) and promote
        it; once more while SIGHUPs or changes came meanwhile. One roll at a time, so
        generations are promoted in the order they were started."""
        while True:
            self._roll_again = False
            await self._roll_once(why)
            if not self._roll_again or self.stopping:
                return
            if self.current is None and self.watcher is None:
                return  # the first generation failed: the supervisor exits
            why = "another SIGHUP or change"

    async def _roll_once(self, why: str | None) -> None:
        config = self.config
        if why is not None:
            serving = self.current
            then = f"generation {serving.number} keeps serving" if serving else "nothing serves"
            try:
                if self.rebuild is not None:
                    config = self._keep_fixed(self.rebuild())
            except ConfigError as e:
                log.error("%s: rolling restart refused: %s; %s", why, e, then)
                return
            log.info("%s: starting generation %d (%d workers)", why, self._generations + 1,
                     max(1, config.worker_count()))
        gen = await self._start_generation(config)
        if gen is not None and not self.stopping:
            self._promote(gen)

    def _keep_fixed(self, config: Config) -> Config:
        changed = [n for n in FIXED_SETTINGS if getattr(config, n) != getattr(self.config, n)]
        if changed:
            log.warning("rolling restart: %s changed; kept as they are until a full restart",
                        ", ".join(changed))
        return config.replace(**{n: getattr(self.config, n) for n in FIXED_SETTINGS})

    # ---- processes ---------------------------------------------------------------

    async def _spawn(self, gen: Generation, slot: int) -> None:
        self._serials += 1
        serial = self._serials
        env = worker_environment(gen.config, dict(os.environ), self._stats_dir, serial, slot)
        proc = await start_process(env, self.fds)
        worker = Worker(slot, gen, serial, proc, time.monotonic())
        gen.workers[slot] = worker
        self.workers[serial] = worker
        log.debug("worker %d of generation %d started (pid %d)", slot, gen.number, proc.pid)
        self._track(self._watch(worker))
        # A stop signal or a roll may have come while the process was being started: it
        # did not reach this worker then, so it does now (before the worker can serve).
        if self.stopping:
            self._deliver_stop(worker, signal.SIGTERM)
        elif gen.state in (RETIRING, FAILED):
            self._stop(worker, signal.SIGTERM)
        await send_config(proc, worker_config(gen.config, self.fds))

    def _track(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _watch(self, worker: Worker) -> None:
        code = await worker.proc.wait()
        assert self._aggregator is not None
        self.workers.pop(worker.serial, None)
        self._aggregator.retire(worker.serial)
        self._wake.set()
        gen = worker.generation
        if worker.stop_sig:
            if code not in (0, -signal.SIGTERM, -signal.SIGINT):
                log.warning("worker %d (pid %d) exited with code %d while stopping",
                            worker.slot, worker.proc.pid, code)
                if self.stopping:
                    self.exit_ok = False
            elif gen.state == RETIRING and not self.stopping:
                log.info("worker %d of generation %d (pid %d) drained and exited",
                         worker.slot, gen.number, worker.proc.pid)
            return
        if self.stopping or gen.state != SERVING:
            return  # a generation booting reports its own failure (_await_serving)
        uptime = time.monotonic() - worker.started_at
        gen.failures[worker.slot], delay = restart_backoff(gen.failures[worker.slot], uptime)
        log.warning("worker %d (pid %d) exited with code %d after %.1fs; restarting in %.1fs",
                    worker.slot, worker.proc.pid, code, uptime, delay)
        await asyncio.sleep(delay)
        if self.stopping or gen is not self.current:
            return
        self.restarts += 1
        await self._spawn(gen, worker.slot)
        replacement = gen.workers[worker.slot]
        if replacement is not None:
            self._track(self._await_ready(replacement))

    async def _await_ready(self, worker: Worker) -> None:
        assert self._aggregator is not None
        while worker.alive and not worker.stop_sig:
            if self._aggregator.is_ready(worker.serial):
                worker.ready = True
                log.info("worker %d restarted (pid %d)", worker.slot, worker.proc.pid)
                return
            await asyncio.sleep(READY_POLL)

    # ---- stopping ------------------------------------------------------------------

    def on_signal(self, sig: int) -> None:
        """Forward ``sig`` to every worker; a second signal forces them."""
        self.signals += 1
        first = not self.stopping
        self.stopping = True
        name = signal.Signals(sig).name
        if first:
            log.info("%s: draining %d worker(s)", name, len(self.workers))
        else:
            log.warning("%s again: forcing %d worker(s) to stop", name, len(self.workers))
        for worker in list(self.workers.values()):
            self._deliver_stop(worker, sig)
        self._wake.set()

    def _deliver_stop(self, worker: Worker, sig: int) -> None:
        """What the supervisor's stop signals so far mean for ``worker``: a first stop if
        it has none yet (a generation retiring has one already), forced after a second."""
        if not worker.stop_sig:
            self._stop(worker, sig)
        if self.signals > 1 and not worker.forced:
            worker.forced = True
            _send(worker, other_stop_signal(worker.stop_sig))

    def _stop(self, worker: Worker, sig: int) -> None:
        """Send ``worker`` its first stop signal and start its drain deadline."""
        if worker.stop_sig:
            return
        worker.stop_sig = sig
        _send(worker, sig)
        self._track(self._deadline(worker))

    async def _deadline(self, worker: Worker) -> None:
        grace = worker.generation.config.shutdown_timeout + KILL_GRACE
        await asyncio.sleep(grace)
        if worker.alive:
            log.error("worker %d (pid %d) still running %gs after its stop signal: killing",
                      worker.slot, worker.proc.pid, grace)
            if self.stopping:
                self.exit_ok = False
            with contextlib.suppress(ProcessLookupError):
                worker.proc.kill()

    async def _kill_all(self) -> None:
        """Last resort on the way out (boot failure, cancellation): kill and reap."""
        live = [w.proc for w in self.workers.values() if w.alive]
        for proc in live:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
        for proc in live:
            await proc.wait()

    # ---- metrics -----------------------------------------------------------------

    def ready(self) -> bool:
        """What ``/readyz`` says: not stopping, and every worker of the generation serving
        is up, serving and ready by its app's own checks."""
        assert self._aggregator is not None
        gen = self.current
        if self.stopping or gen is None:
            return False
        return all(w is not None and w.alive and w.ready
                   and self._aggregator.worker_ready(w.serial) for w in gen.workers)  # fmt: skip

    def snapshot(self) -> dict[str, Any]:
        assert self._aggregator is not None
        return self._aggregator.total(list(self.workers))

    def worker_families(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        gen = self.current
        serving = sum(1 for w in gen.live() if w.ready) if gen is not None else 0
        yield GaugeMetricFamily("aiotcp_workers", "Workers of the generation serving, up now.",
                                value=serving)
        yield GaugeMetricFamily("aiotcp_generation",
                                "The generation of workers serving (1 at start, +1 per roll).",
                                value=gen.number if gen is not None else 0)
        yield CounterMetricFamily("aiotcp_worker_restarts", "Workers restarted after dying.",
                                  value=self.restarts)

    async def _start_metrics(self) -> Any:
        from aiotcp.observe.endpoints import serve_endpoints

        return await serve_endpoints(self.config.metrics_host, self.config.metrics_port,
                                     self.snapshot, self.ready, self.worker_families)


def _send(worker: Worker, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        worker.proc.send_signal(sig)


def supervise(
    config: Config,
    rebuild: Callable[[], Config] | None = None,
    watcher: Watcher | None = None,
) -> int:
    """Run ``config.worker_count()`` workers (at least one) until SIGTERM/SIGINT; returns the exit code.

    0 after every worker drained and exited cleanly; 1 if a listener could not be opened,
    the first generation failed to start (without ``watcher``), or a worker had to be
    killed at the deadline.
    """
    from aiotcp.observe.logs import configure_logging

    configure_logging(config.log_level, config.log_format)
    with asyncio.Runner() as runner:
        return runner.run(Supervisor(config, rebuild, watcher).run())
