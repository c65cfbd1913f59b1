"""aiotcp.resp without a server: the codec fed whole, byte by byte, with trailing bytes
and in any chunking; hostile input refused with Redis's words, in bounded memory; replies
encoded per protocol; the command registry's rules (arity, unknown commands, errors,
async commands, QUIT, HELLO in the middle of a read)."""

from __future__ import annotations

import ast
import asyncio
import inspect
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aiotcp import ProtocolError, resp
from aiotcp.resp import codec as codec_module
from aiotcp.resp import inline as inline_module
from aiotcp.resp import values as values_module
from support.resp import command

MAX_FRAME = 1024


def feed_all(chunks: list[bytes], max_frame: int = MAX_FRAME, **kw: Any) -> list[list[bytes]]:
    c = resp.RespCodec(max_frame, **kw)
    out: list[list[bytes]] = []
    for chunk in chunks:
        out.extend(c.feed(chunk))
    return out


# request bytes -> the commands in them
REQUESTS: list[tuple[bytes, list[list[bytes]]]] = [
    (command("GET", "a"), [[b"GET", b"a"]]),
    (command("SET", "k", "v") * 3, [[b"SET", b"k", b"v"]] * 3),
    (command("SET", "k", b"a\r\nb"), [[b"SET", b"k", b"a\r\nb"]]),  # CRLF inside a bulk
    (command("SET", "k", b"a\r\nb") * 3, [[b"SET", b"k", b"a\r\nb"]] * 3),
    (command("SET", "k", "v") + command("SET", "k", b"\r\n\r\n"),
     [[b"SET", b"k", b"v"], [b"SET", b"k", b"\r\n\r\n"]]),
    (command("GET", "a") + command("SET", "k", "v") + command("GET", "bb"),
     [[b"GET", b"a"], [b"SET", b"k", b"v"], [b"GET", b"bb"]]),
    (command("GET", "$1") * 2, [[b"GET", b"$1"]] * 2),  # a payload that looks like a header
    (command("ECHO", "*2") + command("ECHO", "x"), [[b"ECHO", b"*2"], [b"ECHO", b"x"]]),
    (command("SET", "k", b""), [[b"SET", b"k", b""]]),
    (command("SET", "k", b"x" * 2000), [[b"SET", b"k", b"x" * 2000]]),  # past the fast path
    (command("MSET", *["k", "v"] * 40), [[b"MSET", *[b"k", b"v"] * 40]]),  # 81 args
    (b"*0\r\n*-1\r\n" + command("PING"), [[b"PING"]]),  # empty multibulks are skipped
    (b"PING\r\n", [[b"PING"]]),
    (b"PING\n", [[b"PING"]]),
    (b"\r\n\r\nPING\r\n", [[b"PING"]]),  # empty inline lines are skipped
    (b"SET k  v\r\n", [[b"SET", b"k", b"v"]]),
    (b'SET k "a b\\n\\x41"\r\n', [[b"SET", b"k", b"a b\nA"]]),
    (b"SET k 'it\\'s'\r\n", [[b"SET", b"k", b"it's"]]),
    (b'SET "" x\r\n', [[b"SET", b"", b"x"]]),
    (b"PING\r\n" + command("ECHO", "x") + b"ECHO y\r\n",
     [[b"PING"], [b"ECHO", b"x"], [b"ECHO", b"y"]]),
]


@pytest.mark.parametrize(("data", "expected"), REQUESTS)
def test_requests_fed_whole(data: bytes, expected: list[list[bytes]]) -> None:
    assert feed_all([data], max_frame=65536) == expected


@pytest.mark.parametrize(("data", "expected"), REQUESTS)
def test_requests_fed_byte_by_byte(data: bytes, expected: list[list[bytes]]) -> None:
    assert feed_all([data[i : i + 1] for i in range(len(data))], max_frame=65536) == expected


@pytest.mark.parametrize(("data", "expected"), REQUESTS)
def test_requests_with_trailing_bytes_keep_them_for_the_next_read(
    data: bytes, expected: list[list[bytes]]
) -> None:
    c = resp.RespCodec(65536)
    tail = command("ECHO", "tail")
    assert c.feed(data + tail[:7]) == expected
    assert c.pending() > 0
    assert c.feed(tail[7:]) == [[b"ECHO", b"tail"]]
    assert c.pending() == 0


