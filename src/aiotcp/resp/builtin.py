"""The connection commands every Redis client expects of a server, in every Commands.

PING, ECHO, QUIT, HELLO (RESP2/RESP3, ``AUTH`` accepted: there is no password),
CLIENT ID/SETNAME/GETNAME/SETINFO/INFO/LIST, and COMMAND (bare, COUNT, DOCS, INFO,
LIST), which describe whatever the registry holds. Replies and errors as Redis 7.
"""

from __future__ import annotations

from typing import Any

from aiotcp.resp.values import OK, PONG, RespError, Simple

# aiotcp.resp.commands imports this module to register these commands, so this module
# names its types without importing them (the import graph has no cycle).
Client = Any  # aiotcp.resp.commands.Client
Command = Any  # aiotcp.resp.commands.Command
Commands = Any  # aiotcp.resp.commands.Commands

# What HELLO and INFO say this server is: the Redis whose commands and replies it
# follows (clients read the version to choose features).
REDIS_VERSION = "7.0.0"

NOT_AN_INTEGER = RespError("ERR value is not an integer or out of range")
SYNTAX = RespError("ERR syntax error")
BAD_NAME = RespError(
    "ERR Client names cannot contain spaces, newlines or special characters.")


def register(commands: Commands) -> None:
    """Add the connection commands to ``commands``."""
    c = commands.command
    c("PING", -1, flags=("fast",), group="connection", summary="Ping the server")(ping)
    c("ECHO", 2, flags=("fast",), group="connection", summary="Echo the given string")(echo)
    c("QUIT", -1, flags=("fast",), group="connection", summary="Close the connection")(quit_)
    c("HELLO", -1, flags=("fast",), group="connection",
      summary="Handshake with the server")(hello)
    c("MULTI", 1, flags=("fast",), group="transactions", summary="Start a transaction")(multi)
    c("EXEC", 1, group="transactions", summary="Run the queued commands")(exec_)
    c("DISCARD", 1, flags=("fast",), group="transactions",
      summary="Drop the queued commands")(discard)
    for name, arity, fn in (
        ("ID", 2, client_id), ("SETNAME", 3, client_setname), ("GETNAME", 2, client_getname),
        ("SETINFO", 4, client_setinfo), ("INFO", 2, client_info), ("LIST", -2, client_list),
    ):
        c(f"CLIENT {name}", arity, group="connection")(fn)

    def command_bare(client: Client, args: list[bytes]) -> Any:
        return [_info(cmd) for cmd in commands.commands.values()]

    def command_count(client: Client, args: list[bytes]) -> Any:
        return len(commands.commands)

    def command_list(client: Client, args: list[bytes]) -> Any:
        return [cmd.name for cmd in commands.commands.values()]

    def command_info(client: Client, args: list[bytes]) -> Any:
        if len(args) == 2:
            return command_bare(client, args)
        return [_info(cmd) if (cmd := commands.lookup(a)) else None for a in args[2:]]

    def command_docs(client: Client, args: list[bytes]) -> Any:
        wanted = ([cmd for a in args[2:] if (cmd := commands.lookup(a))] if len(args) > 2
                  else list(commands.commands.values()))
        return {cmd.name: _docs(cmd) for cmd in wanted}

    c("COMMAND", -1, group="server", summary="Details about the commands")(command_bare)
    c("COMMAND COUNT", 2, group="server")(command_count)
    c("COMMAND LIST", -2, group="server")(command_list)
    c("COMMAND INFO", -2, group="server")(command_info)
    c("COMMAND DOCS", -2, group="server")(command_docs)


def ping(client: Client, args: list[bytes]) -> Any:
    if len(args) > 2:
        return RespError("ERR wrong number of arguments for 'ping' command")
    return args[1] if len(args) == 2 else PONG


def echo(client: Client, args: list[bytes]) -> Any:
    return args[1]


def quit_(client: Client, args: list[bytes]) -> Any:
    client.close()
    return OK


def multi(client: Client, args: list[bytes]) -> Any:
    client.begin()  # raises: the registry queues what follows until EXEC or DISCARD


def exec_(client: Client, args: list[bytes]) -> Any:
    return RespError("ERR EXEC without MULTI")  # inside MULTI the registry runs EXEC


