"""Exact metrics across worker processes: each worker's Stats as a JSON file, summed by the supervisor.

Why not prometheus_client's multiprocess mode: our ack-latency histogram is already
bucketed by the hot path, and prometheus_client has no public way to add ``n`` counts to
one bucket; mirroring by deltas into its mmap files would need its private value
classes. A snapshot file per worker keeps the numbers exact, lets one collector serve
one process and many, and needs no library internals.

Contract:
- A worker writes ``worker-<serial>.json`` in the directory the supervisor gives it
  (env ``AIOTCP_WORKER_STATS_DIR``, serial in ``AIOTCP_WORKER_SERIAL``) once when it is
  serving (the supervisor treats that first file as "ready"), then every
  ``MIRROR_INTERVAL`` seconds, and once more at shutdown. Writes are atomic
  (temporary file + ``os.replace``), so a reader never sees half a file.
- The supervisor sums live workers' files; when a worker exits it folds the last file
  into a retired total (counters kept, the gauges dropped) and deletes it, so counters
  never go backwards across restarts and the directory stays small.
- A worker killed with SIGKILL loses what it counted since its last write (at most
  ``MIRROR_INTERVAL``); graceful exits lose nothing.
- Each snapshot carries ``ready``: the worker's own readiness (serving and its app's
  readiness checks holding). The supervisor's ``/readyz`` needs every worker's.
- A worker that fails to start writes the one line saying why to
  ``worker-<serial>.failed``, so the supervisor can say it in its own one line.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol

log = logging.getLogger("aiotcp.observe")

ENV_DIR = "AIOTCP_WORKER_STATS_DIR"
ENV_SERIAL = "AIOTCP_WORKER_SERIAL"
# Set by a supervisor that serves metrics: its workers then time ack latency.
ENV_TIMED = "AIOTCP_WORKER_TIMED"

# Twice a second: scrapes are usually 10-60 s apart, so this is fresh enough, and one
# small JSON write per half second is nothing next to serving traffic.
MIRROR_INTERVAL = 0.5

# Counters summed over every worker that ever ran; gauges only over live ones.
COUNTERS = (
    "connections_accepted",
    "messages_received",
    "messages_acked",
    "bytes_received",
    "bytes_sent",
    "loop_stalls",
    "handshake_timeouts",
    "tls_handshake_failures",
    "pubsub_published",  # the pubsub app
    "pubsub_delivered",
    "pubsub_dropped",
    "broker_reconnects",
    "upstream_retries",  # the gateway app
    "upstream_retries_throttled",
)
LABELLED_COUNTERS = ("connections_refused", "errors", "proxy_rejected")


class _Snapshottable(Protocol):
    def snapshot(self) -> dict[str, Any]: ...


def snapshot_path(directory: str, serial: int) -> str:
    return os.path.join(directory, f"worker-{serial}.json")


def failure_path(directory: str, serial: int) -> str:
    return os.path.join(directory, f"worker-{serial}.failed")


def write_failure(reason: str) -> None:
    """In a supervised worker: record why it failed to start (no-op elsewhere; never raises)."""
    directory, serial = os.environ.get(ENV_DIR), os.environ.get(ENV_SERIAL)
    if not directory or serial is None or not serial.isdigit():
        return
    with contextlib.suppress(OSError), open(
        failure_path(directory, int(serial)), "w", encoding="utf-8"
    ) as f:
        f.write(reason)


def write_snapshot(path: str, snap: Mapping[str, Any]) -> None:
    """Atomically replace ``path`` with ``snap`` as JSON. Raises OSError on failure."""
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(snap, f)
    os.replace(tmp, path)


def read_snapshot(path: str) -> dict[str, Any] | None:
    """The snapshot at ``path``, or None if it does not exist or cannot be read."""
    try:
        with open(path, encoding="utf-8") as f:
            data: dict[str, Any] = json.load(f)
    except (OSError, ValueError):
        return None
    return data


def empty_snapshot() -> dict[str, Any]:
    """A snapshot with every counter zero (the shape of ``Stats.snapshot()``)."""
    from aiotcp.observe.stats import Stats

    return Stats().snapshot()


def add_into(total: dict[str, Any], snap: Mapping[str, Any], *, live: bool) -> None:
    """Add ``snap`` into ``total`` in place; gauges only if ``live`` (lag is a max)."""
    for key in COUNTERS:
        total[key] += snap.get(key, 0)
    for key in LABELLED_COUNTERS:
        into = total[key]
        for label, n in snap.get(key, {}).items():
            into[label] = into.get(label, 0) + n
    hist, other = total["ack_latency"], snap.get("ack_latency")
    if other:
        if list(other["buckets"]) != list(hist["buckets"]):
            raise ValueError("workers disagree on ack-latency buckets")
        hist["counts"] = [a + b for a, b in zip(hist["counts"], other["counts"], strict=True)]
        hist["sum"] += other["sum"]
        hist["count"] += other["count"]
    if live:
        total["connections"] += snap.get("connections", 0)
        total["pubsub_subscriptions"] += snap.get("pubsub_subscriptions", 0)
        total["loop_lag_seconds"] = max(total["loop_lag_seconds"], snap.get("loop_lag_seconds", 0.0))


class SnapshotAggregator:
    """Supervisor side: sums the workers' files in ``directory``.

    ``live`` serials are those the supervisor believes are running. Not thread-safe;
    call from the supervisor's loop only.
    """

    def __init__(self, directory: str) -> None:
        self.directory = directory
        self._retired = empty_snapshot()

    def is_ready(self, serial: int) -> bool:
        """True once worker ``serial`` wrote its first snapshot (it is serving)."""
        return os.path.exists(snapshot_path(self.directory, serial))

    def worker_ready(self, serial: int) -> bool:
        """True if worker ``serial``'s latest snapshot says it is ready."""
        snap = read_snapshot(snapshot_path(self.directory, serial))
        return snap is not None and snap.get("ready") is True

    def failure(self, serial: int) -> str | None:
        """Why worker ``serial`` failed to start, if it said."""
        try:
            with open(failure_path(self.directory, serial), encoding="utf-8") as f:
                return f.read().strip() or None
        except OSError:
            return None

    def retire(self, serial: int) -> None:
        """Fold an exited worker's last snapshot into the retired total; delete its file."""
        path = snapshot_path(self.directory, serial)
        snap = read_snapshot(path)
        if snap is not None:
            add_into(self._retired, snap, live=False)
        with contextlib.suppress(OSError):
            os.unlink(path)

    def total(self, live: Iterable[int]) -> dict[str, Any]:
        """Retired counters plus every live worker's latest snapshot."""
        total: dict[str, Any] = json.loads(json.dumps(self._retired))  # deep copy
        for serial in live:
            snap = read_snapshot(snapshot_path(self.directory, serial))
            if snap is not None:
                add_into(total, snap, live=True)
        return total