args_st = st.lists(st.binary(max_size=40), min_size=1, max_size=6)


@settings(max_examples=200, deadline=None)
@given(st.lists(args_st, min_size=1, max_size=8), st.data())
def test_any_chunking_gives_the_same_commands(cmds: list[list[bytes]], data: st.DataObject) -> None:
    stream = b"".join(command(*c) for c in cmds)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=12)))
    chunks = [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)])]
    assert feed_all(chunks, max_frame=65536) == cmds


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=64), max_size=8))
def test_random_bytes_are_commands_or_a_protocol_error_in_bounded_memory(
    chunks: list[bytes],
) -> None:
    c = resp.RespCodec(MAX_FRAME, max_bulk=4096, max_command=16384)
    try:
        for chunk in chunks:
            for cmd in c.feed(chunk):
                assert cmd and all(type(a) is bytes for a in cmd)
            assert c.pending() <= 16384 + 4096 + MAX_FRAME + 64
    except ProtocolError as e:
        assert e.code == resp.PROTOCOL_ERROR
        assert c.error_reply(e.code, e.text).message.startswith("ERR Protocol error: ")


# hostile input -> Redis's error words (after "-ERR Protocol error: ")
HOSTILE: list[tuple[str, bytes, str]] = [
    ("multibulk length over the limit", b"*%d\r\n" % (1024 * 1024 + 1), "invalid multibulk length"),
    ("multibulk length not a number", b"*x\r\n", "invalid multibulk length"),
    ("multibulk length with a plus", b"*+1\r\n", "invalid multibulk length"),
    ("multibulk length with a space", b"* 1\r\n", "invalid multibulk length"),
    ("multibulk length overflowing int64", b"*99999999999999999999\r\n", "invalid multibulk length"),
    ("bulk length absurd", b"*1\r\n$99999999999\r\n", "invalid bulk length"),
    ("bulk length over the limit", b"*1\r\n$%d\r\n" % (resp.MAX_BULK_LEN + 1), "invalid bulk length"),
    ("bulk length negative", b"*1\r\n$-1\r\n", "invalid bulk length"),
    ("bulk length not a number", b"*1\r\n$abc\r\n", "invalid bulk length"),
    ("bulk length with a leading zero", b"*1\r\n$03\r\nGET\r\n", "invalid bulk length"),
    ("not a bulk", b"*1\r\nx\r\n", "expected '$', got 'x'"),
    ("a nested array", b"*1\r\n*1\r\n$4\r\nPING\r\n", "expected '$', got '*'"),
    ("an integer argument", b"*1\r\n:1\r\n", "expected '$', got ':'"),
    ("unbalanced double quote", b'SET k "abc\r\n', "unbalanced quotes in request"),
    ("unbalanced single quote", b"SET k 'abc\r\n", "unbalanced quotes in request"),
    ("text after a closing quote", b'SET k "a"b\r\n', "unbalanced quotes in request"),
    ("inline line over the limit", b"x" * (MAX_FRAME + 1), "too big inline request"),
    ("count header over the limit", b"*" + b"1" * (MAX_FRAME + 1), "too big mbulk count string"),
    ("length header over the limit", b"*1\r\n$" + b"1" * (MAX_FRAME + 1),
     "too big bulk count string"),
]


@pytest.mark.parametrize(("data", "words"), [(d, w) for _, d, w in HOSTILE],
                         ids=[name for name, _, _ in HOSTILE])
@pytest.mark.parametrize("how", ["whole", "byte by byte"])
def test_hostile_input_is_a_protocol_error_with_redis_words(data: bytes, words: str,
                                                             how: str) -> None:
    c = resp.RespCodec(MAX_FRAME)
    before = command("PING")
    chunks = [before + data] if how == "whole" else [before] + [
        data[i : i + 1] for i in range(len(data))]
    done: list[list[bytes]] = []
    with pytest.raises(ProtocolError) as info:
        for chunk in chunks:
            done.extend(c.feed(chunk))
            assert c.pending() <= MAX_FRAME + 2  # nothing past the limit is buffered
    e = info.value
    assert done + e.messages == [[b"PING"]]  # the commands before it are answered
    assert c.encode([c.error_reply(e.code, e.text)]) == b"-ERR Protocol error: " + \
        words.encode() + b"\r\n"


