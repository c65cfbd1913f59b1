"""PostgreSQL store through asyncpg: one connection, one COPY per batch.

A batch is one ``COPY ... FROM STDIN`` (``copy_records_to_table``): a single statement,
so a single transaction, committed when it returns (with the server's default
``synchronous_commit=on``, after the WAL is flushed). A single row is one prepared
INSERT instead (one round trip, where COPY needs more). The connection is made again
after any failure; the table is created again if it was dropped.
"""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg

from aiotcp.stores import DEFAULT_TIMEOUT, Row, StoreUnavailable, StoreURL, one_line

# A connect that takes longer than this fails (a host that drops packets, a server
# that accepts but never answers): clients get ERR unavailable rather than a hang.
CONNECT_TIMEOUT = 10.0
COLUMNS = ("received_at", "peer", "body")
APPLICATION_NAME = "aiotcp-ingest"


class PostgresStore:
    """See the module doc."""

    def __init__(self, url: StoreURL, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.url = url
        self.timeout = timeout
        self._conn: Any = None
        t = url.table
        self._create = (
            f"CREATE TABLE IF NOT EXISTS {t} (id BIGSERIAL PRIMARY KEY, "
            "received_at DOUBLE PRECISION NOT NULL, peer TEXT NOT NULL, body TEXT NOT NULL)"
        )
        self._insert = f"INSERT INTO {t} (received_at, peer, body) VALUES ($1, $2, $3)"

    async def _connection(self) -> Any:
        conn = self._conn
        if conn is not None and not conn.is_closed():
            return conn
        self._conn = None
        settings = {} if "application_name" in self.url.driver_url else {
            "application_name": APPLICATION_NAME
        }
        conn = await asyncpg.connect(
            self.url.driver_url, timeout=min(CONNECT_TIMEOUT, self.timeout),
            server_settings=settings,
        )
        try:
            await conn.execute(f"SET lock_timeout = '{int(self.timeout * 1000)}ms'")
            await conn.execute(self._create)
        except BaseException:
            conn.terminate()
            raise
        self._conn = conn
        return conn

    async def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.terminate()

    async def open(self) -> None:
        try:
            await self._connection()
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError) as e:
            await self._drop()
            raise StoreUnavailable(one_line(e)) from e

    async def append(self, rows: list[Row]) -> None:
        try:
            # Connect included: a silent link fails within the timeout, not twice it.
            async with asyncio.timeout(self.timeout):
                conn = await self._connection()
                if len(rows) == 1:
                    await conn.execute(self._insert, *rows[0])
                else:
                    await conn.copy_records_to_table(
                        self.url.table, records=rows, columns=COLUMNS
                    )
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError) as e:
            await self._drop()
            raise StoreUnavailable(one_line(e)) from e
        except asyncio.CancelledError:
            await self._drop()  # the connection is mid-statement: unusable
            raise

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                await asyncio.wait_for(conn.close(), CONNECT_TIMEOUT)
            except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError):
                conn.terminate()


def make_store(url: StoreURL, timeout: float = DEFAULT_TIMEOUT) -> PostgresStore:
    return PostgresStore(url, timeout)
