"""``aiotcp serve --app redis`` driven by the real clients and tools, on both loops, with
the real redis-server as the reference: the same commands to both, the same replies.

redis-py (sync and asyncio; RESP2 and RESP3), redis-cli (plain, ``-3``, ``--pipe``) and
redis-benchmark's default suite run unchanged. Raw RESP compares replies byte for byte,
Redis's error words included. Keys on the shared redis-server carry a prefix of this
run's own, and nothing is flushed there.
"""

from __future__ import annotations

import asyncio
import re
import subprocess
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
import redis.asyncio as aioredis

from aiotcp.apps.redis_keyspace import Keyspace, glob_regex, now_ms
from support.process import ServerProcess, run_aiotcp
from support.resp import RawResp, command
from support.services import service_url
from support.waiting import HANG_GUARD, wait_until

LOOPS = ("asyncio", "uvloop")


@pytest.fixture(scope="module", params=LOOPS)
def app_port(request: pytest.FixtureRequest) -> Iterator[int]:
    """One ``--app redis`` server per loop for the module (each test uses its own keys)."""
    with ServerProcess(["--app", "redis", "--no-access-log"], loop=str(request.param)) as s:
        yield s.port


@pytest.fixture(scope="module")
def ref_port() -> int:
    """The real redis-server (fails saying how to start it when it is not there)."""
    url = service_url("redis")
    port = redis.Redis.from_url(url).connection_pool.connection_kwargs.get("port", 6379)
    return int(port)


@pytest.fixture
def p() -> str:
    """A key prefix of this test's own."""
    return "t" + uuid.uuid4().hex[:10] + ":"


def on_both(app_port: int, ref_port: int, fn: Callable[[int], Any]) -> tuple[Any, Any]:
    return fn(app_port), fn(ref_port)


# ---- redis-py -----------------------------------------------------------------------


def scenario(r: redis.Redis, p: str) -> list[Any]:
    """What a user of redis-py does; the results, for comparing two servers."""
    out: list[Any] = [
        r.ping(), r.echo("hi"), r.set(p + "s", "v"), r.get(p + "s"), r.get(p + "nope"),
        r.set(p + "s", "w", nx=True), r.set(p + "s", "w", xx=True, get=True),
        r.set(p + "n", 10), r.incr(p + "n"), r.incrby(p + "n", 5), r.decr(p + "n"),
        r.decrby(p + "n", 3), r.append(p + "s", "xyz"), r.strlen(p + "s"),
        r.mset({p + "m1": "1", p + "m2": "2"}), r.mget(p + "m1", p + "nope", p + "m2"),
        r.setnx(p + "m1", "x"), r.set(p + "e", "v", ex=100), r.ttl(p + "e"),
        r.expire(p + "s", 50), r.ttl(p + "s"), r.persist(p + "s"), r.ttl(p + "s"),
        r.pexpire(p + "s", 50000), r.persist(p + "nope"), r.pttl(p + "nope"),
        r.exists(p + "s", p + "s", p + "nope"), r.type(p + "s"), r.type(p + "nope"),
        r.rpush(p + "l", "a", "b", "c"), r.lpush(p + "l", "z"), r.llen(p + "l"),
        r.lrange(p + "l", 0, -1), r.lrange(p + "l", 1, 2), r.lrange(p + "l", -2, 100),
        r.lindex(p + "l", -1), r.lindex(p + "l", 10), r.lpop(p + "l"), r.rpop(p + "l", 2),
        r.lpop(p + "nope"), r.type(p + "l"),
        r.hset(p + "h", mapping={"f": "1", "g": "2"}), r.hget(p + "h", "f"),
        r.hgetall(p + "h"), r.hincrby(p + "h", "f", 41), r.hdel(p + "h", "g", "zz"),
        r.hlen(p + "h"), r.hgetall(p + "nope"), r.hexists(p + "h", "f"),
        r.sadd(p + "set", "a", "a"), r.sismember(p + "set", "a"),
        r.sismember(p + "set", "b"), r.scard(p + "set"), r.smembers(p + "set"),
        r.srem(p + "set", "a", "b"), r.exists(p + "set"), r.sadd(p + "set", "x"),
        r.spop(p + "set"), r.spop(p + "nope"),
        r.zadd(p + "z", {"a": 1, "b": 2.5, "c": -3}), r.zadd(p + "z", {"a": 5}, ch=True),
        r.zrange(p + "z", 0, -1), r.zrange(p + "z", 0, -1, withscores=True),
        r.zrange(p + "z", 0, 1, desc=True, withscores=True), r.zscore(p + "z", "b"),
        r.zscore(p + "z", "nope"), r.zcard(p + "z"), r.zrem(p + "z", "c", "zz"),
        r.zpopmin(p + "z"), r.zpopmin(p + "z", 5), r.zcard(p + "z"),
        r.zadd(p + "z2", {"x": 1}, incr=True), r.zrange(p + "z2", "-inf", "+inf", byscore=True),
        r.delete(p + "s", p + "n", p + "nope"), sorted(r.keys(p + "m*")),
        sorted(r.keys(p + "m[12]")), sorted(r.keys(p + "?")),
    ]
    pipe = r.pipeline()  # MULTI/EXEC, as redis-py's default pipeline is
    pipe.set(p + "t", 1).incr(p + "t").get(p + "t").lpush(p + "t", "x")
    out.append([str(x) if isinstance(x, Exception) else x for x in pipe.execute(raise_on_error=False)])
    plain = r.pipeline(transaction=False)
    for i in range(50):
        plain.incr(p + "pl")
    out.append(plain.execute())
    for bad in (lambda: r.lpush(p + "t", "x"), lambda: r.incr(p + "h"),
                lambda: r.execute_command("NOSUCH", "a"), lambda: r.execute_command("GET")):
        try:
            bad()
        except redis.ResponseError as e:
            out.append(str(e))
    return out


