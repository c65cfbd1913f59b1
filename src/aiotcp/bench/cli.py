"""``aiotcp bench`` and ``aiotcp compare`` command lines (argparse only; work happens elsewhere).

``bench_main(argv) -> int`` and ``compare_main(argv) -> int`` are what ``aiotcp``'s CLI calls.
Exit status of bench: 0 when every reply verified and no error was seen, 1 otherwise, 2 for
bad usage. ``python -m aiotcp.bench.cli bench|compare ...`` runs them directly.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from collections.abc import Callable

from aiotcp.bench.holdcli import add_hold_arguments, hold_main
from aiotcp.bench.loadgen import LoadConfig
from aiotcp.bench.results import LoadResult
from aiotcp.bench.verify import VerifyMode

MODES = ("load", "idle", "trickle", "no-read", "half-close", "storm", "hold")
#: Modules of the ``bench`` extra that each command cannot run without.
BENCH_NEEDS: tuple[str, ...] = ("hdrh", "tqdm")
COMPARE_NEEDS: tuple[str, ...] = ("hdrh", "matplotlib")
ENGINE_NAMES = {"c": "compiled C epoll engine", "python": "Python engine (uvloop)"}


def _installed(module: str) -> bool:
    if module in sys.modules:
        return sys.modules[module] is not None  # None: an import blocked on purpose
    return importlib.util.find_spec(module) is not None


def missing_extra(prog: str, modules: tuple[str, ...]) -> bool:
    """Print one line naming the extra to install and return True if a module is missing."""
    missing = [m for m in modules if not _installed(m)]
    if missing:
        print(
            f"{prog}: the benchmark dependencies are not installed (no {', '.join(missing)}); "
            "run: pip install 'aiotcp[bench]'",
            file=sys.stderr,
        )
    return bool(missing)


def build_bench_parser() -> argparse.ArgumentParser:
    """Return the ``aiotcp bench`` argument parser."""
    p = argparse.ArgumentParser(
        prog="aiotcp bench",
        description="Load generator for servers speaking aiotcp's framings; verifies every reply.",
    )
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8888)
    p.add_argument("--connections", "-c", type=int, default=10, help="connections (default 10)")
    p.add_argument(
        "--duration",
        "-d",
        type=float,
        default=5.0,
        help="seconds of measured load, or of holding in misbehaving modes (default 5)",
    )
    p.add_argument(
        "--size", "-s", type=int, default=64, help="message bytes, without the framing (default 64)"
    )
    p.add_argument(
        "--in-flight",
        "-f",
        type=int,
        default=1,
        help="messages outstanding per connection (pipelining; default 1)",
    )
    p.add_argument(
        "--rate",
        type=float,
        default=0.0,
        help="open loop: total messages/s, latency from the scheduled send time (default: closed loop)",
    )
    p.add_argument(
        "--ramp",
        type=float,
        default=0.0,
        help="spread connects over this many seconds (default: at once, 256 in progress)",
    )
    p.add_argument("--framing", choices=("line", "length", "varint", "raw"), default="line",
                   help="message framing (default: line; varint: the Python engine)")
    p.add_argument(
        "--verify",
        choices=("auto", "strict", "loose"),
        default="auto",
        help="strict: byte-exact reply per message; loose: replies may coalesce (seed server, raw framing). auto: loose for raw",
    )
    p.add_argument(
        "--processes",
        "--procs",
        "-p",
        type=int,
        default=None,
        help="split connections across N client processes; histograms merged (default 1; "
        "hold: enough that each stays under its fd limit)",
    )
    p.add_argument(
        "--prefix", "--expect-prefix", dest="expect_prefix", default="已收到: ",
        help="reply prefix the server puts before each message (default '已收到: ')",
    )  # fmt: skip
    p.add_argument(
        "--engine", choices=("auto", "c", "python"), default="auto",
        help="load engine: c (compiled epoll, built with the system C compiler on first use), "
        "python, or auto (c when it builds; the report says which ran)",
    )  # fmt: skip
    p.add_argument(
        "--count", type=int, default=0,
        help="send this many messages in total instead of running for --duration (c engine)",
    )  # fmt: skip
    p.add_argument(
        "--json", action="store_true", help="print one JSON object on stdout and nothing else"
    )
    p.add_argument(
        "--mode",
        choices=MODES,
        default="load",
        help="load (default), or a misbehaving client: idle holders, byte tricklers, never-readers, "
        "half-closers, connect storm; or hold: N connections held, pinged in rounds",
    )
    p.add_argument(
        "--interval", type=float, default=1.0, help="trickle: seconds between bytes (default 1)"
    )
    p.add_argument(
        "--messages",
        type=int,
        default=10,
        help="half-close: messages per connection before shutdown(SHUT_WR) (default 10)",
    )
    add_hold_arguments(p)
    return p


def load_config(args: argparse.Namespace) -> LoadConfig:
    """Build the LoadConfig from parsed bench arguments."""
    verify: VerifyMode = "loose" if args.verify == "loose" or args.framing == "raw" else "strict"
    if args.verify == "strict":
        verify = "strict"
    return LoadConfig(
        host=args.host,
        port=args.port,
        connections=args.connections,
        duration=args.duration,
        size=args.size,
        in_flight=args.in_flight,
        rate=args.rate,
        ramp=args.ramp,
        framing=args.framing,
        verify=verify,
        expect_prefix=args.expect_prefix,
        processes=args.processes or 1,
        count=args.count,
    )


def format_load(result: LoadResult) -> str:
    """Human-readable multi-line report of a load run."""
    c = result.config
    loop = f"open loop at {c['rate']:g} msg/s" if c.get("rate") else "closed loop"
    lat = result.latency_ms
    lines = [
        (
            f"aiotcp bench: {result.connected}/{result.connections} connections, "
            f"{c['in_flight']} in flight, {c['size']} B {c['framing']} messages "
            f"({c['verify']} verify), {loop}, {result.duration:.1f} s on {c['host']}:{c['port']}"
        ),
        f"  engine      {ENGINE_NAMES.get(result.engine, result.engine)}",
        (
            f"  throughput  {result.throughput:,.0f} msg/s  ({result.messages_acked:,} acked in "
            f"the window, {result.messages_sent:,} sent)"
        ),
        "  latency ms  "
        + "  ".join(f"{k} {lat.get(k, 0.0):.3f}" for k in ("p50", "p90", "p99", "p99.9", "max")),
        "  client CPU  "
        + ", ".join(f"{x:.0f}%" for x in result.client_cpu)
        + " of a core per process",
    ]
    if result.errors:
        lines.append(
            "  ERRORS      " + ", ".join(f"{k}: {v}" for k, v in sorted(result.errors.items()))
        )
        lines.extend(f"    {s}" for s in result.error_samples)
    else:
        lines.append("  errors      none (every reply verified)")
    lines.extend(f"  WARNING: {w}" for w in result.warnings)
    return "\n".join(lines)


def _progress_bar(
    total: float, enabled: bool
) -> tuple[Callable[[float, int], None] | None, Callable[[], None]]:
    """Return (progress callback, close) for a tqdm bar over ``total`` seconds, or no-ops."""
    if not enabled:
        return None, lambda: None
    from tqdm import tqdm

    bar = tqdm(
        total=round(total, 2),
        unit="s",
        file=sys.stderr,
        leave=False,
        bar_format="{l_bar}{bar}| {n:.1f}/{total:.1f}s {postfix}",
    )
    last = [0.0, 0]

    def update(elapsed: float, acked: int) -> None:
        bar.update(round(elapsed - last[0], 2))
        if acked >= 0 and elapsed > last[0]:
            bar.set_postfix_str(f"{(acked - last[1]) / (elapsed - last[0]):,.0f} msg/s")
            last[1] = acked
        last[0] = elapsed

    return update, bar.close


def bench_main(argv: list[str]) -> int:
    """Entry point of ``aiotcp bench``; returns the process exit status."""
    args = build_bench_parser().parse_args(argv)
    if missing_extra("aiotcp bench", BENCH_NEEDS):
        return 2
    if args.mode == "hold":
        return hold_main(args)
    if (
        args.connections < 1
        or args.duration < 0
        or args.size < 0
        or args.in_flight < 1
        or (args.processes is not None and args.processes < 1)
        or args.count < 0
    ):
        print(
            "aiotcp bench: --connections, --in-flight, --processes must be >= 1; "
            "--duration, --size, --count >= 0",
            file=sys.stderr,
        )
        return 2
    if args.mode != "load":
        from aiotcp.bench.misbehave import format_misbehave, run_misbehave_sync

        mresult = run_misbehave_sync(
            args.mode, load_config(args), interval=args.interval, messages=args.messages
        )
        print(
            json.dumps(mresult.to_dict(), ensure_ascii=False)
            if args.json
            else format_misbehave(mresult)
        )
        return 0
    from aiotcp.bench.cengine import choose_engine, run_c_load
    from aiotcp.bench.multiproc import run_load_processes
    from aiotcp.bench.native import CompilerUnavailable

    cfg = load_config(args)
    try:
        engine, note = choose_engine(args.engine, cfg)
    except CompilerUnavailable as exc:
        print(f"aiotcp bench: {exc}", file=sys.stderr)
        return 2
    show = not args.json and not args.count and sys.stderr.isatty()
    progress, close = _progress_bar(args.duration, show)
    try:
        if engine == "c":
            result = run_c_load(cfg, progress=progress)
        else:
            result = run_load_processes(cfg, progress)
    finally:
        close()
    if note:
        result.warnings.append(note)
    print(result.to_json() if args.json else format_load(result))
    return 0 if result.ok else 1


def compare_main(argv: list[str]) -> int:
    """Entry point of ``aiotcp compare``; returns the process exit status."""
    if missing_extra("aiotcp compare", COMPARE_NEEDS):
        return 2
    from aiotcp.bench.compare import compare_cli

    return compare_cli(argv)


def main(argv: list[str] | None = None) -> int:
    """``python -m aiotcp.bench.cli bench|compare ...``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    commands: dict[str, Callable[[list[str]], int]] = {"bench": bench_main, "compare": compare_main}
    if not argv or argv[0] not in commands:
        print("usage: python -m aiotcp.bench.cli bench|compare [options]", file=sys.stderr)
        return 2
    return commands[argv[0]](argv[1:])


if __name__ == "__main__":
    sys.exit(main())
