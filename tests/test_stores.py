"""Stores: URLs, the driver check, and each real store's append, failure and recovery."""

from __future__ import annotations

import asyncio
import sys

import pytest

from aiotcp.stores import (
    Row,
    StoreError,
    StoreUnavailable,
    parse_store_url,
    redact,
    store_from_url,
)
from support.services import (
    execute,
    kind_of,
    rows,
)


def test_sqlite_urls_follow_sqlalchemy() -> None:
    assert parse_store_url("sqlite:///data/a.db").path == "data/a.db"
    assert parse_store_url("sqlite:////var/lib/a.db").path == "/var/lib/a.db"
    u = parse_store_url("sqlite:///a.db?table=inbox&commit=each")
    assert (u.table, u.commit, u.driver_url) == ("inbox", "each", "sqlite:///a.db")


@pytest.mark.parametrize("url, words", [
    ("foo://x/y", "unknown scheme 'foo'"),
    ("sqlite:///:memory:", "not durable"),
    ("sqlite://host/a.db", "sqlite:///relative/path"),
    ("sqlite:///a.db?table=a;drop", "plain identifier"),
    ("sqlite:///a.db?commit=sometimes", "commit must be one of group, each"),
])
def test_bad_urls_are_one_line_errors(url: str, words: str) -> None:
    with pytest.raises(StoreError, match=words) as e:
        parse_store_url(url)
    assert "\n" not in str(e.value)


def test_options_are_removed_before_the_driver_sees_the_url() -> None:
    u = parse_store_url("postgresql://u:pw@h:5/d?table=t1&sslmode=disable&commit=group")
    assert u.driver_url == "postgresql://u:pw@h:5/d?sslmode=disable"
    assert "pw" not in u.shown and u.table == "t1"


def test_passwords_are_hidden() -> None:
    assert redact("mysql://root:s3cret@h/db") == "mysql://root:***@h/db"
    assert redact("postgresql://u@h/d?password=s3cret") == "postgresql://u@h/d?password=***"
    assert redact("sqlite:///a.db") == "sqlite:///a.db"


@pytest.mark.parametrize("url, extra", [
    ("postgresql://u@h/d", "postgres"), ("mysql://u@h/d", "mysql"),
])
def test_a_missing_driver_names_the_extra(
    monkeypatch: pytest.MonkeyPatch, url: str, extra: str
) -> None:
    driver = "asyncpg" if extra == "postgres" else "aiomysql"
    monkeypatch.setitem(sys.modules, driver, None)  # import raises ImportError
    monkeypatch.delitem(sys.modules, f"aiotcp.stores.{extra if extra == 'mysql' else 'postgres'}",
                        raising=False)
    with pytest.raises(StoreError) as e:
        store_from_url("mysql://root:pw@h/d" if extra == "mysql" else url)
    assert f"pip install 'aiotcp[{extra}]'" in str(e.value)
    assert "pw" not in str(e.value)


ROWS: list[Row] = [(1.5, "127.0.0.1:1", "你好"), (2.5, "[::1]:2", ""), (3.5, "h:3", "a b\tc")]


def test_append_commits_rows_and_recovers_after_the_table_is_dropped(store_url: str) -> None:
    async def main() -> None:
        store = store_from_url(store_url)
        await store.open()
        try:
            await store.append(ROWS[:2])
            await store.append(ROWS[2:])
            assert rows(store_url) == [(p, b) for _, p, b in ROWS]
            execute(store_url, f"DROP TABLE {store.url.table}")
            with pytest.raises(StoreUnavailable) as e:
                await store.append(ROWS[:1])
            assert "\n" not in str(e.value)
            await store.append(ROWS[:1])  # reconnected, table made again
            assert rows(store_url) == [("127.0.0.1:1", "你好")]
        finally:
            await store.close()
            await store.close()  # closing twice is harmless

    asyncio.run(main())


def test_received_at_is_kept(store_url: str) -> None:
    async def main() -> None:
        store = store_from_url(store_url)
        await store.open()
        try:
            await store.append([(1700000000.25, "p", "b")])
        finally:
            await store.close()

    asyncio.run(main())
    table = parse_store_url(store_url).table
    assert execute(store_url, f"SELECT received_at FROM {table}") == [(1700000000.25,)]
    assert kind_of(store_url) in ("sqlite", "postgres", "mysql")


def test_an_unreachable_store_fails_to_open_with_one_line() -> None:
    async def main() -> str:
        store = store_from_url("postgresql://postgres:pw@127.0.0.1:1/test")
        with pytest.raises(StoreUnavailable) as e:
            await store.open()
        await store.close()
        return str(e.value)

    reason = asyncio.run(main())
    assert reason and "\n" not in reason