@pytest.mark.parametrize("protocol", [2, 3])
def test_redis_py_gets_what_redis_gives(app_port: int, ref_port: int, p: str,
                                        protocol: int) -> None:
    def run(port: int) -> list[Any]:
        with redis.Redis(port=port, protocol=protocol, socket_timeout=HANG_GUARD) as r:
            return scenario(r, p)

    ours, theirs = on_both(app_port, ref_port, run)
    assert len(ours) == len(theirs)
    for i, (a, b) in enumerate(zip(ours, theirs)):
        assert a == b, f"step {i}: ours {a!r}, redis {b!r}"


@pytest.mark.parametrize("protocol", [2, 3])
def test_redis_asyncio_gets_what_redis_gives(app_port: int, ref_port: int, p: str,
                                             protocol: int) -> None:
    async def run(port: int) -> list[Any]:
        r = aioredis.Redis(port=port, protocol=protocol, socket_timeout=HANG_GUARD)
        try:
            out = [await r.ping(), await r.set(p + "a", "1"), await r.get(p + "a"),
                   await r.hset(p + "h", "f", "v"), await r.hgetall(p + "h"),
                   await r.zadd(p + "z", {"m": 1.5}), await r.zrange(p + "z", 0, -1,
                                                                       withscores=True),
                   await r.client_setname("me"), await r.client_getname()]
            async with r.pipeline() as pipe:
                pipe.incr(p + "c").incr(p + "c").get(p + "c")
                out.append(await pipe.execute())
            # many coroutines on one pool at once
            out.append(await asyncio.gather(*(r.incr(p + "g") for _ in range(100))))
            out.append(await r.get(p + "g"))
            return out
        finally:
            await r.aclose()

    ours, theirs = on_both(app_port, ref_port, lambda port: asyncio.run(run(port)))
    assert sorted(ours.pop(-2)) == sorted(theirs.pop(-2))
    assert ours == theirs


def test_hello_3_gives_the_facts_redis_py_checks(app_port: int) -> None:
    with redis.Redis(port=app_port, protocol=3) as r:
        facts = r.execute_command("HELLO", "3")
        assert facts[b"proto"] == 3 and facts[b"server"] == b"redis"
        assert r.execute_command("CLIENT", "SETINFO", "LIB-NAME", "x") in (b"OK", "OK", True)


# ---- raw RESP, byte for byte ---------------------------------------------------------

WRONGTYPE = "WRONGTYPE Operation against a key holding the wrong kind of value"
NOT_INT = "ERR value is not an integer or out of range"

