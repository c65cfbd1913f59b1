"""Group commit, one layer alone: a store that counts its transactions and that the
test holds mid-commit, so batching is shown by count, never by wall clock."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from aiotcp.stores import Row, StoreUnavailable, parse_store_url
from aiotcp.stores.group import MAX_BATCH_ROWS, GroupCommitter

# Loop turns a lone append may take to commit: queue, wake the writer, commit, resolve.
# A design that waited on a timer for company would need far more (it never commits
# on loop turns alone).
LONE_COMMIT_TURNS = 10


class CountingStore:
    """A store whose commits are counted, and held while the test holds them."""

    def __init__(self) -> None:
        self.url = parse_store_url("sqlite:///counting.db")
        self.transactions: list[list[Row]] = []
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()
        self.fail_with: str | None = None
        self.fail_body: str | None = None  # fail a transaction holding this message
        self.closed = False

    def hold(self) -> None:
        self.gate.clear()

    def release(self) -> None:
        self.gate.set()

    async def wait_entered(self) -> None:
        """Until a commit has started (and is held, if the test holds commits)."""
        await asyncio.to_thread(self.entered.wait, 10)

    async def open(self) -> None:
        pass

    def _commit(self, rows: list[Row]) -> None:
        if self.fail_with is not None:
            raise StoreUnavailable(self.fail_with)
        if any(r[2] == self.fail_body for r in rows):
            raise StoreUnavailable(f"refused {self.fail_body}")
        self.transactions.append(list(rows))

    async def append(self, rows: list[Row]) -> None:
        self.entered.set()
        while not self.gate.is_set():
            await asyncio.sleep(0)  # held by the test: yield until it lets go
        self._commit(rows)

    async def close(self) -> None:
        self.closed = True


class BlockingCountingStore(CountingStore):
    """The same, with blocking calls: the committer writes from a thread of its own."""

    def append_blocking(self, rows: list[Row]) -> None:
        self.entered.set()
        self.gate.wait(10)
        self._commit(rows)


STORES = [CountingStore, BlockingCountingStore]


@pytest.fixture(params=STORES, ids=["task", "thread"])
def make_store(request: pytest.FixtureRequest) -> type[CountingStore]:
    """Each test runs with the writer as a task and as a thread."""
    cls: type[CountingStore] = request.param
    return cls


def row(i: int) -> Row:
    return (0.0, "127.0.0.1:1", f"m{i}")


def run(body: Callable[[GroupCommitter, CountingStore], Awaitable[Any]],
        cls: type[CountingStore] = CountingStore, **kw: Any) -> Any:
    async def main() -> Any:
        store = cls()
        committer = GroupCommitter(store, **kw)
        await committer.start()
        try:
            async with asyncio.timeout(10):
                return await body(committer, store)
        finally:
            await committer.close()

    return asyncio.run(main())


async def turns_until_done(task: asyncio.Task[Any], limit: int) -> int:
    for n in range(limit):
        if task.done():
            return n
        await asyncio.sleep(0)
    return limit


def test_a_lone_append_commits_at_once_in_one_transaction() -> None:
    async def body(c: GroupCommitter, store: CountingStore) -> None:
        task = asyncio.create_task(c.append([row(1), row(2)]))
        assert await turns_until_done(task, LONE_COMMIT_TURNS) < LONE_COMMIT_TURNS
        await task
        assert store.transactions == [[row(1), row(2)]]
        assert c.commits == 1

    run(body)


def test_a_lone_append_commits_at_once_from_the_writer_thread() -> None:
    async def body(c: GroupCommitter, store: CountingStore) -> None:
        await c.append([row(1)])  # the thread is woken by the append, not by a timer
        assert store.transactions == [[row(1)]] and c.commits == 1

    run(body, BlockingCountingStore)


def test_appends_during_a_commit_share_the_next_transaction(make_store: type[CountingStore]) -> None:
    n = 200

    async def body(c: GroupCommitter, store: CountingStore) -> None:
        store.hold()
        first = asyncio.create_task(c.append([row(0)]))
        await store.wait_entered()  # the first commit is in flight, held
        rest = [asyncio.create_task(c.append([row(i)])) for i in range(1, n)]
        await asyncio.sleep(0)  # let every appender queue its rows
        assert not any(t.done() for t in [first, *rest])  # nothing acked before its commit
        store.release()
        await asyncio.gather(first, *rest)
        assert [len(t) for t in store.transactions] == [1, n - 1]
        assert sorted(r[2] for t in store.transactions for r in t) == sorted(
            f"m{i}" for i in range(n)
        )

    run(body, make_store)


def test_concurrent_appends_make_far_fewer_commits_than_messages(make_store: type[CountingStore]) -> None:
    n = 1000

    async def body(c: GroupCommitter, store: CountingStore) -> None:
        async def appender(i: int) -> None:
            for j in range(10):
                await c.append([row(i * 10 + j)])

        await asyncio.gather(*(appender(i) for i in range(n // 10)))
        assert sum(len(t) for t in store.transactions) == n
        assert c.commits <= n // 50, c.commits  # 100 appenders in flight: ~20 commits

    run(body, make_store)


def test_a_failed_commit_fails_its_whole_batch_and_the_next_batch_retries(make_store: type[CountingStore]) -> None:
    async def body(c: GroupCommitter, store: CountingStore) -> None:
        store.hold()
        store.fail_with = "disk on fire"
        tasks = [asyncio.create_task(c.append([row(i)])) for i in range(5)]
        await store.wait_entered()
        store.release()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        assert [str(r) for r in results] == ["disk on fire"] * 5
        assert all(isinstance(r, StoreUnavailable) for r in results)
        store.fail_with = None
        await c.append([row(9)])  # the writer went on: the store is tried again
        assert store.transactions == [[row(9)]]

    run(body, make_store)


def test_per_message_mode_commits_every_row_alone(make_store: type[CountingStore]) -> None:
    async def body(c: GroupCommitter, store: CountingStore) -> None:
        await asyncio.gather(*(c.append([row(2 * i), row(2 * i + 1)]) for i in range(10)))
        assert [len(t) for t in store.transactions] == [1] * 20
        assert c.commits == 20

    run(body, make_store, per_message=True)


def test_per_message_mode_acks_an_append_only_once_all_its_rows_are_committed(
    make_store: type[CountingStore],
) -> None:
    async def body(c: GroupCommitter, store: CountingStore) -> None:
        store.fail_body = "m1"
        with pytest.raises(StoreUnavailable, match="refused m1"):
            await c.append([row(0), row(1), row(2)])
        assert store.transactions == [[row(0)]]  # row 0 alone is in; the append failed

    run(body, make_store, per_message=True)


def test_a_transaction_is_bounded_but_an_append_is_never_split(make_store: type[CountingStore]) -> None:
    async def body(c: GroupCommitter, store: CountingStore) -> None:
        store.hold()
        first = asyncio.create_task(c.append([row(0)]))
        await store.wait_entered()
        big = [row(i) for i in range(MAX_BATCH_ROWS // 2 + 1)]
        tasks = [asyncio.create_task(c.append(big)) for _ in range(3)]
        await asyncio.sleep(0)
        store.release()
        await asyncio.gather(first, *tasks)
        assert [len(t) for t in store.transactions] == [1, 2 * len(big), len(big)]

    run(body, make_store)


def test_close_fails_what_is_queued_and_closes_the_store(
    make_store: type[CountingStore],
) -> None:
    async def main() -> None:
        store = make_store()
        c = GroupCommitter(store)
        await c.start()
        store.hold()
        first = asyncio.create_task(c.append([row(0)]))
        await store.wait_entered()  # row 0's commit is in flight, held
        queued = [asyncio.create_task(c.append([row(i)])) for i in (1, 2)]
        await asyncio.sleep(0)
        closing = asyncio.create_task(c.close())
        await asyncio.sleep(0)
        store.release()  # a thread cannot be stopped mid-call: its commit ends
        await closing
        results = await asyncio.gather(first, *queued, return_exceptions=True)
        assert all(isinstance(r, StoreUnavailable) for r in results[1:]), results
        # Row 0: committed and acked (the thread), or cancelled and failed (the task).
        assert (results[0] is None) == (store.transactions == [[row(0)]]), results
        assert store.closed
        with pytest.raises(StoreUnavailable):
            await c.append([row(5)])

    asyncio.run(main())