@pytest.mark.parametrize(("header", "words"), [
    (b"*" + b"1" * 5000, "invalid multibulk length"),
    (b"*1\r\n$" + b"9" * 5000, "invalid bulk length"),
])
def test_a_header_of_thousands_of_digits_is_a_protocol_error(header: bytes, words: str) -> None:
    # Found writing fuzz/resp.py: past 4300 digits int() raised ValueError out of feed.
    c = resp.RespCodec(max_frame=65536)
    with pytest.raises(ProtocolError, match=words):
        c.feed(header + b"\r\n")
    assert resp.string2ll(b"9" * 5000) is None and resp.string2ll(b"-" + b"9" * 20) is None
    assert resp.string2ll(b"-9223372036854775808") == -2**63


def test_a_length_is_refused_when_its_header_arrives_not_after_its_bytes() -> None:
    c = resp.RespCodec(MAX_FRAME, max_bulk=1000)
    with pytest.raises(ProtocolError, match="invalid bulk length"):
        c.feed(b"*1\r\n$1001\r\n")  # not one byte of the argument sent


def test_many_small_arguments_are_bounded_by_the_command_limit() -> None:
    c = resp.RespCodec(MAX_FRAME, max_command=10_000)
    c.feed(b"*100000\r\n")
    with pytest.raises(ProtocolError, match="command exceeds 10000 bytes"):
        for _ in range(1000):
            c.feed(b"$1\r\na\r\n")
            assert c.pending() <= 10_000


def test_a_long_argument_trickled_in_is_buffered_once_not_reparsed() -> None:
    c = resp.RespCodec(MAX_FRAME)
    big = b"v" * 100_000
    data = command("SET", "k", big)
    chunks = [data[i : i + 100] for i in range(0, len(data), 100)]
    out = [cmd for chunk in chunks for cmd in c.feed(chunk)]
    assert out == [[b"SET", b"k", big]]


def test_the_codec_imports_no_io() -> None:
    """STYLE 1: no asyncio, sockets or clocks in the codec's modules."""
    for module in (codec_module, inline_module, values_module):
        tree = ast.parse(inspect.getsource(module))
        names = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import)
                 for a in n.names}
        names |= {(n.module or "").split(".")[0] for n in ast.walk(tree)
                  if isinstance(n, ast.ImportFrom)}
        assert not names & {"asyncio", "socket", "time", "selectors", "ssl"}, module.__name__


