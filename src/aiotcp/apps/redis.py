"""The ``redis`` app: an in-memory Redis on ``aiotcp.resp``. ``aiotcp serve --app redis``.

Enough of Redis 7 that redis-cli, redis-py (sync and asyncio, RESP2 and RESP3) and
redis-benchmark's default suite work unchanged: connection commands (PING, ECHO, HELLO,
QUIT, SELECT 0, CLIENT, COMMAND, INFO, CONFIG GET, DBSIZE, FLUSHDB, FLUSHALL, TIME),
keys (DEL, EXISTS, TYPE, KEYS, EXPIRE, PEXPIRE, TTL, PTTL, PERSIST), strings (GET, SET
with EX/PX/EXAT/PXAT/KEEPTTL/NX/XX/GET, SETEX, PSETEX, SETNX, GETDEL, MGET, MSET, INCR,
INCRBY, DECR, DECRBY, APPEND, STRLEN), and lists, hashes, sets, sorted sets and XADD
(``aiotcp.apps.redis_types``). Replies and errors are Redis's, word for word.

What it is: a Redis-compatible service for tests and demos, and the pattern for a
service of your own commands. What it is not: persistent (the data lives in the memory
of one process, gone when it stops) or replicated; hence ``--workers`` above 1 is
refused (each worker would hold a different keyspace).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import AsyncGenerator
from typing import TYPE_CHECKING, Any

from aiotcp.app import App, AppError, State
from aiotcp.apps import redis_types
from aiotcp.apps.redis_keyspace import SWEEP_INTERVAL, Keyspace, glob_regex, now_ms, type_name
from aiotcp.resp import MAX_BULK_LEN, OK, Client, Commands, RespError, Simple, string2ll
from aiotcp.resp.builtin import REDIS_VERSION

if TYPE_CHECKING:
    from aiotcp.config import Config

__all__ = ["WORKERS_REFUSED", "make_app", "make_commands"]

WORKERS_REFUSED = (
    "the redis app keeps its data in one process: {workers} must be 0 or 1"
)

NOT_INT = RespError("ERR value is not an integer or out of range")
SYNTAX = RespError("ERR syntax error")
OVERFLOW = RespError("ERR increment or decrement would overflow")
WRONGTYPE = RespError("WRONGTYPE Operation against a key holding the wrong kind of value")
_INT64 = 2**63

# What CONFIG GET answers (redis-benchmark asks for save and appendonly; clients for
# databases and maxmemory): this service's truth in Redis's names.
CONFIG = {
    "save": "", "appendonly": "no", "databases": "1", "maxmemory": "0",
    "maxmemory-policy": "noeviction", "maxclients": "10000", "timeout": "0",
    "proto-max-bulk-len": str(MAX_BULK_LEN), "hz": "10",
}


def integer(b: bytes) -> int:
    """``b`` as Redis reads an integer argument; raises ``ERR value is not an integer``."""
    v = string2ll(b)
    if v is None:
        raise NOT_INT
    return v


def make_commands() -> tuple[Commands, Keyspace]:
    """The redis app's registry and the keyspace it serves."""
    commands = Commands()
    ks = Keyspace()
    started = time.time()
    register_server(commands, ks, started)
    register_keys(commands, ks)
    register_strings(commands, ks)
    redis_types.register(commands, ks)
    return commands, ks


def make_app(config: Config) -> App:
    """The redis app. Refused (AppError) with more than one worker."""
    if config.worker_count() > 1:
        raise AppError(WORKERS_REFUSED.format(workers="--workers"))
    commands, ks = make_commands()
    app = commands.app()

    @app.lifespan
    async def active_expiry(state: State) -> AsyncGenerator[None, None]:
        task = asyncio.get_running_loop().create_task(_sweep_forever(ks))
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    return app


async def _sweep_forever(ks: Keyspace) -> None:
    while True:
        await asyncio.sleep(SWEEP_INTERVAL)
        if ks.expires:
            ks.sweep(now_ms())


# ---- server and connection ----------------------------------------------------------


