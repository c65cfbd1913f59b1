"""Group commit: one transaction per batch of whatever arrived meanwhile.

``append(rows)`` queues the rows with a future and awaits it. One writer takes
everything queued, commits it in one transaction and resolves every future of that
batch; rows queued while that commit is in flight go into the next one. Nothing waits
on a timer: a lone message is committed as soon as the writer sees it, and under load
batches grow by themselves, as large as the load makes them (PostgreSQL's WAL flush
and Kafka's producer batching work alike).

The writer is a task for a store whose calls await (asyncpg, aiomysql). For a store
whose calls block (sqlite3: it offers ``append_blocking``) it is a thread of its own
that takes the next batch the moment a commit returns, so commits follow each other
without waiting for the event loop to come round; futures are resolved on the loop.

A failed commit fails every future of its batch with StoreUnavailable (its reason), and
(stores that await: PostgreSQL, MySQL) what was queued behind it too: it would wait for
another ``--store-timeout`` against a store just found unreachable, so every message
is answered within one timeout. The writer goes on, and the next batch tries the store
again (stores reconnect), so the service recovers when the store does.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Sequence

from aiotcp.stores import Row, Store, StoreUnavailable, one_line

log = logging.getLogger("aiotcp")

# Rows taken into one transaction at most (an append is never split, so a batch may
# pass it by one append's rows). Under load what is queued is bounded anyway by the
# connections x --max-pipeline, so this only bounds one transaction's size: the memory
# a driver builds for it and MySQL's max_allowed_packet (aiomysql sends a multi-row
# INSERT of up to 1 MB per statement).
MAX_BATCH_ROWS = 10_000

Entry = tuple[Sequence[Row], "asyncio.Future[None]"]
CLOSED = "the store is closed"


class GroupCommitter:
    """Appends rows to a store, one transaction per batch (see the module doc).

    ``per_message=True`` commits every row in its own transaction instead: the
    baseline group commit is measured against. ``commits`` counts transactions tried.
    """

    def __init__(self, store: Store, *, per_message: bool = False) -> None:
        self.store = store
        self.per_message = per_message
        self.commits = 0
        self._queue: list[Entry] = []
        self._queued_rows = 0
        self._in_flight: list[Entry] = []
        self._running = False
        self._loop: asyncio.AbstractEventLoop | None = None
        blocking: Callable[[list[Row]], None] | None = getattr(store, "append_blocking", None)
        self._blocking = blocking
        self._lock = threading.Lock()  # guards the queue against the writer thread
        self._ready = threading.Condition(self._lock)
        self._wake = asyncio.Event()
        self._writer: asyncio.Task[None] | None = None
        self._thread: threading.Thread | None = None

    async def start(self) -> None:
        """Open the store and start the writer. Raises StoreUnavailable."""
        await self.store.open()
        self._loop = asyncio.get_running_loop()
        self._running = True
        if self._blocking is not None:
            self._thread = threading.Thread(
                target=self._write_in_thread, name="aiotcp-commit", daemon=True
            )
            self._thread.start()
        else:
            self._writer = self._loop.create_task(self._write_forever())

    async def append(self, rows: Sequence[Row]) -> None:
        """Return once ``rows`` are committed. Raises StoreUnavailable (not committed)."""
        if not self._running or self._loop is None:
            raise StoreUnavailable(CLOSED)
        fut: asyncio.Future[None] = self._loop.create_future()
        with self._lock:
            self._queue.append((rows, fut))
            self._queued_rows += len(rows)
            self._ready.notify()
        self._wake.set()
        await fut

    def _take(self) -> list[Entry]:
        """What the next transaction holds (called with the lock held)."""
        queue = self._queue
        if self._queued_rows <= MAX_BATCH_ROWS:
            self._queue, self._queued_rows = [], 0
            return queue
        n = taken = 0
        while n < len(queue) and (taken < MAX_BATCH_ROWS or n == 0):
            taken += len(queue[n][0])
            n += 1
        self._queue = queue[n:]
        self._queued_rows -= taken
        return queue[:n]

    def _groups(self, batch: list[Entry]) -> list[tuple[list[Entry], list[list[Row]]]]:
        """The transactions for a batch, with the entries each group of them settles: one
        transaction for the whole batch; per message, one per row, each entry settled
        once all its rows are committed."""
        if self.per_message:
            return [([e], [[r] for r in e[0]]) for e in batch]
        rows = list(batch[0][0]) if len(batch) == 1 else [r for e in batch for r in e[0]]
        return [(batch, [rows])]

    # ---- the writer as a task (stores that await) ----------------------------------

    async def _write_forever(self) -> None:
        while True:
            if not self._queue:
                self._wake.clear()
                await self._wake.wait()
                continue
            with self._lock:
                batch = self._in_flight = self._take()
            for entries, transactions in self._groups(batch):
                try:
                    for rows in transactions:
                        self.commits += 1
                        await self.store.append(rows)
                except Exception as e:  # noqa: BLE001 (logged if not StoreUnavailable)
                    reason = _reason(self.store, e)
                    with self._lock:
                        queued, self._queue, self._queued_rows = self._queue, [], 0
                    _settle(entries + queued, reason)
                else:
                    _settle(entries, None)
            self._in_flight = []

    # ---- the writer as a thread (stores that block) --------------------------------

    def _write_in_thread(self) -> None:
        assert self._blocking is not None and self._loop is not None
        loop, append = self._loop, self._blocking
        while True:
            with self._lock:
                while not self._queue and self._running:
                    self._ready.wait()
                if not self._running:
                    return
                batch = self._in_flight = self._take()
            for entries, transactions in self._groups(batch):
                try:
                    for rows in transactions:
                        self.commits += 1
                        append(rows)
                except Exception as e:  # noqa: BLE001 (logged if not StoreUnavailable)
                    reason: str | None = _reason(self.store, e)
                else:
                    reason = None
                try:
                    loop.call_soon_threadsafe(_settle, entries, reason)
                except RuntimeError:  # the loop is closed: nobody waits any more
                    return
            with self._lock:
                self._in_flight = []

    async def close(self) -> None:
        """Stop the writer (what is queued fails), then close the store."""
        with self._lock:
            self._running = False
            self._ready.notify()
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.cancel()
            try:
                await writer
            except asyncio.CancelledError:
                pass
        thread, self._thread = self._thread, None
        if thread is not None:
            await asyncio.to_thread(thread.join)  # a commit in flight ends first
            await asyncio.sleep(0)  # its results, posted to the loop, are delivered
        with self._lock:
            left, self._in_flight, self._queue, self._queued_rows = (
                self._in_flight + self._queue, [], [], 0
            )
        _settle(left, CLOSED)
        await self.store.close()


def _reason(store: Store, e: Exception) -> str:
    if isinstance(e, StoreUnavailable):
        return str(e)
    log.exception("store %s failed", store.url.shown)  # a bug in a store: the writer goes on
    return one_line(e)


def _settle(entries: list[Entry], reason: str | None) -> None:
    """Resolve the futures of committed entries, or fail them with ``reason``."""
    for _, fut in entries:
        if fut.done():  # its appender was cancelled (a handler timeout)
            continue
        if reason is None:
            fut.set_result(None)
        else:
            fut.set_exception(StoreUnavailable(reason))


