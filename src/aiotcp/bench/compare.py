"""``aiotcp compare`` (in progress)."""

from __future__ import annotations

import sys


def compare_cli(argv: list[str]) -> int:
    """Not implemented yet."""
    print("aiotcp compare: not implemented yet", file=sys.stderr)
    return 2
