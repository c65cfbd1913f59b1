"""``aiotcp serve | client | bench | compare | --version``: parse flags, build a Config,
hand over.

Each Config field is one flag: ``Config.idle_timeout`` is ``--idle-timeout``. Flags
default to None so that only those given override the environment and the file. A bad
setting is one line naming where it came from and exit code 2.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from dataclasses import asdict, fields
from typing import NoReturn

from aiotcp import config as configmod
from aiotcp.config import Config, ConfigError


class CommandParser(argparse.ArgumentParser):
    """An ArgumentParser whose usage error is two lines, not the whole option list:
    ``usage: PROG [options] ('PROG --help' for the options)`` and the error itself."""

    def error(self, message: str) -> NoReturn:
        print(f"usage: {self.prog} [options] ('{self.prog} --help' for the options)",
              file=sys.stderr)  # fmt: skip
        self.exit(2, f"{self.prog}: error: {message}\n")


def serve_parser() -> argparse.ArgumentParser:
    p = CommandParser(
        prog="aiotcp serve",
        description="Serve a message handler over TCP (default: the ack app on 127.0.0.1:8888).",
        epilog="Every flag is also an environment variable AIOTCP_<FLAG> and a key in the "
        "--config TOML file. Precedence: flag > env > file > default.",
    )
    types = configmod.field_types()
    for f in fields(Config):
        flag = "--" + f.name.replace("_", "-")
        kind = types[f.name]
        meta = f.metadata
        help_text = f"{meta['help']} (default: {f.default!r})"
        if kind is bool:
            p.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction,
                           default=None, help=help_text)
        else:
            p.add_argument(flag, dest=f.name, type=kind, default=None,
                           choices=meta.get("choices"), help=help_text,
                           metavar=f.name.upper() if not meta.get("choices") else None)
    p.add_argument("--config", dest="config_file", default=None,
                   help="TOML file of settings (also AIOTCP_CONFIG)")
    p.add_argument("--print-config", action="store_true",
                   help="print the resulting settings as JSON and exit")
    return p


def serve_main(argv: list[str]) -> int:
    args = vars(serve_parser().parse_args(argv))
    config_file = args.pop("config_file")
    print_config = args.pop("print_config")
    try:
        config = configmod.build(args, config_file=config_file)
    except ConfigError as e:
        print(f"aiotcp serve: error: {e}", file=sys.stderr)
        return 2
    if print_config:
        print(json.dumps(asdict(config), ensure_ascii=False, indent=2))
        return 0
    from aiotcp.launch import launch

    return launch(config, args, config_file)


def version_text() -> str:
    """What ``aiotcp --version`` prints: aiotcp's version, then the Python and the event
    loop it runs on (the one ``--loop auto`` picks), as ``name version`` parts."""
    from aiotcp import __version__
    from aiotcp.core import CORE

    parts = [f"{platform.python_implementation()} {platform.python_version()}", f"{CORE} core"]
    try:
        import uvloop
    except ImportError:
        parts.append("event loop asyncio (uvloop not installed)")
    else:
        parts.append(f"event loop uvloop {getattr(uvloop, '__version__', '(version unknown)')}")
    return f"aiotcp {__version__} ({', '.join(parts)})"


USAGE = """usage: aiotcp {serve,check,client,bench,compare} [options] | aiotcp --version

  serve     run a server (default app: reply '已收到: <message>' on 127.0.0.1:8888)
  check     load what 'serve' would serve with the same flags, print it, exit 0 or 1
  client    send stdin lines to a server (plain TCP or TLS) and print the replies
  bench     load-test a server speaking aiotcp's framings
  compare   benchmark aiotcp against baseline servers and write a report

'aiotcp COMMAND --help' for the options of each."""


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in ("-h", "--help"):
        print(USAGE)
        return 0 if args else 2
    if args[0] == "--version":
        print(version_text())
        return 0
    command, rest = args[0], args[1:]
    if command == "serve":
        return serve_main(configmod.join_repeated(rest))
    if command == "check":
        from aiotcp.check import check_main

        return check_main(rest, serve_parser)
    if command == "client":
        from aiotcp.client import client_main

        return client_main(rest)
    if command == "bench":
        from aiotcp.bench.cli import bench_main

        return bench_main(rest)
    if command == "compare":
        from aiotcp.bench.cli import compare_main

        return compare_main(rest)
    print(f"aiotcp: unknown command {command!r}\n\n{USAGE}", file=sys.stderr)
    return 2
