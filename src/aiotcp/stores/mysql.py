"""MySQL / MariaDB store through aiomysql: one connection, one multi-row INSERT per batch.

``executemany`` on an ``INSERT ... VALUES`` sends the batch as multi-row INSERTs, inside
one transaction that ``commit()`` ends (InnoDB with its default
``innodb_flush_log_at_trx_commit=1`` flushes its log at every commit). The connection
is made again after any failure; the table is created again if it was dropped.
"""

from __future__ import annotations

import asyncio
import urllib.parse
from typing import Any

import aiomysql
import pymysql

from aiotcp.stores import DEFAULT_TIMEOUT, Row, StoreUnavailable, StoreURL, one_line

# A connect that takes longer than this fails: clients get ERR unavailable, not a hang.
CONNECT_TIMEOUT = 10.0
DEFAULT_PORT = 3306
ERRORS = (pymysql.err.MySQLError, OSError, TimeoutError)


class MySQLStore:
    """See the module doc."""

    def __init__(self, url: StoreURL, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.url = url
        self.timeout = timeout
        parts = urllib.parse.urlsplit(url.driver_url)
        self._params: dict[str, Any] = {
            "host": parts.hostname or "127.0.0.1",
            "port": parts.port or DEFAULT_PORT,
            "user": urllib.parse.unquote(parts.username or "root"),
            "password": urllib.parse.unquote(parts.password or ""),
            "db": parts.path.lstrip("/") or None,
            "charset": "utf8mb4",
            "autocommit": False,
            "connect_timeout": min(CONNECT_TIMEOUT, timeout),
        }
        self._conn: Any = None
        t = url.table
        self._create = (
            f"CREATE TABLE IF NOT EXISTS {t} (id BIGINT AUTO_INCREMENT PRIMARY KEY, "
            "received_at DOUBLE NOT NULL, peer VARCHAR(255) NOT NULL, body MEDIUMTEXT NOT NULL)"
            " ENGINE=InnoDB DEFAULT CHARSET=utf8mb4"
        )
        self._insert = f"INSERT INTO {t} (received_at, peer, body) VALUES (%s, %s, %s)"

    async def _connection(self) -> Any:
        if self._conn is not None and not self._conn.closed:
            return self._conn
        self._conn = None
        conn = await aiomysql.connect(**self._params)
        try:
            async with conn.cursor() as cur:
                # No note "table already exists" (aiomysql turns notes into Python
                # warnings on stderr at every connect).
                await cur.execute("SET SESSION sql_notes = 0")
                await cur.execute(self._create)
            await conn.commit()
        except BaseException:
            conn.close()
            raise
        self._conn = conn
        return conn

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()  # closes the socket at once, without a round trip

    async def open(self) -> None:
        try:
            await asyncio.wait_for(self._connection(), min(CONNECT_TIMEOUT, self.timeout))
        except ERRORS as e:
            self._drop()
            raise StoreUnavailable(one_line(e)) from e

    async def _write(self, rows: list[Row]) -> None:
        conn = await self._connection()
        async with conn.cursor() as cur:
            await cur.executemany(self._insert, rows)
        await conn.commit()

    async def append(self, rows: list[Row]) -> None:
        try:
            await asyncio.wait_for(self._write(rows), self.timeout)  # connect included
        except ERRORS as e:
            self._drop()
            raise StoreUnavailable(one_line(e)) from e
        except asyncio.CancelledError:
            self._drop()  # the connection is mid-statement: unusable
            raise

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                await asyncio.wait_for(conn.ensure_closed(), CONNECT_TIMEOUT)
            except ERRORS:
                conn.close()


def make_store(url: StoreURL, timeout: float = DEFAULT_TIMEOUT) -> MySQLStore:
    return MySQLStore(url, timeout)