# reply -> (RESP2, RESP3)
REPLIES: list[tuple[Any, bytes, bytes]] = [
    (resp.OK, b"+OK\r\n", b"+OK\r\n"),
    (resp.Simple("QUEUED"), b"+QUEUED\r\n", b"+QUEUED\r\n"),
    (b"abc", b"$3\r\nabc\r\n", b"$3\r\nabc\r\n"),
    (b"", b"$0\r\n\r\n", b"$0\r\n\r\n"),
    ("é", b"$2\r\n\xc3\xa9\r\n", b"$2\r\n\xc3\xa9\r\n"),
    (bytearray(b"x"), b"$1\r\nx\r\n", b"$1\r\nx\r\n"),
    (7, b":7\r\n", b":7\r\n"),
    (-1, b":-1\r\n", b":-1\r\n"),
    (True, b":1\r\n", b"#t\r\n"),
    (False, b":0\r\n", b"#f\r\n"),
    (None, b"$-1\r\n", b"_\r\n"),
    (resp.NULL, b"$-1\r\n", b"_\r\n"),
    (resp.NULL_ARRAY, b"*-1\r\n", b"_\r\n"),
    (1.5, b"$3\r\n1.5\r\n", b",1.5\r\n"),
    (3.0, b"$1\r\n3\r\n", b",3\r\n"),
    (float("inf"), b"$3\r\ninf\r\n", b",inf\r\n"),
    ([b"a", 1, None], b"*3\r\n$1\r\na\r\n:1\r\n$-1\r\n", b"*3\r\n$1\r\na\r\n:1\r\n_\r\n"),
    ((), b"*0\r\n", b"*0\r\n"),
    ([[b"x"]], b"*1\r\n*1\r\n$1\r\nx\r\n", b"*1\r\n*1\r\n$1\r\nx\r\n"),
    ({b"k": 1}, b"*2\r\n$1\r\nk\r\n:1\r\n", b"%1\r\n$1\r\nk\r\n:1\r\n"),
    ({b"m"}, b"*1\r\n$1\r\nm\r\n", b"~1\r\n$1\r\nm\r\n"),
    (resp.RespError("ERR syntax error"), b"-ERR syntax error\r\n", b"-ERR syntax error\r\n"),
    (resp.RespError("ERR two\r\nlines"), b"-ERR two  lines\r\n", b"-ERR two  lines\r\n"),
    (resp.Encoded(b"+RAW\r\n"), b"+RAW\r\n", b"+RAW\r\n"),
    (resp.NO_REPLY, b"", b""),
]


@pytest.mark.parametrize(("reply", "resp2", "resp3"), REPLIES, ids=[repr(r[0]) for r in REPLIES])
def test_replies_are_encoded_for_each_protocol(reply: Any, resp2: bytes, resp3: bytes) -> None:
    c = resp.RespCodec()
    assert c.encode([reply]) == resp2
    assert c.encode([reply, reply]) == resp2 * 2
    c.protocol = 3
    assert c.encode([reply]) == resp3


@pytest.mark.parametrize(("reply", "error"), [
    (object(), TypeError), ([object()], TypeError), (resp.Simple("a\r\nb"), ValueError),
])
def test_a_reply_resp_cannot_carry_is_refused(reply: Any, error: type[Exception]) -> None:
    with pytest.raises(error):
        resp.RespCodec().encode([b"ok", reply])


@pytest.mark.parametrize(("code", "text", "wire"), [
    ("protocol", "invalid bulk length", b"-ERR Protocol error: invalid bulk length\r\n"),
    ("busy", "too many connections", b"-ERR busy too many connections\r\n"),
    ("idle-timeout", "no message for 300s", b"-ERR idle-timeout no message for 300s\r\n"),
    ("shutdown", "server is shutting down", b"-ERR shutdown server is shutting down\r\n"),
    ("internal", "handler failed", b"-ERR internal handler failed\r\n"),
])
def test_server_errors_are_err_lines(code: str, text: str, wire: bytes) -> None:
    c = resp.RespCodec()
    assert c.encode([c.error_reply(code, text)]) == wire


# ---- the command registry -----------------------------------------------------------


class FakeConn:
    """What Commands needs of a connection: state, codec, peer, close()."""

    def __init__(self) -> None:
        self.state: dict[str, Any] = {}
        self.codec = resp.RespCodec()
        self.peer = ("127.0.0.1", 5000)
        self.closed = False

    def close(self) -> None:
        self.closed = True


def served(commands: resp.Commands, conn: FakeConn, *cmds: list[bytes]) -> bytes:
    """The bytes the server would write for the commands of one read."""
    batch = commands.batch
    replies = batch(list(cmds), conn)
    if inspect.iscoroutine(replies):
        replies = asyncio.run(replies)
    assert len(replies) == len(cmds)
    return conn.codec.encode(replies)


def registry() -> resp.Commands:
    commands = resp.Commands()

    @commands.command("GET", 2)
    def get(client: resp.Client, args: list[bytes]) -> Any:
        return client.state.get(args[1])

    @commands.command("SET", -3)
    def set_(client: resp.Client, args: list[bytes]) -> Any:
        client.state[args[1]] = args[2]
        return resp.OK

    @commands.command("FAIL", 1)
    def fail(client: resp.Client, args: list[bytes]) -> Any:
        raise RuntimeError("a bug")

    @commands.command("WRONG", 1)
    def wrong(client: resp.Client, args: list[bytes]) -> Any:
        raise resp.RespError("WRONGTYPE Operation against a key holding the wrong kind of value")

    @commands.command("OBJ SUB", 3)
    def sub(client: resp.Client, args: list[bytes]) -> Any:
        return args[2]

    return commands