def discard(client: Client, args: list[bytes]) -> Any:
    return RespError("ERR DISCARD without MULTI")


def hello(client: Client, args: list[bytes]) -> Any:
    """``HELLO [protover [AUTH user pass] [SETNAME name]]``: the server's facts as a
    map, in the protocol asked for."""
    version = client.protocol
    i = 1
    if len(args) > 1:
        v = _int(args[1])
        if v is None:
            raise RespError("ERR Protocol version is not an integer or out of range")
        if v not in (2, 3):
            raise RespError("NOPROTO unsupported protocol version")
        version = v
        i = 2
    name: bytes | None = None
    while i < len(args):
        opt = args[i].upper()
        more = len(args) - 1 - i
        if opt == b"AUTH" and more >= 2:
            i += 3  # no password is set: every user and password is accepted
        elif opt == b"SETNAME" and more >= 1:
            name = args[i + 1]
            if not _valid_name(name):
                raise BAD_NAME
            i += 2
        else:
            raise RespError(f"ERR Syntax error in HELLO option '{args[i].decode('utf-8', 'replace')}'")
    if name is not None:
        client.name = name or None
    client.protocol = version
    return {
        "server": "redis", "version": REDIS_VERSION, "proto": version, "id": client.id,
        "mode": "standalone", "role": "master", "modules": [],
    }


def client_id(client: Client, args: list[bytes]) -> Any:
    return client.id


def client_setname(client: Client, args: list[bytes]) -> Any:
    if not _valid_name(args[2]):
        return BAD_NAME
    client.name = args[2] or None
    return OK


def client_getname(client: Client, args: list[bytes]) -> Any:
    return client.name


def client_setinfo(client: Client, args: list[bytes]) -> Any:
    opt = args[2].upper()
    if opt == b"LIB-NAME":
        if not _valid_name(args[3]):
            return RespError("ERR lib-name cannot contain spaces, newlines or special characters.")
        client.lib_name = args[3]
    elif opt == b"LIB-VER":
        if not _valid_name(args[3]):
            return RespError("ERR lib-ver cannot contain spaces, newlines or special characters.")
        client.lib_ver = args[3]
    else:
        return RespError(f"ERR Unrecognized option '{args[2].decode('utf-8', 'replace')}'")
    return OK


def client_info(client: Client, args: list[bytes]) -> Any:
    return describe(client) + "\n"


def client_list(client: Client, args: list[bytes]) -> Any:
    # Only this connection: the registry keeps no list of every client.
    return describe(client) + "\n"


def describe(client: Client) -> str:
    """One CLIENT INFO line (the fields clients and tools read)."""
    peer = client.conn.peer
    addr = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) and len(peer) >= 2 else str(peer)
    name = (client.name or b"").decode("utf-8", "replace")
    return (f"id={client.id} addr={addr} name={name} db={client.db} "
            f"resp={client.protocol} lib-name={client.lib_name.decode('utf-8', 'replace')} "
            f"lib-ver={client.lib_ver.decode('utf-8', 'replace')}")


def _valid_name(name: bytes) -> bool:
    """Redis's rule for client names: printable ASCII, no space."""
    return all(33 <= b <= 126 for b in name)


def _int(b: bytes) -> int | None:
    try:
        return int(b)
    except ValueError:
        return None


def _info(cmd: Command) -> list[Any]:
    """A COMMAND entry: name, arity, flags, first key, last key, step, ACL categories,
    tips, key specs, subcommands (Redis 7's ten fields)."""
    first, last, step = cmd.keys
    return [
        cmd.name, cmd.arity, [Simple(f) for f in cmd.flags], first, last, step,
        [Simple("@" + cmd.group)], [], [],
        [_info(sub) for sub in cmd.subcommands.values()],
    ]


def _docs(cmd: Command) -> dict[str, Any]:
    docs: dict[str, Any] = {"summary": cmd.summary or cmd.name, "since": "1.0.0",
                            "group": cmd.group}
    if cmd.subcommands:
        docs["subcommands"] = {sub.name: _docs(sub) for sub in cmd.subcommands.values()}
    return docs
