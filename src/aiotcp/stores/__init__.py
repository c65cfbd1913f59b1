"""Stores for durable acks: SQLite, PostgreSQL (asyncpg), MySQL/MariaDB (aiomysql).

Every store keeps the same contract (:class:`Store`): ``open()`` connects and creates
the table if missing; ``append(rows)`` writes the rows in one transaction and returns
only once it is committed (durable); ``close()`` lets go. A failed ``append`` raises
:class:`StoreUnavailable` and leaves the store ready to reconnect on the next call, so a
store that comes back is used again without a restart.

:func:`store_from_url` chooses the store from its URL (SQLAlchemy's spelling):

``sqlite:///PATH`` (relative), ``sqlite:////abs/path``     SQLite in WAL mode, synchronous=FULL
``postgresql://user:pass@host:port/db``                     PostgreSQL through asyncpg
``mysql://user:pass@host:port/db``                          MySQL or MariaDB through aiomysql

Query options, removed before the URL reaches a driver: ``table=NAME`` (default
``messages``) and ``commit=group|each`` (``each``: one transaction per message, the
baseline group commit is measured against).
"""

from __future__ import annotations

import importlib
import re
import urllib.parse
from dataclasses import dataclass
from typing import Protocol

__all__ = [
    "Row",
    "Store",
    "StoreError",
    "StoreURL",
    "StoreUnavailable",
    "one_line",
    "parse_store_url",
    "redact",
    "store_from_url",
]

# (received_at as Unix seconds, the client's "host:port", the message)
Row = tuple[float, str, str]

DEFAULT_TABLE = "messages"
# ``--store-timeout``: a connect or commit of a network store (PostgreSQL, MySQL) that
# takes longer fails, and its messages are answered ERR unavailable; a healthy commit
# takes milliseconds, a reconnect well under a second; 10 s rides out a loaded machine's
# fsync stalls.
DEFAULT_TIMEOUT = 10.0
# A table name goes into SQL text (drivers bind values, not identifiers), so it is held
# to a plain lower-case identifier (one that no database folds or needs quoted); 63 is
# PostgreSQL's identifier limit, the smallest of the three.
TABLE_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}\Z")
COMMIT_MODES = ("group", "each")

# scheme -> (module of the store, the driver it imports, the extra that brings it)
SCHEMES: dict[str, tuple[str, str, str]] = {
    "sqlite": ("aiotcp.stores.sqlite", "sqlite3", ""),
    "postgresql": ("aiotcp.stores.postgres", "asyncpg", "postgres"),
    "postgres": ("aiotcp.stores.postgres", "asyncpg", "postgres"),
    "mysql": ("aiotcp.stores.mysql", "aiomysql", "mysql"),
    "mariadb": ("aiotcp.stores.mysql", "aiomysql", "mysql"),
}


class StoreError(Exception):
    """A store URL that cannot be used as given: the message is one line naming it."""


class StoreUnavailable(Exception):
    """The store failed to commit (or to open): the message is the reason, one line."""


class Store(Protocol):
    """What the ingest app needs of a store (see the module doc)."""

    url: StoreURL

    async def open(self) -> None:
        """Connect and create the table if missing. Raises StoreUnavailable."""

    async def append(self, rows: list[Row]) -> None:
        """Write ``rows`` in one transaction, committed on return. Raises StoreUnavailable."""

    async def close(self) -> None:
        """Let go of the connection; never raises."""


@dataclass(frozen=True)
class StoreURL:
    """A parsed store URL: ``driver_url`` is what the driver sees (options removed)."""

    scheme: str
    driver_url: str
    table: str
    commit: str
    shown: str  # the URL with its password hidden, for messages

    @property
    def path(self) -> str:
        """sqlite: the file path (``sqlite:///a.db`` -> ``a.db``, ``sqlite:////a.db`` -> ``/a.db``)."""
        return self.driver_url.partition(":///")[2]


def one_line(e: BaseException) -> str:
    """An exception as a one-line reason (a driver's message may span lines)."""
    return " ".join(str(e).split()) or type(e).__name__


def redact(url: str) -> str:
    """``url`` with its password (in the user part or a ``password=`` option) as ``***``."""
    parts = urllib.parse.urlsplit(url)
    if parts.password is None and "password=" not in parts.query:
        return url  # unchanged: urlunsplit would respell sqlite:///x as sqlite:/x
    if parts.password is not None:
        netloc = parts.netloc.rpartition("@")
        user = netloc[0].partition(":")[0]
        parts = parts._replace(netloc=f"{user}:***@{netloc[2]}")
    if "password=" in parts.query:
        query = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
        hidden = [(k, "***" if k == "password" else v) for k, v in query]
        parts = parts._replace(query=urllib.parse.urlencode(hidden, safe="*"))
    return urllib.parse.urlunsplit(parts)


def parse_store_url(url: str) -> StoreURL:
    """Parse and check a store URL. Raises StoreError with a one-line reason."""
    shown = redact(url)
    parts = urllib.parse.urlsplit(url)
    scheme = parts.scheme.partition("+")[0].lower()
    if scheme not in SCHEMES:
        choices = ", ".join(f"{s}://" for s in SCHEMES)
        raise StoreError(f"store {shown}: unknown scheme {parts.scheme!r} (one of {choices})")
    query = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
    options = {k: v for k, v in query if k in ("table", "commit")}
    rest = [(k, v) for k, v in query if k not in ("table", "commit")]
    table = options.get("table", DEFAULT_TABLE)
    if not TABLE_NAME.match(table):
        raise StoreError(f"store {shown}: table must be a plain identifier, not {table!r}")
    commit = options.get("commit", "group")
    if commit not in COMMIT_MODES:
        raise StoreError(f"store {shown}: commit must be one of {', '.join(COMMIT_MODES)}")
    driver_url = urllib.parse.urlunsplit(
        parts._replace(scheme=scheme, query=urllib.parse.urlencode(rest))
    )
    if scheme == "sqlite":
        path = parts.path.removeprefix("/")
        if parts.netloc or not path or path == ":memory:":
            raise StoreError(
                f"store {shown}: expected sqlite:///relative/path or sqlite:////absolute/path "
                "(a file: an in-memory database is not durable)"
            )
        driver_url = "sqlite:///" + path
    return StoreURL(scheme, driver_url, table, commit, shown)


def store_from_url(url: str, timeout: float = DEFAULT_TIMEOUT) -> Store:
    """The (unopened) store a URL names, its connects and commits bounded by
    ``timeout`` seconds (network stores). Raises StoreError: unknown scheme, bad option,
    or a driver that is not installed (naming the ``pip install`` that brings it)."""
    parsed = parse_store_url(url)
    module_name, driver, extra = SCHEMES[parsed.scheme]
    try:
        importlib.import_module(driver)
        module = importlib.import_module(module_name)
    except ImportError as e:
        hint = f": pip install 'aiotcp[{extra}]'" if extra else ""
        raise StoreError(f"store {parsed.shown} needs {e.name or driver}{hint}") from None
    store: Store = module.make_store(parsed, timeout)
    return store