# (set-up commands, the command, the error words Redis 7 sends). {p} is the key prefix.
ERRORS: list[tuple[list[tuple[str, ...]], tuple[str, ...], str]] = [
    ([], ("GET",), "ERR wrong number of arguments for 'get' command"),
    ([], ("get", "a", "b"), "ERR wrong number of arguments for 'get' command"),
    ([], ("FOO", "a", "b"), "ERR unknown command 'FOO', with args beginning with: 'a' 'b' "),
    ([], ("foo",), "ERR unknown command 'foo', with args beginning with: "),
    ([("SET", "{p}s", "v")], ("LPUSH", "{p}s", "x"), WRONGTYPE),
    ([("SET", "{p}s", "v")], ("HGET", "{p}s", "f"), WRONGTYPE),
    ([("LPUSH", "{p}l", "v")], ("GET", "{p}l"), WRONGTYPE),
    ([("SADD", "{p}t", "v")], ("ZADD", "{p}t", "1", "m"), WRONGTYPE),
    ([("SET", "{p}s", "v")], ("INCR", "{p}s"), NOT_INT),
    ([("SET", "{p}s", "1")], ("INCRBY", "{p}s", "x"), NOT_INT),
    ([("SET", "{p}s", "1")], ("INCRBY", "{p}s", "9223372036854775807"),
     "ERR increment or decrement would overflow"),
    ([], ("SET", "{p}k", "v", "EX", "x"), NOT_INT),
    ([], ("SET", "{p}k", "v", "EX", "0"), "ERR invalid expire time in 'set' command"),
    ([], ("SET", "{p}k", "v", "FOO"), "ERR syntax error"),
    ([], ("SET", "{p}k", "v", "NX", "XX"), "ERR syntax error"),
    ([], ("SETEX", "{p}k", "-1", "v"), "ERR invalid expire time in 'setex' command"),
    ([], ("EXPIRE", "{p}k", "x"), NOT_INT),
    ([], ("LRANGE", "{p}k", "a", "1"), NOT_INT),
    ([("LPUSH", "{p}l", "v")], ("LPOP", "{p}l", "-1"),
     "ERR value is out of range, must be positive"),
    ([], ("MSET", "a", "b", "c"), "ERR wrong number of arguments for 'mset' command"),
    ([], ("HSET", "{p}h", "f", "v", "g"), "ERR wrong number of arguments for 'hset' command"),
    ([("HSET", "{p}h", "f", "v")], ("HINCRBY", "{p}h", "f", "1"),
     "ERR hash value is not an integer"),
    ([], ("ZADD", "{p}z", "x", "m"), "ERR value is not a valid float"),
    ([], ("ZADD", "{p}z", "NX", "XX", "1", "m"),
     "ERR XX and NX options at the same time are not compatible"),
    ([], ("ZADD", "{p}z", "NX", "1"), "ERR syntax error"),
    ([], ("ZRANGE", "{p}z", "0", "1", "LIMIT", "0", "1"),
     "ERR syntax error, LIMIT is only supported in combination with either BYSCORE or BYLEX"),
    ([], ("XADD", "{p}x", "0-0", "f", "v"),
     "ERR The ID specified in XADD must be greater than 0-0"),
    ([("XADD", "{p}x", "5-5", "f", "v")], ("XADD", "{p}x", "5-4", "f", "v"),
     "ERR The ID specified in XADD is equal or smaller than the target stream top item"),
    ([], ("CLIENT", "NOPE"), "ERR unknown subcommand 'NOPE'. Try CLIENT HELP."),
    ([], ("CLIENT", "SETNAME", "a b"),
     "ERR Client names cannot contain spaces, newlines or special characters."),
    ([], ("CLIENT", "SETNAME"), "ERR wrong number of arguments for 'client|setname' command"),
    ([], ("HELLO", "4"), "NOPROTO unsupported protocol version"),
    ([], ("HELLO", "x"), "ERR Protocol version is not an integer or out of range"),
    ([], ("EXEC",), "ERR EXEC without MULTI"),
    ([], ("DISCARD",), "ERR DISCARD without MULTI"),
    ([], ("PING", "a", "b"), "ERR wrong number of arguments for 'ping' command"),
    ([], ("SELECT", "x"), NOT_INT),
]


def fill(args: tuple[str, ...], p: str) -> tuple[str, ...]:
    return tuple(a.replace("{p}", p) for a in args)


@pytest.mark.parametrize(("setup", "cmd", "words"), ERRORS,
                         ids=[" ".join(c) for _, c, _ in ERRORS])
def test_error_words_are_redis_own(app_port: int, ref_port: int, p: str,
                                   setup: list[tuple[str, ...]], cmd: tuple[str, ...],
                                   words: str) -> None:
    def run(port: int) -> bytes:
        with RawResp(port) as c:
            for s in setup:
                c.ask(*fill(s, p))
            return c.ask(*fill(cmd, p))

    ours, theirs = on_both(app_port, ref_port, run)
    assert theirs == b"-" + words.encode() + b"\r\n", "the table is not Redis's words"
    assert ours == theirs


