"""Which core runs: the compiled twins of the hot modules, or the pure-Python ones.

The hot modules (the lifecycle, the connection kinds, dispatch, the built-in codecs) are
compiled by Cython from the pure sources at install time (``setup.py``). Both behave
identically and have one test suite, run on both cores. ``CORE`` is ``"compiled"`` or
``"pure"``; ``AIOTCP_NO_EXTENSIONS=1`` forces the pure core. Everything that makes
connections takes its classes from here, so one process never mixes the two.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
from typing import TYPE_CHECKING

from aiotcp._speedups import COMPILED, ENV_NO_EXTENSIONS, twin

CORE = "compiled" if COMPILED else "pure"

if TYPE_CHECKING:
    from aiotcp import connection, dispatch, queued
else:
    connection = importlib.import_module(twin("aiotcp.connection"))
    queued = importlib.import_module(twin("aiotcp.queued"))
    dispatch = importlib.import_module(twin("aiotcp.dispatch"))

# The hot modules (setup.py compiles these; a test keeps the two lists equal).
HOT = (
    "aiotcp.lifecycle", "aiotcp.connection", "aiotcp.queued", "aiotcp.dispatch",
    "aiotcp.limits", "aiotcp.codecs.line", "aiotcp.codecs.length", "aiotcp.codecs.raw",
    "aiotcp.resp.codec",
)


def stale() -> list[str]:
    """The hot modules whose compiled twin was built from another version of their
    source (an edit since the last build: ``make dev`` rebuilds). Empty under the pure
    core."""
    if not COMPILED:
        return []
    out = []
    for module in HOT:
        spec = importlib.util.find_spec(module)
        assert spec is not None and spec.origin is not None
        with open(spec.origin, "rb") as f:
            sha = hashlib.sha256(f.read()).hexdigest()
        built = getattr(importlib.import_module(twin(module)), "__aiotcp_source_sha256__", None)
        if built != sha:
            out.append(module)
    return out


__all__ = ["COMPILED", "CORE", "ENV_NO_EXTENSIONS", "HOT", "connection", "dispatch",
           "queued", "stale"]