@pytest.mark.parametrize(("cmd", "wire"), [
    ([b"GET"], b"-ERR wrong number of arguments for 'get' command\r\n"),
    ([b"get", b"a", b"b"], b"-ERR wrong number of arguments for 'get' command\r\n"),
    ([b"SET", b"k"], b"-ERR wrong number of arguments for 'set' command\r\n"),
    ([b"foo", b"a", b"b"],
     b"-ERR unknown command 'foo', with args beginning with: 'a' 'b' \r\n"),
    ([b"foo"], b"-ERR unknown command 'foo', with args beginning with: \r\n"),
    ([b"x" * 200], b"-ERR unknown command '" + b"x" * 128 + b"', with args beginning with: \r\n"),
    ([b"foo", b"a" * 200, b"b"],
     b"-ERR unknown command 'foo', with args beginning with: '" + b"a" * 128 + b"' \r\n"),
    ([b"OBJ", b"nope"], b"-ERR unknown subcommand 'nope'. Try OBJ HELP.\r\n"),
    ([b"OBJ", b"sub"], b"-ERR wrong number of arguments for 'obj|sub' command\r\n"),
    ([b"obj", b"SUB", b"x"], b"$1\r\nx\r\n"),
    ([b"WRONG"], b"-WRONGTYPE Operation against a key holding the wrong kind of value\r\n"),
    ([b"FAIL"], b"-ERR internal handler failed\r\n"),
    ([b"GET", b"missing"], b"$-1\r\n"),
    ([b"PING"], b"+PONG\r\n"),
    ([b"ping", b"hi"], b"$2\r\nhi\r\n"),
    ([b"PING", b"a", b"b"], b"-ERR wrong number of arguments for 'ping' command\r\n"),
    ([b"ECHO", b"x"], b"$1\r\nx\r\n"),
    ([b"HELLO", b"4"], b"-NOPROTO unsupported protocol version\r\n"),
    ([b"HELLO", b"x"], b"-ERR Protocol version is not an integer or out of range\r\n"),
    ([b"HELLO", b"2", b"FOO"], b"-ERR Syntax error in HELLO option 'FOO'\r\n"),
    ([b"CLIENT", b"SETNAME", b"a b"],
     b"-ERR Client names cannot contain spaces, newlines or special characters.\r\n"),
    ([b"CLIENT", b"GETNAME"], b"$-1\r\n"),
    ([b"CLIENT", b"ID"], b":1\r\n"),
    ([b"CLIENT", b"NOPE"], b"-ERR unknown subcommand 'NOPE'. Try CLIENT HELP.\r\n"),
])
def test_the_registry_answers_as_redis_does(cmd: list[bytes], wire: bytes) -> None:
    assert served(registry(), FakeConn(), cmd) == wire


def test_errors_do_not_stop_the_read_and_replies_keep_their_order() -> None:
    commands = registry()
    out = served(commands, FakeConn(), [b"SET", b"k", b"v"], [b"FAIL"], [b"nope"],
                 [b"GET", b"k"], [b"WRONG"], [b"GET", b"k"])
    assert out == (b"+OK\r\n-ERR internal handler failed\r\n"
                   b"-ERR unknown command 'nope', with args beginning with: \r\n"
                   b"$1\r\nv\r\n"
                   b"-WRONGTYPE Operation against a key holding the wrong kind of value\r\n"
                   b"$1\r\nv\r\n")


def test_quit_answers_then_runs_nothing_after_it_in_the_read() -> None:
    commands = registry()
    conn = FakeConn()
    out = served(commands, conn, [b"SET", b"a", b"1"], [b"QUIT"], [b"SET", b"b", b"2"])
    assert out == b"+OK\r\n+OK\r\n"
    assert conn.closed
    assert b"b" not in conn.state[resp.commands.STATE_KEY].state