def register_server(commands: Commands, ks: Keyspace, started: float) -> None:
    c = commands.command

    @c("SELECT", 2, flags=("fast",), group="connection")
    def select(client: Client, args: list[bytes]) -> Any:
        if integer(args[1]) != 0:
            return RespError("ERR DB index is out of range")
        return OK

    @c("DBSIZE", 1, flags=("readonly", "fast"), group="server")
    def dbsize(client: Client, args: list[bytes]) -> Any:
        return len(ks.data)

    def flush(client: Client, args: list[bytes]) -> Any:
        if len(args) > 2 or (len(args) == 2 and args[1].upper() not in (b"ASYNC", b"SYNC")):
            return SYNTAX
        ks.clear()
        return OK

    c("FLUSHDB", -1, flags=("write",), group="server")(flush)
    c("FLUSHALL", -1, flags=("write",), group="server")(flush)

    @c("TIME", 1, flags=("fast",), group="server")
    def time_(client: Client, args: list[bytes]) -> Any:
        now = time.time()
        return [b"%d" % int(now), b"%d" % int((now % 1) * 1_000_000)]

    @c("INFO", -1, group="server")
    def info(client: Client, args: list[bytes]) -> Any:
        from aiotcp import __version__
        wanted = {a.lower().decode("utf-8", "replace") for a in args[1:]}
        everything = not wanted or wanted & {"all", "everything", "default"}
        sections: dict[str, dict[str, Any]] = {
            "server": {
                "redis_version": REDIS_VERSION, "redis_mode": "standalone",
                "aiotcp_version": __version__, "process_id": os.getpid(),
                "uptime_in_seconds": int(time.time() - started), "hz": 10,
            },
            "clients": {"connected_clients": 1},
            "persistence": {"loading": 0, "rdb_changes_since_last_save": 0,
                            "aof_enabled": 0},
            "stats": {"expired_keys": 0},
            "replication": {"role": "master", "connected_slaves": 0},
            "keyspace": ({"db0": f"keys={len(ks.data)},expires={len(ks.expires)},avg_ttl=0"}
                         if ks.data else {}),
        }
        lines: list[str] = []
        for name, fields in sections.items():
            if everything or name in wanted:
                lines.append("# " + name.capitalize())
                lines.extend(f"{k}:{v}" for k, v in fields.items())
                lines.append("")
        return "\r\n".join(lines)

    @c("CONFIG GET", -3, group="server")
    def config_get(client: Client, args: list[bytes]) -> Any:
        out: dict[str, str] = {}
        for pattern in args[2:]:
            rx = glob_regex(pattern.lower())
            out.update((k, v) for k, v in CONFIG.items() if rx.match(k.encode()))
        return out

    @c("CONFIG RESETSTAT", 2, group="server")
    def config_resetstat(client: Client, args: list[bytes]) -> Any:
        return OK


# ---- keys -------------------------------------------------------------------------------


