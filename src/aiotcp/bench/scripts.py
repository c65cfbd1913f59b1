"""What every script in ``benchmarks/`` shares: its command line and its result file.

Each script parses its flags with :func:`parser` (``--help`` prints them; a bad flag is one
line on stderr and exit status 2), has a ``--smoke`` mode (a tiny workload that finishes in
seconds: ``make test`` runs it) and writes one JSON result file with :func:`write_result`,
which puts the run's stamp (commit, machine, other processes' CPU share: see
``aiotcp.bench.stamp``) at its top.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

from aiotcp.bench.stamp import ROOT, Recorder

#: Files in benchmarks/ that are not benchmark scripts, with the reason.
NOT_SCRIPTS: dict[str, str] = {
    "flood_apps.py": "the handlers pipeline_flood.py serves (--app flood_apps:sleepy)",
}
BENCHMARKS = ROOT / "benchmarks"


def script_names() -> list[str]:
    """The benchmark scripts in benchmarks/, sorted (``make figures`` runs every one)."""
    return sorted(p.name for p in BENCHMARKS.glob("*.py") if p.name not in NOT_SCRIPTS)


class ScriptParser(argparse.ArgumentParser):
    """An ArgumentParser whose usage error is one line: the error and where help is."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} ('{self.prog} --help' for the options)\n")


def parser(doc: str | None, out: str) -> ScriptParser:
    """The parser of a benchmark script: its docstring as help, ``--out`` (default ``out``)
    and ``--smoke``. The caller adds its own flags and calls :func:`parse`."""
    prog = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "benchmark"
    p = ScriptParser(
        prog=prog, description=doc, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--out", default=out, help=f"result file (default {out})")
    p.add_argument(
        "--smoke", action="store_true",
        help="a tiny workload that finishes in seconds (checks the script works; "
        "its figures mean nothing)",
    )  # fmt: skip
    return p


def parse(
    p: argparse.ArgumentParser, smoke: dict[str, Any], argv: Sequence[str] | None = None
) -> argparse.Namespace:
    """Parse ``argv``; with ``--smoke`` the defaults become ``smoke`` (flags given still win)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if "--smoke" in args:
        p.set_defaults(**smoke)
    return p.parse_args(args)


def write_result(path: str, data: dict[str, Any], recorder: Recorder) -> dict[str, Any]:
    """Write ``{"stamp": ..., **data}`` as JSON to ``path`` (directories made as needed);
    return what was written."""
    result = {"stamp": recorder.stamp(), **data}
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, "w") as f:
        json.dump(result, f, indent=1, ensure_ascii=False)
        f.write("\n")
    return result


if __name__ == "__main__":  # benchmarks/run.sh --all: the scripts to run, one a line
    print("\n".join(str(BENCHMARKS / name) for name in script_names()))