def test_hello_3_in_the_middle_of_a_read_switches_from_its_own_reply_on() -> None:
    commands = registry()
    conn = FakeConn()
    out = served(commands, conn, [b"GET", b"x"], [b"HELLO", b"3"], [b"GET", b"x"])
    assert out.startswith(b"$-1\r\n%7\r\n")  # RESP2's null, then HELLO's RESP3 map
    assert out.endswith(b"$7\r\nmodules\r\n*0\r\n_\r\n")  # ... and RESP3's null
    assert b"$5\r\nproto\r\n:3\r\n" in out


def test_async_commands_are_awaited_in_order() -> None:
    commands = registry()
    seen: list[bytes] = []

    @commands.command("SLOW", 2)
    async def slow(client: resp.Client, args: list[bytes]) -> Any:
        await asyncio.sleep(0.01 if args[1] == b"1" else 0)
        seen.append(args[1])
        return args[1]

    assert inspect.iscoroutinefunction(commands.batch)
    out = served(commands, FakeConn(), [b"SLOW", b"1"], [b"SET", b"k", b"v"], [b"SLOW", b"2"],
                 [b"GET", b"k"])
    assert out == b"$1\r\n1\r\n+OK\r\n$1\r\n2\r\n$1\r\nv\r\n"
    assert seen == [b"1", b"2"]


def test_a_sync_registry_is_served_as_a_sync_batch() -> None:
    assert not inspect.iscoroutinefunction(registry().batch)


def test_command_describes_the_registry() -> None:
    commands = registry()
    conn = FakeConn()
    assert served(commands, conn, [b"COMMAND", b"COUNT"]) == b":%d\r\n" % len(commands.commands)
    info = served(commands, conn, [b"COMMAND", b"INFO", b"get", b"nope"])
    assert info.startswith(b"*2\r\n*10\r\n$3\r\nget\r\n:2\r\n") and info.endswith(b"$-1\r\n")
    docs = served(commands, conn, [b"COMMAND", b"DOCS", b"get"])
    assert docs.startswith(b"*2\r\n$3\r\nget\r\n")


@pytest.mark.parametrize(("name", "arity"), [("GET", 0), ("", 1), ("A B C", 3), ("A B", 1)])
def test_a_bad_registration_is_refused(name: str, arity: int) -> None:
    with pytest.raises(ValueError):
        resp.Commands().add(name, lambda c, a: None, arity)


def test_a_transaction_spans_reads_and_runs_at_exec() -> None:
    commands = registry()
    conn = FakeConn()
    assert served(commands, conn, [b"MULTI"], [b"SET", b"k", b"v"]) == b"+OK\r\n+QUEUED\r\n"
    assert served(commands, conn, [b"GET", b"k"], [b"MULTI"]) == (
        b"+QUEUED\r\n-ERR MULTI calls can not be nested\r\n")
    assert served(commands, conn, [b"EXEC"], [b"GET", b"k"]) == (
        b"*2\r\n+OK\r\n$1\r\nv\r\n$1\r\nv\r\n")


def test_a_refused_command_in_a_transaction_discards_it_at_exec() -> None:
    commands = registry()
    conn = FakeConn()
    out = served(commands, conn, [b"MULTI"], [b"SET", b"k", b"v"], [b"GET"], [b"EXEC"],
                 [b"GET", b"k"])
    assert out == (b"+OK\r\n+QUEUED\r\n-ERR wrong number of arguments for 'get' command\r\n"
                   b"-EXECABORT Transaction discarded because of previous errors.\r\n$-1\r\n")


def test_the_server_serves_a_sync_registry_as_a_batch_and_an_async_one_queued() -> None:
    from aiotcp.dispatch import KIND_BATCH, KIND_QUEUED, kind_of

    commands = registry()
    assert kind_of(commands) == KIND_BATCH  # one call per read, inline in data_received

    @commands.command("WAIT", 1)
    async def wait(client: resp.Client, args: list[bytes]) -> Any:
        return resp.OK

    assert kind_of(commands) == KIND_QUEUED