def register_keys(commands: Commands, ks: Keyspace) -> None:
    c = commands.command
    data = ks.data

    @c("DEL", -2, flags=("write",), keys=(1, -1, 1), group="keyspace")
    def del_(client: Client, args: list[bytes]) -> Any:
        return sum(ks.lookup(k) is not None and ks.delete(k) for k in args[1:])

    c("UNLINK", -2, flags=("write", "fast"), keys=(1, -1, 1), group="keyspace")(del_)

    @c("EXISTS", -2, flags=("readonly", "fast"), keys=(1, -1, 1), group="keyspace")
    def exists(client: Client, args: list[bytes]) -> Any:
        return sum(ks.lookup(k) is not None for k in args[1:])

    @c("TYPE", 2, flags=("readonly", "fast"), keys=(1, 1, 1), group="keyspace")
    def type_(client: Client, args: list[bytes]) -> Any:
        return Simple(type_name(ks.lookup(args[1])))

    @c("KEYS", 2, flags=("readonly",), group="keyspace")
    def keys(client: Client, args: list[bytes]) -> Any:
        if args[1] == b"*":
            return [k for k in list(data) if ks.lookup(k) is not None]
        match = glob_regex(args[1]).match
        return [k for k in list(data) if match(k) and ks.lookup(k) is not None]

    def expire_cmd(name: str, unit: int) -> Any:
        invalid = RespError(f"ERR invalid expire time in '{name}' command")

        def expire(client: Client, args: list[bytes]) -> Any:
            amount = integer(args[2])
            flags = {a.upper() for a in args[3:]}
            if not flags <= {b"NX", b"XX", b"GT", b"LT"}:
                return RespError(f"ERR Unsupported option {args[3].decode('utf-8', 'replace')}")
            if b"NX" in flags and len(flags) > 1:
                return RespError("ERR NX and XX, GT or LT options at the same time are not compatible")
            if b"GT" in flags and b"LT" in flags:
                return RespError("ERR GT and LT options at the same time are not compatible")
            if abs(amount) > _INT64 // (unit * 1000):
                return invalid
            key = args[1]
            if ks.lookup(key) is None:
                return 0
            deadline = now_ms() + amount * unit
            current = ks.expires.get(key)
            if (b"NX" in flags and current is not None) or (b"XX" in flags and current is None):
                return 0
            if b"GT" in flags and (current is None or deadline <= current):
                return 0
            if b"LT" in flags and current is not None and deadline >= current:
                return 0
            if amount <= 0:
                ks.delete(key)
            else:
                ks.expire_at(key, deadline)
            return 1

        return expire

    c("EXPIRE", -3, flags=("write", "fast"), keys=(1, 1, 1), group="keyspace")(
        expire_cmd("expire", 1000))
    c("PEXPIRE", -3, flags=("write", "fast"), keys=(1, 1, 1), group="keyspace")(
        expire_cmd("pexpire", 1))

    @c("TTL", 2, flags=("readonly", "fast"), keys=(1, 1, 1), group="keyspace")
    def ttl(client: Client, args: list[bytes]) -> Any:
        ms = ks.ttl_ms(args[1])
        return ms if ms < 0 else (ms + 500) // 1000

    @c("PTTL", 2, flags=("readonly", "fast"), keys=(1, 1, 1), group="keyspace")
    def pttl(client: Client, args: list[bytes]) -> Any:
        return ks.ttl_ms(args[1])

    @c("PERSIST", 2, flags=("write", "fast"), keys=(1, 1, 1), group="keyspace")
    def persist(client: Client, args: list[bytes]) -> Any:
        return int(ks.lookup(args[1]) is not None and ks.persist(args[1]))


# ---- strings ----------------------------------------------------------------------------


