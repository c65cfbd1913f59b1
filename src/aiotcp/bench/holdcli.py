"""The flags of ``aiotcp bench --mode hold`` and their checks (argparse only; see holdrun).

Every bad value is one line on stderr naming its flag, exit status 2; a run exits 0 when
it is ok (every connection held, every ping answered), 1 otherwise.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import resource
import sys

from aiotcp.bench.hold import HoldConfig

#: Connections per client process at most: its fd limit less what Python, the loop and the
#: pipe to the parent take.
FD_RESERVE = 64
#: Connections per source address by default. connect() searches the ephemeral port range
#: (28,232 ports here) for a port free for its source address, and that search grows with
#: the ports the address already uses: 100,000 connections over 5 addresses (20,000 each)
#: opened at 1,533/s here, over 100 addresses (1,000 each) at 12,564/s.
CONNECTIONS_PER_SOURCE = 1_000
LOOPBACK = ipaddress.IPv4Network("127.0.0.0/8")


def add_hold_arguments(p: argparse.ArgumentParser) -> None:
    """Add the hold mode's own flags (``--connections``, ``--processes`` are shared)."""
    g = p.add_argument_group("hold mode (--mode hold)")
    g.add_argument("--source-base", default="127.0.0.1",
                   help="first loopback source address (default 127.0.0.1)")
    g.add_argument("--sources", type=int, default=0,
                   help=f"source addresses from --source-base on (default: one per "
                   f"{CONNECTIONS_PER_SOURCE:,} connections)")
    g.add_argument("--in-progress", type=int, default=256,
                   help="non-blocking connects in flight per process (default 256)")
    g.add_argument("--rounds", type=int, default=3, help="ping rounds (default 3)")
    g.add_argument("--round-seconds", type=float, default=5.0,
                   help="each round's pings are spread over this many seconds (default 5)")
    g.add_argument("--ping-timeout", type=float, default=5.0,
                   help="seconds a ping's reply may take before it is a failure (default 5)")
    g.add_argument("--churn", type=float, default=0.0,
                   help="fraction of connections closed and reopened each round (default 0)")
    g.add_argument("--server-pid", type=int, default=0,
                   help="the server's pid: its RSS and fds, with its children's, are read "
                   "from /proc (default: not read)")  # fmt: skip


def fd_limit() -> int:
    """This process's soft fd limit (client processes inherit it)."""
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def _error(text: str) -> int:
    print(f"aiotcp bench: {text}", file=sys.stderr)
    return 2


def hold_config(args: argparse.Namespace) -> HoldConfig | str:
    """The HoldConfig ``args`` describe, or one line saying which flag is wrong and why."""
    n = args.connections
    if n < 1:
        return "--connections must be >= 1"
    per_proc = fd_limit() - FD_RESERVE
    procs = args.processes if args.processes is not None else max(1, -(-n // per_proc))
    if procs < 1:
        return "--processes must be >= 1"
    procs = min(procs, n)
    if -(-n // procs) > per_proc:
        return (f"--processes {procs}: {-(-n // procs):,} connections per process is over its "
                f"fd limit less {FD_RESERVE} ({per_proc:,}); use --processes {-(-n // per_proc)}")
    try:
        base = ipaddress.IPv4Address(args.source_base)
    except ValueError:
        return f"--source-base: {args.source_base!r} is not an IPv4 address"
    if args.sources < 0:
        return "--sources must be >= 1"
    sources = args.sources or max(1, -(-n // CONNECTIONS_PER_SOURCE))
    if base not in LOOPBACK or base + (sources - 1) not in LOOPBACK:
        return (f"--source-base: {base} .. {base + (sources - 1)} ({sources} addresses) is "
                "not inside 127.0.0.0/8")
    if args.in_progress < 1:
        return "--in-progress must be >= 1"
    if args.rounds < 0:
        return "--rounds must be >= 0"
    if args.round_seconds < 0:
        return "--round-seconds must be >= 0"
    if args.ping_timeout <= 0:
        return "--ping-timeout must be > 0"
    if not 0 <= args.churn < 1:
        return "--churn must be a fraction, 0 <= churn < 1"
    if args.server_pid < 0:
        return "--server-pid must be a process id"
    if args.server_pid and not os.path.exists(f"/proc/{args.server_pid}"):
        return f"--server-pid {args.server_pid}: no such process"
    return HoldConfig(
        host=args.host, port=args.port, connections=n, procs=procs,
        source_base=str(base), sources=sources, in_progress=args.in_progress,
        rounds=args.rounds, round_seconds=args.round_seconds, ping_timeout=args.ping_timeout,
        churn=args.churn, server_pid=args.server_pid, prefix=args.expect_prefix,
    )  # fmt: skip


def hold_main(args: argparse.Namespace) -> int:
    """``aiotcp bench --mode hold``: check the flags, run, print the result."""
    from aiotcp.bench.holdrun import format_hold, run_hold

    cfg = hold_config(args)
    if isinstance(cfg, str):
        return _error(cfg)
    result = run_hold(cfg)
    print(json.dumps(result.to_dict(), ensure_ascii=False) if args.json else format_hold(result))
    return 0 if result.ok else 1