# Commands whose raw replies must be the same bytes from both, in this order.
RAW: list[tuple[str, ...]] = [
    ("PING",), ("PING", "x"), ("ECHO", ""), ("SET", "{p}a", "1"), ("GET", "{p}a"),
    ("GET", "{p}none"), ("SETEX", "{p}x", "100", "v"), ("INCR", "{p}a"), ("SET", "{p}a", "v", "GET"),
    ("SET", "{p}a", "w", "NX", "GET"), ("SET", "{p}n", "v", "XX"), ("MGET", "{p}a", "{p}none"),
    ("SET", "{p}e", "v", "PX", "100000"), ("TTL", "{p}e"), ("TTL", "{p}a"), ("TTL", "{p}none"),
    ("EXPIRE", "{p}e", "10", "NX"), ("EXPIRE", "{p}e", "10", "XX"), ("EXPIRE", "{p}a", "-1"),
    ("EXISTS", "{p}a"), ("LPOP", "{p}none", "2"), ("RPUSH", "{p}l", "a", "b", "c"),
    ("LRANGE", "{p}l", "-100", "100"), ("LRANGE", "{p}l", "2", "1"), ("LPOP", "{p}l", "0"),
    ("LPOP", "{p}l", "5"), ("EXISTS", "{p}l"), ("HSET", "{p}h", "a", "1", "b", "2"),
    ("HGETALL", "{p}h"), ("HMGET", "{p}h", "a", "x"), ("HINCRBY", "{p}h", "a", "-5"),
    ("SADD", "{p}s", "m"), ("SMEMBERS", "{p}s"), ("SPOP", "{p}s", "3"), ("SPOP", "{p}none", "1"),
    ("ZADD", "{p}z", "1", "a", "2", "b", "3", "c"), ("ZADD", "{p}z", "GT", "CH", "0", "a", "5", "b"),
    ("ZRANGE", "{p}z", "0", "-1", "WITHSCORES"), ("ZRANGE", "{p}z", "(1", "+inf", "BYSCORE"),
    ("ZRANGE", "{p}z", "0", "-1", "REV"), ("ZRANGE", "{p}z", "-inf", "+inf", "BYSCORE",
                                             "LIMIT", "1", "1", "WITHSCORES"),
    ("ZADD", "{p}z", "INCR", "2", "a"), ("ZSCORE", "{p}z", "a"), ("ZPOPMIN", "{p}z"),
    ("ZPOPMIN", "{p}z", "10"), ("ZPOPMIN", "{p}none"), ("TYPE", "{p}z"),
    ("XADD", "{p}x", "1-1", "f", "v"), ("XADD", "{p}x", "1-*", "f", "v"), ("XLEN", "{p}x"),
    ("MULTI",), ("SET", "{p}m", "1"), ("INCR", "{p}m"), ("NOSUCH",), ("EXEC",),
    ("MULTI",), ("SET", "{p}m", "1"), ("INCR", "{p}m"), ("LPUSH", "{p}m", "x"), ("EXEC",),
    ("MULTI",), ("INCR", "{p}m"), ("DISCARD",), ("GET", "{p}m"),
    ("CLIENT", "SETNAME", "tester"), ("CLIENT", "GETNAME"), ("SELECT", "0"),
    ("DEL", "{p}a", "{p}h", "{p}none"),
]


@pytest.mark.parametrize("protocol", [2, 3])
def test_raw_replies_are_redis_bytes(app_port: int, ref_port: int, p: str,
                                     protocol: int) -> None:
    def run(port: int) -> list[bytes]:
        with RawResp(port) as c:
            c.ask("HELLO", str(protocol))
            return [c.ask(*fill(cmd, p)) for cmd in RAW]

    ours, theirs = on_both(app_port, ref_port, run)
    for cmd, a, b in zip(RAW, ours, theirs):
        assert a == b, f"{' '.join(cmd)}: ours {a!r}, redis {b!r}"


def test_a_pipeline_of_a_thousand_commands_in_one_write(app_port: int, ref_port: int,
                                                        p: str) -> None:
    batch = b"".join(command("INCR", p + "c") + command("GET", p + "c") for _ in range(500))

    def run(port: int) -> list[bytes]:
        with RawResp(port) as c:
            c.send(batch)
            return [c.reply() for _ in range(1000)]

    ours, theirs = on_both(app_port, ref_port, run)
    assert ours == theirs
    assert ours[-1] == b"$3\r\n500\r\n"