def register_strings(commands: Commands, ks: Keyspace) -> None:
    c = commands.command
    data, expires = ks.data, ks.expires

    @c("GET", 2, flags=("readonly", "fast"), keys=(1, 1, 1), group="string")
    def get(client: Client, args: list[bytes]) -> Any:
        # The hot path: one dict lookup, the deadline only if some key has one.
        key = args[1]
        value = data.get(key)
        if value is None:
            return None
        if expires and key in expires:
            value = ks.lookup(key)
            if value is None:
                return None
        if type(value) is not bytes:
            raise WRONGTYPE
        return value

    def get_string(key: bytes) -> bytes | None:
        value = ks.lookup(key)
        if value is not None and type(value) is not bytes:
            raise WRONGTYPE
        return value

    invalid_set = RespError("ERR invalid expire time in 'set' command")

    @c("SET", -3, flags=("write",), keys=(1, 1, 1), group="string")
    def set_(client: Client, args: list[bytes]) -> Any:
        key = args[1]
        if len(args) == 3:  # the hot path: SET key value
            data[key] = args[2]
            if expires:
                expires.pop(key, None)
            return OK
        nx = xx = get_old = keep = False
        deadline: float | None = None
        i = 3
        while i < len(args):
            opt = args[i].upper()
            if opt == b"NX" and not xx:
                nx = True
            elif opt == b"XX" and not nx:
                xx = True
            elif opt == b"GET":
                get_old = True
            elif opt == b"KEEPTTL" and deadline is None:
                keep = True
            elif opt in (b"EX", b"PX", b"EXAT", b"PXAT") and deadline is None and not keep \
                    and i + 1 < len(args):
                amount = integer(args[i + 1])
                unit = 1000 if opt in (b"EX", b"EXAT") else 1
                if amount <= 0 or amount > _INT64 // 1000 // unit:
                    return invalid_set
                ms = float(amount * unit)
                if opt in (b"EXAT", b"PXAT"):  # absolute (wall clock) -> monotonic
                    ms -= time.time() * 1000
                deadline = now_ms() + ms
                i += 1
            else:
                return SYNTAX
            i += 1
        old = get_string(key) if get_old else ks.lookup(key)
        if (nx and old is not None) or (xx and old is None):
            return old if get_old else None
        ks.put(key, args[2], keep_ttl=keep)
        if deadline is not None:
            ks.expire_at(key, deadline)
        return old if get_old else OK

    @c("SETNX", 3, flags=("write", "fast"), keys=(1, 1, 1), group="string")
    def setnx(client: Client, args: list[bytes]) -> Any:
        if ks.lookup(args[1]) is not None:
            return 0
        ks.put(args[1], args[2])
        return 1

    def setex_cmd(name: str, unit: int) -> Any:
        invalid = RespError(f"ERR invalid expire time in '{name}' command")

        def setex(client: Client, args: list[bytes]) -> Any:
            amount = integer(args[2])
            if amount <= 0 or amount > _INT64 // 1000 // unit:
                return invalid
            ks.put(args[1], args[3])
            ks.expire_at(args[1], now_ms() + amount * unit)
            return OK

        return setex

    c("SETEX", 4, flags=("write",), keys=(1, 1, 1), group="string")(setex_cmd("setex", 1000))
    c("PSETEX", 4, flags=("write",), keys=(1, 1, 1), group="string")(setex_cmd("psetex", 1))

    @c("GETDEL", 2, flags=("write", "fast"), keys=(1, 1, 1), group="string")
    def getdel(client: Client, args: list[bytes]) -> Any:
        value = get_string(args[1])
        if value is not None:
            ks.delete(args[1])
        return value

    @c("MGET", -2, flags=("readonly", "fast"), keys=(1, -1, 1), group="string")
    def mget(client: Client, args: list[bytes]) -> Any:
        out = []
        for k in args[1:]:
            v = ks.lookup(k)
            out.append(v if type(v) is bytes else None)
        return out

    @c("MSET", -3, flags=("write",), keys=(1, -1, 2), group="string")
    def mset(client: Client, args: list[bytes]) -> Any:
        if len(args) % 2 == 0:
            return RespError("ERR wrong number of arguments for 'mset' command")
        for i in range(1, len(args), 2):
            ks.put(args[i], args[i + 1])
        return OK

    def incr_by(key: bytes, by: int) -> Any:
        old = get_string(key)
        if old is None:
            n = 0
        else:
            parsed = string2ll(old)
            if parsed is None:
                raise NOT_INT
            n = parsed
        n += by
        if not -_INT64 <= n < _INT64:
            raise OVERFLOW
        ks.put(key, b"%d" % n, keep_ttl=True)
        return n

    @c("INCR", 2, flags=("write", "fast"), keys=(1, 1, 1), group="string")
    def incr(client: Client, args: list[bytes]) -> Any:
        return incr_by(args[1], 1)

    @c("DECR", 2, flags=("write", "fast"), keys=(1, 1, 1), group="string")
    def decr(client: Client, args: list[bytes]) -> Any:
        return incr_by(args[1], -1)

    @c("INCRBY", 3, flags=("write", "fast"), keys=(1, 1, 1), group="string")
    def incrby(client: Client, args: list[bytes]) -> Any:
        return incr_by(args[1], integer(args[2]))

    @c("DECRBY", 3, flags=("write", "fast"), keys=(1, 1, 1), group="string")
    def decrby(client: Client, args: list[bytes]) -> Any:
        by = integer(args[2])
        if by == -_INT64:
            return RespError("ERR decrement would overflow")
        return incr_by(args[1], -by)

    @c("APPEND", 3, flags=("write",), keys=(1, 1, 1), group="string")
    def append(client: Client, args: list[bytes]) -> Any:
        old = get_string(args[1])
        value = args[2] if old is None else old + args[2]
        ks.put(args[1], value, keep_ttl=True)
        return len(value)

    @c("STRLEN", 2, flags=("readonly", "fast"), keys=(1, 1, 1), group="string")
    def strlen(client: Client, args: list[bytes]) -> Any:
        value = get_string(args[1])
        return 0 if value is None else len(value)
