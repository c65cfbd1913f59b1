"""The compiled core: the hot modules, compiled by Cython from the pure-Python sources.

The pure modules are the source of truth and stay importable as they are. At build
time (``pip install``, so ``make serve`` and ``make test``) each hot module is copied to
``build/speedups/`` under the name ``aiotcp._speedups.<name>``, with its imports of other
hot modules pointed at their compiled twins, and compiled with the system compiler.
``aiotcp.core`` chooses at import: the compiled modules when they are there, the pure
ones when they are not or when ``AIOTCP_NO_EXTENSIONS=1`` (as aiohttp, yarl and
multidict do). No compiler, no Cython, or a failed build: the pure core, and the
install still succeeds (the extensions are optional).
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

from setuptools import Extension, setup

ROOT = Path(__file__).resolve().parent
SRC = ROOT / "src"
OUT = ROOT / "build" / "speedups"

# What each read runs: the lifecycle, the connection kinds, dispatch, the built-in
# codecs (the Redis protocol's too). Listed by dotted module name; compiled as aiotcp._speedups.<flat name>.
HOT = (
    "aiotcp.lifecycle",
    "aiotcp.connection",
    "aiotcp.queued",
    "aiotcp.dispatch",
    "aiotcp.limits",
    "aiotcp.codecs.line",
    "aiotcp.codecs.length",
    "aiotcp.codecs.raw",
    "aiotcp.resp.codec",
)


def compiled_name(module: str) -> str:
    return "aiotcp._speedups." + module.removeprefix("aiotcp.").replace(".", "_")


IMPORT = re.compile(r"^(\s*from\s+)(aiotcp(?:\.\w+)+)(\s+import\b)", re.M)


def twin_source(module: str) -> Path:
    """Write the compiled twin's source (imports of hot modules redirected); its path."""
    source = SRC / (module.replace(".", "/") + ".py")
    text = source.read_text()

    def redirect(m: re.Match[str]) -> str:
        name = m.group(2)
        return m.group(1) + (compiled_name(name) if name in HOT else name) + m.group(3)

    out = OUT / (compiled_name(module).replace(".", "/") + ".py")
    out.parent.mkdir(parents=True, exist_ok=True)
    # The source the twin was built from, so that a stale build is seen (tests/test_core.py).
    sha = hashlib.sha256(source.read_bytes()).hexdigest()
    body = IMPORT.sub(redirect, text) + f'\n__aiotcp_source_sha256__ = "{sha}"\n'

    if not out.exists() or out.read_text() != body:
        out.write_text(body)
    return out


def extensions() -> list[Extension]:
    if os.environ.get("AIOTCP_NO_EXTENSIONS", "") not in ("", "0"):
        return []
    try:
        from Cython.Build import cythonize
    except ImportError:
        return []
    exts = [
        Extension(compiled_name(m), [str(twin_source(m))], optional=True) for m in HOT
    ]
    return cythonize(  # type: ignore[no-any-return]
        exts,
        build_dir=str(OUT / "c"),
        compiler_directives={
            "language_level": 3,
            # Annotations are documentation, as in the pure modules: no type checks
            # the pure core would not make.
            "annotation_typing": False,
            "binding": True,
            "embedsignature": True,
        },
        quiet=True,
    )


setup(ext_modules=extensions())