def test_inline_commands_as_telnet_sends_them(app_port: int, ref_port: int, p: str) -> None:
    lines = [f"SET {p}q \"a b\\n\"\r\n", f"GET {p}q\r\n", "PING\r\n", f"ECHO 'it\\'s'\n"]

    def run(port: int) -> list[bytes]:
        with RawResp(port) as c:
            out = []
            for line in lines:
                c.send(line.encode())
                out.append(c.reply())
            return out

    ours, theirs = on_both(app_port, ref_port, run)
    assert ours == theirs == [b"+OK\r\n", b"$4\r\na b\n\r\n", b"+PONG\r\n", b"$4\r\nit's\r\n"]


# hostile input -> the reply (then the connection closes), the same as Redis's
HOSTILE: list[tuple[str, bytes, bytes]] = [
    ("multibulk length not a number", b"*x\r\n", b"-ERR Protocol error: invalid multibulk length\r\n"),
    ("bulk length not a number", b"*1\r\n$x\r\n", b"-ERR Protocol error: invalid bulk length\r\n"),
    ("bulk length negative", b"*1\r\n$-5\r\n", b"-ERR Protocol error: invalid bulk length\r\n"),
    ("bulk length absurd", b"*1\r\n$99999999999999\r\n",
     b"-ERR Protocol error: invalid bulk length\r\n"),
    ("not a bulk", b"*1\r\nx\r\n", b"-ERR Protocol error: expected '$', got 'x'\r\n"),
    ("a nested array", b"*1\r\n*1\r\n$1\r\na\r\n", b"-ERR Protocol error: expected '$', got '*'\r\n"),
    ("unbalanced quotes", b'SET a "b\r\n', b"-ERR Protocol error: unbalanced quotes in request\r\n"),
]


@pytest.mark.parametrize(("data", "reply"), [(d, r) for _, d, r in HOSTILE],
                         ids=[n for n, _, _ in HOSTILE])
def test_hostile_input_is_answered_then_closed_as_redis_does(
    app_port: int, ref_port: int, data: bytes, reply: bytes
) -> None:
    def run(port: int) -> tuple[bytes, bytes, bool]:
        with RawResp(port) as c:
            c.send(command("PING") + data)
            return c.reply(), c.reply(), c.closed()

    ours, theirs = on_both(app_port, ref_port, run)
    assert ours == theirs == (b"+PONG\r\n", reply, True)


def test_a_multibulk_over_the_limit_is_refused_before_anything_is_buffered(app_port: int) -> None:
    with RawResp(app_port) as bad, RawResp(app_port) as good:
        bad.send(b"*1048577\r\n")
        assert bad.reply() == b"-ERR Protocol error: invalid multibulk length\r\n"
        assert bad.closed()
        bad2 = RawResp(app_port)
        bad2.send(b"*1\r\n$%d\r\n" % (16 * 1024 * 1024 + 1))  # over MAX_BULK_LEN, no payload
        assert bad2.reply() == b"-ERR Protocol error: invalid bulk length\r\n"
        assert bad2.closed()
        bad2.close()
        assert good.ask("PING") == b"+PONG\r\n"  # the other client never noticed


# ---- redis-cli and redis-benchmark -----------------------------------------------------


def cli(port: int, *args: str, stdin: bytes | None = None) -> str:
    done = subprocess.run(["redis-cli", "-p", str(port), *args], input=stdin,
                          capture_output=True, timeout=HANG_GUARD, check=False)
    return done.stdout.decode() + done.stderr.decode()


@pytest.mark.parametrize("resp3", [False, True])
def test_redis_cli_prints_what_it_prints_for_redis(app_port: int, ref_port: int, p: str,
                                                    resp3: bool) -> None:
    flags = ["-3"] if resp3 else []
    steps = [("SET", p + "k", "v"), ("GET", p + "k"), ("INCR", p + "k"),
             ("HSET", p + "h", "f", "1"), ("HGETALL", p + "h"), ("RPUSH", p + "l", "a", "b"),
             ("LRANGE", p + "l", "0", "-1"), ("ZADD", p + "z", "1.5", "m"),
             ("ZRANGE", p + "z", "0", "-1", "WITHSCORES"), ("TTL", p + "k"),
             ("GET", p + "none"), ("NOSUCH", "x")]

    def run(port: int) -> list[str]:
        return [cli(port, *flags, *step) for step in steps]

    ours, theirs = on_both(app_port, ref_port, run)
    assert ours == theirs
    assert ours[0] == "OK\n" and ours[1] == "v\n"