class SnapshotMirror:
    """Worker side: writes ``stats.snapshot()`` to the supervisor's directory.

    ``start()`` writes once synchronously (the ready signal), then a task rewrites every
    ``interval`` seconds; ``aclose()`` cancels it and writes the final snapshot. Write
    failures are logged once and otherwise ignored: metrics must not kill a worker.
    """

    def __init__(
        self,
        stats: _Snapshottable,
        path: str,
        interval: float = MIRROR_INTERVAL,
        ready: Callable[[], bool] | None = None,
    ) -> None:
        self._stats = stats
        self._ready = ready
        self._path = path
        self._interval = interval
        self._task: asyncio.Task[None] | None = None
        self._failed = False

    @classmethod
    def from_environment(
        cls, stats: _Snapshottable, ready: Callable[[], bool] | None = None
    ) -> SnapshotMirror | None:
        """A mirror if this process is a supervised worker, else None. ``ready`` says
        whether the worker is ready (written as the snapshot's ``ready``)."""
        directory, serial = os.environ.get(ENV_DIR), os.environ.get(ENV_SERIAL)
        if not directory or serial is None:
            return None
        return cls(stats, snapshot_path(directory, int(serial)), ready=ready)

    def write(self) -> None:
        snap = self._stats.snapshot()
        snap["ready"] = self._ready() if self._ready is not None else False
        try:
            write_snapshot(self._path, snap)
        except OSError as e:
            if not self._failed:
                self._failed = True
                log.error("cannot write worker stats to %s: %s", self._path, e)

    def start(self) -> None:
        """Write now and start the periodic task (call from a running loop)."""
        self.write()
        self._task = asyncio.get_running_loop().create_task(self._run(), name="aiotcp-stats-mirror")

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            self.write()

    async def aclose(self) -> None:
        """Stop the periodic task and write the final snapshot. Idempotent."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
            self.write()
