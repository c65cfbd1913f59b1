"""Your own commands over the Redis protocol: a registry, and the handler that runs it.

::

    from aiotcp import resp

    commands = resp.Commands()          # PING, ECHO, HELLO, QUIT, CLIENT, COMMAND built in

    @commands.command("GREET", arity=2)  # arity as Redis defines it: the name counts
    def greet(client: resp.Client, args: list[bytes]) -> bytes:
        return b"hello " + args[1]

    app = commands.app()                # aiotcp serve --app mymodule:app

A handler gets the connection's :class:`Client` and the command's arguments (``bytes``,
the name first) and returns a reply (see ``aiotcp.resp.codec`` for the mapping), or
raises :class:`RespError` for an error reply. ``async def`` handlers are awaited in
order. A handler that raises anything else gets ``-ERR internal handler failed`` (the
traceback is logged, at most :data:`TRACEBACKS_PER_INTERVAL` per interval) and the
connection goes on.

Arity is Redis's: ``2`` is exactly two arguments with the name, ``-2`` at least two. A
command of the wrong arity, an unknown command and an unknown subcommand get the words
Redis 7 sends. Subcommands are named ``"CLIENT SETNAME"``; their arity counts the
container and the subcommand (``CLIENT SETNAME name`` is 3).

Pipelining: the server gives the handler all the commands of one read, which it runs in
one pass; their replies leave in one write. With no ``async def`` command the service is
served as a sync batch (no task, no loop turn per read); with one, as an async batch.
"""

from __future__ import annotations

import collections
import importlib
import inspect
import itertools
import logging
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from aiotcp._speedups import twin
from aiotcp.app import App
from aiotcp.resp.values import NO_REPLY, NULL, OK, Encoded, RespError, Simple

if TYPE_CHECKING:
    from aiotcp.resp.codec import RespCodec
else:  # the compiled twin, unless the pure core runs (aiotcp.core)
    RespCodec = importlib.import_module(twin("aiotcp.resp.codec")).RespCodec

__all__ = ["Client", "Command", "Commands", "TRACEBACKS_PER_INTERVAL"]

log = logging.getLogger("aiotcp.resp")

Handler = Callable[["Client", list[bytes]], Any]

# A handler failing on every command logs at most this many tracebacks per interval.
TRACEBACKS_PER_INTERVAL = 5
LOG_INTERVAL = 10.0
# Where a connection's Client lives in conn.state.
STATE_KEY = "aiotcp.resp"
# Unknown command errors quote at most this much (Redis: 128 bytes of the name and of
# the arguments).
QUOTE = 128


class Client:
    """One connection's state: ``id``, ``name`` (CLIENT SETNAME), ``protocol`` (2 or 3,
    HELLO), ``lib_name``/``lib_ver`` (CLIENT SETINFO), ``db`` (SELECT), ``state`` (a
    dict for your commands' own per-connection data) and ``conn`` (the aiotcp
    connection: ``peer``, ``close()``...)."""

    __slots__ = ("id", "name", "lib_name", "lib_ver", "db", "state", "conn", "codec",
                 "multi", "multi_failed", "_replies", "_rest")

    def __init__(self, client_id: int, conn: Any, codec: RespCodec) -> None:
        self.id = client_id
        self.name: bytes | None = None
        self.lib_name = b""
        self.lib_ver = b""
        self.db = 0
        self.state: dict[str, Any] = {}
        self.conn = conn
        self.codec = codec
        # The commands queued since MULTI (None: no transaction), and whether one of
        # them was refused (then EXEC discards them all, as Redis does).
        self.multi: list[tuple[Command, list[bytes]]] | None = None
        self.multi_failed = False
        self._replies: list[Any] = []  # the replies of the read being run
        self._rest: Iterator[list[bytes]] = iter(())  # its commands not yet run

    @property
    def protocol(self) -> int:
        return self.codec.protocol

    @protocol.setter
    def protocol(self, version: int) -> None:
        """Speak RESP ``version`` from the reply of the running command on; the replies
        before it in this read are written in the protocol they were made in."""
        codec = self.codec
        if version == codec.protocol:
            return
        replies = self._replies
        if replies:
            done = b"".join(_encode_one(codec, r) for r in replies)
            replies[:] = [Encoded(done)] + [NO_REPLY] * (len(replies) - 1)
        codec.protocol = version

    def begin(self) -> None:
        """MULTI: queue the commands that follow until EXEC or DISCARD."""
        self.multi = []
        self.multi_failed = False
        raise Transaction

    def close(self) -> None:
        """Close the connection after the reply of the running command (QUIT): the
        commands after it in the read are not run."""
        collections.deque(self._rest, maxlen=0)  # the run loop finds no command left
        self.conn.close()


