"""Baseline servers that `aiotcp compare` measures aiotcp against.

Each module is runnable as ``python -m aiotcp.bench.baselines.<name> --host H --port P``.
Contract shared by all of them:

* bind ``--host``/``--port`` (``--port 0`` picks a free port);
* once bound, print ``listening on HOST:PORT`` to stderr (flushed);
* reply ``已收到: <line>\\n`` to every ``\\n``-terminated line (the ``seed`` ones behave as the
  article wrote them: read up to 100 bytes, reply ``已收到: <bytes read>``);
* exit with status 0 on SIGTERM or SIGINT.

They are written the way a user would write each style idiomatically, so the comparison
measures the style, not a strawman.
"""

from __future__ import annotations

#: Every baseline module name, in the order compare runs them.
BASELINES: tuple[str, ...] = (
    "seed",
    "seed_noprint",
    "streams",
    "asyncio_protocol",
    "uvloop_protocol",
    "threads",
    "processes",
    "gevent",
    "trio",
)

#: Baselines that follow the article's read(100)-and-echo behaviour instead of line framing.
LOOSE_BASELINES: frozenset[str] = frozenset({"seed", "seed_noprint"})

#: Optional third-party library each baseline needs (skipped with a note when missing).
REQUIRES: dict[str, str] = {"gevent": "gevent", "trio": "trio", "uvloop_protocol": "uvloop"}
