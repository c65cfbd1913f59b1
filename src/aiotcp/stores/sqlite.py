"""SQLite store: WAL, ``synchronous=FULL``, one writer thread.

sqlite3 calls block, so they never run in the event loop: ``open``/``append``/``close``
run on a thread of the store's own, and ``append_blocking`` on the caller's thread (the
group committer's writer). One connection, used by one thread at a time. WAL lets
readers (a user's queries) go on while the writer commits; ``synchronous=FULL`` syncs
the WAL at every commit, so a committed transaction survives a power loss, not just a
crash of the process.

A file whose directory does not exist (``sqlite:////var/lib/aiotcp/ingest.db`` on a
fresh machine) gets it: the missing directories are made with mode :data:`DIR_MODE`,
as a user expects of a path they named. When one cannot be made, opening fails with one
line naming it.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from aiotcp.stores import Row, StoreUnavailable, StoreURL, one_line

# How long a commit waits for a lock held by another process (a user's script writing
# to the same file) before it fails with "database is locked": long enough to ride out
# a short transaction of someone else, short enough that clients get ERR unavailable
# instead of hanging.
BUSY_TIMEOUT = 2.0
# The mode of the directories made for the file (less the umask): the service's user and
# group read the data (a backup, a report); others do not (rows hold clients' messages).
DIR_MODE = 0o750
# Rows per INSERT statement: a batch is written as multi-row INSERTs of this many rows
# (and one for the rest), one sqlite3 call each instead of one per row, so the writer
# thread takes the GIL a few times per batch, not per row, while the event loop runs.
# 3 values a row: 999 host parameters is the smallest limit of a SQLite build
# (SQLITE_MAX_VARIABLE_NUMBER before 3.32).
ROWS_PER_INSERT = 256


class SQLiteStore:
    """See the module doc."""

    def __init__(self, url: StoreURL) -> None:
        self.url = url
        self._path = url.path
        self._executor: ThreadPoolExecutor | None = None
        self._db: sqlite3.Connection | None = None  # used by one thread at a time
        t = url.table
        self._create = (
            f"CREATE TABLE IF NOT EXISTS {t} (id INTEGER PRIMARY KEY, "
            "received_at REAL NOT NULL, peer TEXT NOT NULL, body TEXT NOT NULL)"
        )
        self._insert = f"INSERT INTO {t} (received_at, peer, body) VALUES "
        self._insert_full = self._insert_of(ROWS_PER_INSERT)

    def _insert_of(self, n: int) -> str:
        return self._insert + ",".join(["(?,?,?)"] * n)

    async def _run(self, fn: Callable[..., None], *args: Any) -> None:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(1, thread_name_prefix="aiotcp-sqlite")
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self._executor, fn, *args)
        except (sqlite3.Error, OSError) as e:
            raise StoreUnavailable(one_line(e)) from e

    def _connect(self) -> sqlite3.Connection:
        make_directory_of(self._path)
        db = sqlite3.connect(
            self._path, timeout=BUSY_TIMEOUT, isolation_level=None, check_same_thread=False
        )
        try:
            mode = db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise sqlite3.OperationalError(f"cannot use WAL (journal_mode is {mode})")
            db.execute("PRAGMA synchronous=FULL")
            db.execute(self._create)
        except BaseException:
            db.close()
            raise
        return db

    def _open(self) -> None:
        if self._db is None:
            self._db = self._connect()

    def append_blocking(self, rows: list[Row]) -> None:
        """``append`` for the caller's thread (the group committer's writer thread):
        blocks until committed. Raises StoreUnavailable."""
        try:
            self._append(rows)
        except (sqlite3.Error, OSError) as e:
            raise StoreUnavailable(one_line(e)) from e

    def _append(self, rows: list[Row]) -> None:
        if self._db is None:
            self._db = self._connect()
        db = self._db
        try:
            db.execute("BEGIN IMMEDIATE")
            try:
                full = len(rows) - len(rows) % ROWS_PER_INSERT
                for i in range(0, full, ROWS_PER_INSERT):
                    chunk = rows[i : i + ROWS_PER_INSERT]
                    db.execute(self._insert_full, [v for row in chunk for v in row])
                if full < len(rows):
                    rest = rows[full:]
                    db.execute(self._insert_of(len(rest)), [v for row in rest for v in row])
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise
        except sqlite3.Error:
            # Start from a fresh connection next time (a file replaced, a broken handle).
            self._db = None
            db.close()
            raise

    def _close(self) -> None:
        db, self._db = self._db, None
        if db is not None:
            db.close()

    async def open(self) -> None:
        await self._run(self._open)

    async def append(self, rows: list[Row]) -> None:
        await self._run(self._append, rows)

    async def close(self) -> None:
        executor, self._executor = self._executor, None
        if executor is None:
            return
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(executor, self._close)
        except sqlite3.Error:
            pass
        executor.shutdown(wait=False)


def make_directory_of(path: str) -> None:
    """Make the missing directories above the file ``path`` (mode DIR_MODE).

    Raises StoreUnavailable naming the directory that is not one or cannot be made.
    """
    missing = []
    here = os.path.dirname(os.path.abspath(path))
    while not os.path.exists(here):
        missing.append(here)
        here = os.path.dirname(here)
    if not os.path.isdir(here):
        raise StoreUnavailable(f"{here} is not a directory")
    for directory in reversed(missing):
        try:
            os.mkdir(directory, DIR_MODE)
        except FileExistsError:
            pass  # another worker made it meanwhile
        except OSError as e:
            raise StoreUnavailable(
                f"cannot create the directory {directory}: {e.strerror or e}"
            ) from None


def make_store(url: StoreURL, timeout: float = 0.0) -> SQLiteStore:
    """``timeout`` is for network stores: a local file has no link to lose."""
    return SQLiteStore(url)