def _encode_one(codec: RespCodec, reply: Any) -> bytes:
    try:
        return codec.encode([reply])
    except (TypeError, ValueError) as e:
        _failed(TypeError(f"a command returned a reply RESP cannot carry "
                          f"({type(reply).__name__}: {e})"))
        return codec.encode([INTERNAL])


INTERNAL = RespError("ERR internal handler failed")
QUEUED = Simple("QUEUED")
EXECABORT = RespError("EXECABORT Transaction discarded because of previous errors.")


class Transaction(Exception):  # noqa: N818 (a signal, not an error)
    """Raised by MULTI's handler: the run loop takes the rest of the read in turn."""


class Command:
    """A registered command (what COMMAND and COMMAND DOCS describe)."""

    __slots__ = ("name", "fn", "arity", "is_async", "flags", "keys", "summary", "group",
                 "subcommands", "bare")

    def __init__(self, name: str, fn: Handler, arity: int, *, flags: tuple[str, ...] = (),
                 keys: tuple[int, int, int] = (0, 0, 0), summary: str = "",
                 group: str = "generic") -> None:
        self.name = name  # lowercase; "client|setname" for a subcommand
        self.fn = fn
        self.arity = arity
        self.is_async = _is_async(fn)
        self.flags = flags
        self.keys = keys  # first key, last key, step (Redis's COMMAND fields)
        self.summary = summary
        self.group = group
        self.subcommands: dict[bytes, Command] = {}
        # A container's handler of its bare form (``COMMAND`` without a subcommand).
        self.bare: Handler | None = None

    def __repr__(self) -> str:
        return f"Command({self.name!r}, arity={self.arity})"


def _is_async(fn: Any) -> bool:
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(
        getattr(fn, "__call__", None))


def arity_error(name: str) -> RespError:
    return RespError(f"ERR wrong number of arguments for '{name}' command")


def unknown_command(args: list[bytes]) -> RespError:
    """Redis 7's words: ``ERR unknown command 'foo', with args beginning with: 'a' 'b' ``."""
    quoted = ""
    for a in args[1:]:
        if len(quoted) >= QUOTE:
            break
        quoted += "'" + _text(a)[: QUOTE - len(quoted)] + "' "
    return RespError(
        f"ERR unknown command '{_text(args[0])[:QUOTE]}', with args beginning with: {quoted}")


def _text(b: bytes) -> str:
    return b.decode("utf-8", "replace")


