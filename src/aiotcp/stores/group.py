"""Group commit: one transaction per batch of whatever arrived meanwhile.

``append(rows)`` queues the rows with a future and awaits it. One writer task takes
everything queued, commits it in one transaction and resolves every future of that
batch; rows queued while that commit is in flight go into the next one. Nothing waits
on a timer: a lone message is committed as soon as the writer sees it, and under load
batches grow by themselves, as large as the load makes them (PostgreSQL's WAL flush
and Kafka's producer batching work alike).

A failed commit fails every future of its batch with StoreUnavailable (its reason);
the writer goes on, and the next batch tries the store again (stores reconnect), so
the service recovers when the store does.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from aiotcp.stores import Row, Store, StoreUnavailable, one_line

log = logging.getLogger("aiotcp")

# Rows taken into one transaction at most (an append is never split, so a batch may
# pass it by one append's rows). Under load what is queued is bounded anyway by the
# connections x --max-pipeline, so this only bounds one transaction's size: the memory
# a driver builds for it and MySQL's max_allowed_packet (aiomysql sends a multi-row
# INSERT of up to 1 MB per statement).
MAX_BATCH_ROWS = 10_000

Entry = tuple[Sequence[Row], "asyncio.Future[None]"]


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
        self._wake = asyncio.Event()
        self._writer: asyncio.Task[None] | None = None
        self._in_flight: list[Entry] = []

    async def start(self) -> None:
        """Open the store and start the writer. Raises StoreUnavailable."""
        await self.store.open()
        self._writer = asyncio.get_running_loop().create_task(self._write_forever())

    async def append(self, rows: Sequence[Row]) -> None:
        """Return once ``rows`` are committed. Raises StoreUnavailable (not committed)."""
        if self._writer is None or self._writer.done():
            raise StoreUnavailable("the store is closed")
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.append((rows, fut))
        self._queued_rows += len(rows)
        self._wake.set()
        await fut

    def _take(self) -> list[Entry]:
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

    async def _write_forever(self) -> None:
        while True:
            if not self._queue:
                self._wake.clear()
                await self._wake.wait()
                continue
            batch = self._in_flight = self._take()
            if self.per_message:
                for entry in batch:
                    await self._commit([entry], list(entry[0]), one_by_one=True)
            else:
                rows = list(batch[0][0]) if len(batch) == 1 else [r for e in batch for r in e[0]]
                await self._commit(batch, rows, one_by_one=False)
            self._in_flight = []

    async def _commit(self, batch: list[Entry], rows: list[Row], *, one_by_one: bool) -> None:
        try:
            if one_by_one:
                for row in rows:
                    self.commits += 1
                    await self.store.append([row])
            else:
                self.commits += 1
                await self.store.append(rows)
        except StoreUnavailable as e:
            _fail(batch, str(e))
        except Exception as e:  # a bug in a store must not stop the writer
            log.exception("store %s failed", self.store.url.shown)
            _fail(batch, one_line(e))
        else:
            for _, fut in batch:
                if not fut.done():  # done: its appender was cancelled (a handler timeout)
                    fut.set_result(None)

    async def close(self) -> None:
        """Stop the writer (what is queued fails), then close the store."""
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.cancel()
            try:
                await writer
            except asyncio.CancelledError:
                pass
        _fail(self._in_flight + self._queue, "the store is closed")
        self._in_flight, self._queue, self._queued_rows = [], [], 0
        await self.store.close()


def _fail(entries: list[Entry], reason: str) -> None:
    for _, fut in entries:
        if not fut.done():
            fut.set_exception(StoreUnavailable(reason))
