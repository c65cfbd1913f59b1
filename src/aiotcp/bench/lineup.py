"""The servers ``aiotcp compare`` runs: name, what each is, how to start it, what it needs.

Every server prints ``listening on HOST:PORT`` to stderr once bound and serves the ack
protocol on loopback; see ``benchmarks/README.md`` for what each row measures.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass

from aiotcp.bench.baselines import BASELINES, LOOSE_BASELINES, REQUIRES
from aiotcp.bench.native import CompilerUnavailable, build
from aiotcp.bench.serverproc import aiotcp_argv, baseline_argv


@dataclass(frozen=True)
class ServerSpec:
    """One compare row: ``kind`` is ``c`` (a built C program), ``aiotcp`` or ``baseline``."""

    name: str
    kind: str
    what: str
    serve_args: tuple[str, ...] = ()  # flags for ``aiotcp serve``
    pure: bool = False  # the pure-Python core (AIOTCP_NO_EXTENSIONS=1), not the compiled one


_AIOTCP: tuple[ServerSpec, ...] = (
    ServerSpec("aiotcp-ack", "aiotcp", "aiotcp serve, the built-in ack app"),
    ServerSpec(
        "aiotcp-sync",
        "aiotcp",
        "aiotcp serve --app aiotcp.bench.userapp:handle (a user's def)",
        ("--app", "aiotcp.bench.userapp:handle"),
    ),
    ServerSpec(
        "aiotcp-async",
        "aiotcp",
        "aiotcp serve --app aiotcp.bench.userapp:handle_async (a user's async def)",
        ("--app", "aiotcp.bench.userapp:handle_async"),
    ),
    ServerSpec(
        "aiotcp-binary",
        "aiotcp",
        "aiotcp serve --binary --app aiotcp.bench.userapp:handle_binary (a user's def on bytes)",
        ("--binary", "--app", "aiotcp.bench.userapp:handle_binary"),
    ),
    ServerSpec("aiotcp-ack-pure", "aiotcp", "the ack app on the pure-Python core", pure=True),
    ServerSpec(
        "aiotcp-sync-pure",
        "aiotcp",
        "a user's def on the pure-Python core",
        ("--app", "aiotcp.bench.userapp:handle"),
        pure=True,
    ),
)
SERVERS: dict[str, ServerSpec] = {
    s.name: s
    for s in (
        ServerSpec("c-epoll", "c", "C, one thread, epoll: the practical limit"),
        *_AIOTCP,
        *(ServerSpec(b, "baseline", f"python -m aiotcp.bench.baselines.{b}") for b in BASELINES),
    )
}
#: Report order: the limit, the hand-written Protocols, aiotcp, then the other styles.
ORDER: tuple[str, ...] = (
    "c-epoll", "uvloop_protocol", "asyncio_protocol", "aiotcp-ack", "aiotcp-sync", "aiotcp-async",
    "aiotcp-binary", "aiotcp-ack-pure", "aiotcp-sync-pure", "seed", "seed_noprint", "streams", "threads", "processes", "gevent", "trio",
)  # fmt: skip
#: ``--quick``: the rows that carry the article's claims.
QUICK: tuple[str, ...] = (
    "seed", "threads", "uvloop_protocol", "c-epoll", "aiotcp-ack", "aiotcp-sync",
)  # fmt: skip
#: The payload ladder's servers (``workloads.LADDER``): the limit, the hand-written
#: Protocol aiotcp is measured against, and aiotcp's ack app.
LADDER: tuple[str, ...] = ("c-epoll", "uvloop_protocol", "aiotcp-ack")
#: Servers that serve length framing too (``--framing length``); the rest serve lines only.
LENGTH_FRAMED: frozenset[str] = frozenset(
    {"c-epoll", "uvloop_protocol", "asyncio_protocol", *(s.name for s in _AIOTCP)}
)
#: Older names still accepted on the command line.
ALIASES: dict[str, str] = {"aiotcp": "aiotcp-ack", "c_epoll": "c-epoll"}


def resolve(name: str) -> str:
    """The canonical name of server ``name`` (aliases applied); raises KeyError if unknown."""
    name = ALIASES.get(name, name)
    if name not in SERVERS:
        raise KeyError(name)
    return name


def is_loose(name: str) -> bool:
    """True for servers that reply per read, not per line (verified in loose mode)."""
    return name in LOOSE_BASELINES


def unavailable(name: str) -> str:
    """Why server ``name`` cannot run here (a missing library or compiler), or ""."""
    spec = SERVERS[name]
    if spec.kind == "c":
        try:
            build("server")
        except CompilerUnavailable as exc:
            return str(exc)
        return ""
    lib = REQUIRES.get(name)
    if lib and importlib.util.find_spec(lib) is None:
        return f"{lib} is not installed"
    return ""


def framings(name: str) -> tuple[str, ...]:
    """The framings server ``name`` serves."""
    return ("line", "length") if name in LENGTH_FRAMED else ("line",)


def server_argv(name: str, aiotcp_args: list[str], framing: str = "line") -> list[str]:
    """Command line of server ``name`` on a free loopback port (``aiotcp_args`` for aiotcp
    rows) serving ``framing`` (one of :func:`framings`)."""
    spec = SERVERS[name]
    flag = ["--framing", framing] if framing != "line" else []
    if spec.kind == "c":
        return [build("server"), "--host", "127.0.0.1", "--port", "0", *flag]
    if spec.kind == "aiotcp":
        argv = aiotcp_argv([*spec.serve_args, *flag, *aiotcp_args])
        return ["env", "AIOTCP_NO_EXTENSIONS=1", *argv] if spec.pure else argv
    return [*baseline_argv(name), *flag]