def test_redis_cli_pipe_mode(app_port: int, p: str) -> None:
    data = b"".join(command("SET", f"{p}{i}", i) for i in range(1000))
    out = cli(app_port, "--pipe", stdin=data)
    assert "errors: 0, replies: 1000" in out, out
    assert cli(app_port, "GET", f"{p}999") == "999\n"


def benchmark_names(output: str) -> list[str]:
    text = output.replace("\r", "\n")
    # A test that ends within a millisecond reports "inf requests per second".
    return re.findall(r"^(.+?): (?:[\d.]+|inf) requests per second", text, flags=re.M)


def test_redis_benchmark_default_suite_runs_with_no_error(app_port: int, ref_port: int) -> None:
    def run(port: int, n: int) -> str:
        done = subprocess.run(["redis-benchmark", "-p", str(port), "-q", "-n", str(n),
                               "-c", "10"], capture_output=True, timeout=300, check=False)
        assert done.returncode == 0, done.stderr
        return done.stdout.decode("utf-8", "replace") + done.stderr.decode("utf-8", "replace")

    expected = benchmark_names(run(ref_port, 100))  # the suite this redis-benchmark runs
    out = run(app_port, 2000)
    assert "rror" not in out, out
    assert benchmark_names(out) == expected
    assert len(expected) >= 15


# ---- the app's own rules --------------------------------------------------------------


def test_more_than_one_worker_is_refused_in_one_line() -> None:
    done = run_aiotcp("serve", "--app", "redis", "--workers", "2", "--port", "0")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "aiotcp serve: error: the redis app keeps its data in one process: "
        "--workers must be 0 or 1, not 2"]


def test_keys_expire_with_nobody_looking(app_port: int, p: str) -> None:
    with RawResp(app_port) as c:
        c.ask("SET", p + "gone", "v", "PX", "30")
        c.ask("SET", p + "kept", "v")
        # KEYS walks the keyspace without looking any key up: only active expiry deletes.
        wait_until(lambda: c.ask("EXISTS", p + "gone") == b":0\r\n" or None,
                   what="the key to expire")
        assert c.ask("EXISTS", p + "kept") == b":1\r\n"


def test_active_expiry_deletes_without_a_lookup() -> None:
    ks = Keyspace()
    ks.put(b"a", b"1")
    ks.put(b"b", b"2")
    ks.expire_at(b"a", now_ms() - 1)
    ks.expire_at(b"b", now_ms() + 60_000)
    assert set(ks.data) == {b"a", b"b"}  # nothing expires by itself ...
    assert ks.sweep(now_ms()) == 1  # ... until a sweep
    assert set(ks.data) == {b"b"} and set(ks.expires) == {b"b"}


def test_lazy_expiry_deletes_on_lookup() -> None:
    ks = Keyspace()
    ks.put(b"a", b"1")
    ks.expire_at(b"a", now_ms() - 1)
    assert ks.lookup(b"a") is None
    assert not ks.data and not ks.expires


def test_a_re_expired_key_keeps_only_its_last_deadline() -> None:
    ks = Keyspace()
    ks.put(b"a", b"1")
    ks.expire_at(b"a", now_ms() - 1)
    ks.expire_at(b"a", now_ms() + 60_000)
    assert ks.sweep(now_ms()) == 0 and ks.lookup(b"a") == b"1"


@pytest.mark.parametrize(("pattern", "yes", "no"), [
    (b"*", [b"", b"abc"], []),
    (b"a?c", [b"abc", b"a-c"], [b"ac", b"abbc"]),
    (b"h[ae]llo", [b"hallo", b"hello"], [b"hillo"]),
    (b"h[^e]llo", [b"hallo"], [b"hello"]),
    (b"h[a-c]llo", [b"hbllo"], [b"hdllo"]),
    (b"a\\*", [b"a*"], [b"ab"]),
    (b"a.b", [b"a.b"], [b"axb"]),
])
def test_keys_patterns_are_redis_globs(pattern: bytes, yes: list[bytes], no: list[bytes]) -> None:
    rx = glob_regex(pattern)
    assert all(rx.match(k) for k in yes)
    assert not any(rx.match(k) for k in no)