class Commands:
    """A registry of commands, and the handler that serves them (see the module doc).

    ``Commands()`` starts with the connection commands every Redis client expects
    (:mod:`aiotcp.resp.builtin`: PING, ECHO, HELLO, QUIT, CLIENT, COMMAND);
    ``Commands(builtins=False)`` starts empty.
    """

    def __init__(self, *, builtins: bool = True) -> None:
        self._table: dict[bytes, Command] = {}  # each name as given, lower and upper case
        self.commands: dict[str, Command] = {}  # lowercase name -> command
        self._ids = itertools.count(1)
        self._any_async = False
        if builtins:
            from aiotcp.resp.builtin import register

            register(self)

    # ---- registering ------------------------------------------------------------------

    def command(self, name: str, arity: int, **info: Any) -> Callable[[Handler], Handler]:
        """Decorator: ``fn(client, args)`` serves the command ``name`` (``"GET"``, or
        ``"CLIENT SETNAME"`` for a subcommand). ``info``: ``flags``, ``keys``,
        ``summary``, ``group`` (what COMMAND reports)."""
        def register(fn: Handler) -> Handler:
            self.add(name, fn, arity, **info)
            return fn
        return register

    def add(self, name: str, fn: Handler, arity: int, **info: Any) -> Command:
        """Register ``fn`` for ``name`` (replacing a command of that name). Raises
        ValueError for an arity of 0 or a subcommand's arity under 2 (or over -2)."""
        container, _, sub = name.strip().lower().partition(" ")
        if not container or " " in sub or arity == 0 or (sub and -2 < arity < 2):
            raise ValueError(f"bad command {name!r} / arity {arity}")
        if sub:
            parent = self.commands.get(container)
            if parent is None or not parent.subcommands:
                bare = parent.fn if parent is not None else None
                parent = self._put(Command(
                    container, self._container(container),
                    parent.arity if parent is not None else -2,
                    flags=parent.flags if parent is not None else (),
                    summary=parent.summary if parent is not None else "",
                    group=info.get("group", "generic")))
                parent.bare = bare
                parent.is_async = bare is not None and _is_async(bare)
            cmd = Command(f"{container}|{sub}", fn, arity, **info)
            parent.subcommands[sub.encode()] = cmd
            parent.is_async = parent.is_async or cmd.is_async
        else:
            cmd = self.commands.get(container)  # type: ignore[assignment]
            if cmd is not None and cmd.subcommands:  # the bare form of a container
                cmd.bare, cmd.arity = fn, arity
                cmd.is_async = cmd.is_async or _is_async(fn)
            else:
                cmd = self._put(Command(container, fn, arity, **info))
        self._any_async = self._any_async or cmd.is_async
        return cmd

    def _put(self, cmd: Command) -> Command:
        self.commands[cmd.name] = cmd
        key = cmd.name.encode()
        self._table[key] = cmd
        self._table[key.upper()] = cmd
        return cmd

    def _container(self, name: str) -> Handler:
        """The handler of a command with subcommands: finds the subcommand, checks its
        arity, calls it."""
        upper = name.upper()

        def container(client: Client, args: list[bytes]) -> Any:
            cmd = self.commands[name]
            if len(args) < 2:
                return cmd.bare(client, args) if cmd.bare else arity_error(name)
            sub = cmd.subcommands.get(args[1].lower())
            if sub is None:
                return RespError(
                    f"ERR unknown subcommand '{_text(args[1])[:QUOTE]}'. Try {upper} HELP.")
            n, a = len(args), sub.arity
            if n != a and (a >= 0 or n < -a):
                return arity_error(sub.name)
            return sub.fn(client, args)

        return container

    def lookup(self, name: bytes) -> Command | None:
        """The command named ``name`` (any case), or None."""
        return self._table.get(name) or self._table.get(name.lower())

    # ---- serving ----------------------------------------------------------------------

    def app(self, codec: Callable[[int], Any] = RespCodec) -> App:
        """An aiotcp App serving these commands over ``codec`` (RESP)."""
        return App(self, codec=codec)

    def client(self, conn: Any) -> Client:
        """The Client of ``conn``, made on its first command."""
        state = conn.state
        client: Client | None = state.get(STATE_KEY)
        if client is None:
            client = state[STATE_KEY] = Client(next(self._ids), conn, conn.codec)
            self.connected(client)
        return client

    def connected(self, client: Client) -> None:
        """Called once per connection, at its first command (override to track them)."""

    @property
    def batch(self) -> Callable[..., Any]:
        """What the server calls with the commands of one read: a sync function, or an
        ``async def`` once any command is one (the server reads this when it starts)."""
        return self.run_async if self._any_async else self.run

    def __call__(self, message: list[bytes], conn: Any) -> Any:
        """One command (the server's path for the commands before a protocol error)."""
        return self.run([message], conn)[0]

    def run(self, messages: list[list[bytes]], conn: Any) -> list[Any]:
        """Run the commands of one read in order; one reply each."""
        client = self.client(conn)
        table = self._table
        replies: list[Any] = []
        append = replies.append
        client._replies = replies
        rest = client._rest = iter(messages)
        if client.multi is not None:  # a transaction open since an earlier read
            for args in rest:
                append(self.step(client, args))
        while True:
            try:
                for args in rest:
                    cmd = table.get(args[0])
                    if cmd is None:
                        cmd = table.get(args[0].lower())
                        if cmd is None:
                            append(unknown_command(args))
                            continue
                    n, a = len(args), cmd.arity
                    if n != a and (a >= 0 or n < -a):
                        append(arity_error(cmd.name))
                        continue
                    r = cmd.fn(client, args)
                    append(NULL if r is None else r)
                break
            except RespError as e:
                append(e)
            except Transaction:  # MULTI: the rest of the read one by one
                append(OK)
                for args in rest:
                    append(self.step(client, args))
            except Exception as e:
                _failed(e)
                append(INTERNAL)
        return self._done(client, replies, len(messages))

    async def run_async(self, messages: list[list[bytes]], conn: Any) -> list[Any]:
        """:meth:`run` for a registry with ``async def`` commands: each awaited in turn."""
        client = self.client(conn)
        replies: list[Any] = []
        append = replies.append
        client._replies = replies
        rest = client._rest = iter(messages)
        for args in rest:
            r = self.step(client, args)
            if inspect.isawaitable(r):
                r = await r
            append(NULL if r is None else r)
        return self._done(client, replies, len(messages))

    def _done(self, client: Client, replies: list[Any], n: int) -> list[Any]:
        if len(replies) < n:  # the connection closed (QUIT) in this read
            replies.extend([NO_REPLY] * (n - len(replies)))
        client._replies = []
        return replies

    def step(self, client: Client, args: list[bytes]) -> Any:
        """One command, in a transaction or not (the general path; :meth:`run` inlines
        it for speed). Never raises; an async command's reply is its coroutine."""
        cmd = self.lookup(args[0])
        queue = client.multi
        if queue is not None and (cmd is None or cmd.name not in NOT_QUEUED):
            if cmd is None:
                client.multi_failed = True
                return unknown_command(args)
            n, a = len(args), cmd.arity
            if n != a and (a >= 0 or n < -a):
                client.multi_failed = True
                return arity_error(cmd.name)
            queue.append((cmd, args))
            return QUEUED
        if cmd is None:
            return unknown_command(args)
        n, a = len(args), cmd.arity
        if n != a and (a >= 0 or n < -a):
            return arity_error(cmd.name)
        if queue is not None:  # EXEC, DISCARD, MULTI, QUIT inside a transaction
            name = cmd.name
            if name == "multi":
                return RespError("ERR MULTI calls can not be nested")
            if name in ("exec", "discard"):
                client.multi = None
                if name == "discard":
                    return OK
                if client.multi_failed:
                    return EXECABORT
                if any(c.is_async for c, _ in queue):
                    return self._exec_async(client, queue)
                return [self._call(client, c, a) for c, a in queue]
        return self._call(client, cmd, args)

    def _call(self, client: Client, cmd: Command, args: list[bytes]) -> Any:
        try:
            r = cmd.fn(client, args)
        except RespError as e:
            return e
        except Transaction:
            return OK
        except Exception as e:
            _failed(e)
            return INTERNAL
        if inspect.isawaitable(r):
            return self._awaited(r)
        return NULL if r is None else r

    async def _awaited(self, r: Any) -> Any:
        try:
            value = await r
        except RespError as e:
            return e
        except Exception as e:
            _failed(e)
            return INTERNAL
        return NULL if value is None else value

    async def _exec_async(self, client: Client, queue: list[tuple[Command, list[bytes]]]
                          ) -> list[Any]:
        out = []
        for cmd, args in queue:
            r = self._call(client, cmd, args)
            out.append(await r if inspect.isawaitable(r) else r)
        return out


# Commands that run at once inside a transaction instead of being queued.
NOT_QUEUED = frozenset({"exec", "discard", "multi", "quit", "watch"})


class _Throttle:
    """At most TRACEBACKS_PER_INTERVAL tracebacks per LOG_INTERVAL; the rest counted."""

    def __init__(self) -> None:
        self.window = -LOG_INTERVAL
        self.logged = 0

    def allow(self) -> bool:
        now = time.monotonic()
        if now - self.window > LOG_INTERVAL:
            if self.logged > TRACEBACKS_PER_INTERVAL:
                log.error("%d more command failures not logged",
                          self.logged - TRACEBACKS_PER_INTERVAL)
            self.window, self.logged = now, 0
        self.logged += 1
        return self.logged <= TRACEBACKS_PER_INTERVAL


_throttle = _Throttle()


def _failed(exc: BaseException) -> None:
    if _throttle.allow():
        log.error("command handler raised %s", type(exc).__name__, exc_info=exc)
