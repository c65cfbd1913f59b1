"""The compiled benchmark programs: a C load engine (``loadgen.c``), a C line server
(``server.c``) and a connection-rate client (``connrate.c``).

``build(name)`` compiles ``<name>.c`` with the system C compiler on first use and returns the
path of the executable. Executables live in a per-user cache directory, named by a hash of
the sources (the program's ``.c`` and every ``.h`` here), the compiler and the flags, so
an edited source or another compiler builds anew and a cached build is reused by every
later run. The compiler is ``$AIOTCP_CC`` when set (a name on PATH or a path; setting it
to something absent turns the compiled programs off), else ``cc`` or ``gcc``. Without
one, ``build`` raises ``CompilerUnavailable`` and callers fall back to the Python engine or
skip the C server.
"""

from __future__ import annotations

import functools
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
from pathlib import Path

#: Sources shipped with the package (package data), by program name.
PROGRAMS: tuple[str, ...] = ("loadgen", "server", "connrate")
#: Optimised, warnings on; nothing machine-specific (-march) so a shared cache stays valid.
CFLAGS: tuple[str, ...] = ("-O2", "-Wall", "-std=gnu11")
LIBS: tuple[str, ...] = ("-lm",)
#: A cold compile of either program takes well under a second; this only guards a hung compiler.
COMPILE_TIMEOUT = 120.0

SOURCE_DIR = Path(__file__).parent


class CompilerUnavailable(RuntimeError):
    """No usable C compiler, or the compile failed; ``str()`` says which and why."""


def cache_dir() -> Path:
    """Per-user cache directory for built programs (``$AIOTCP_CACHE_DIR`` overrides it)."""
    if env := os.environ.get("AIOTCP_CACHE_DIR"):
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "aiotcp" / "native"


def compiler() -> str:
    """Absolute path of the C compiler to use; raises CompilerUnavailable if there is none."""
    wanted = os.environ.get("AIOTCP_CC")
    names = [wanted] if wanted else ["cc", "gcc"]
    for name in names:
        found = shutil.which(name)
        if found:
            return found
    raise CompilerUnavailable(
        f"no C compiler ({'AIOTCP_CC=' + wanted if wanted else 'cc or gcc'} not found)"
    )


def build(name: str) -> str:
    """Return the path of the built program ``name`` (from PROGRAMS), compiling it if needed.

    Raises CompilerUnavailable when there is no compiler or the compile fails.
    """
    if name not in PROGRAMS:
        raise ValueError(f"unknown program {name!r}; choose from {PROGRAMS}")
    return _build(name, compiler(), str(cache_dir()))


@functools.cache
def _build(name: str, cc: str, cache: str) -> str:
    sources = [(SOURCE_DIR / f"{name}.c").read_bytes()]
    sources += [h.read_bytes() for h in sorted(SOURCE_DIR.glob("*.h"))]  # what it may include
    flags = " ".join(CFLAGS + LIBS).encode()
    key = hashlib.sha256(
        b"\0".join([*sources, cc.encode(), flags, platform.machine().encode()])
    ).hexdigest()[:16]
    out_dir = Path(cache)
    target = out_dir / f"aiotcp-{name}-{key}"
    if os.access(target, os.X_OK):
        return str(target)
    out_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, tmp = tempfile.mkstemp(prefix=f".{name}-", dir=out_dir)
    os.close(fd)
    try:
        done = subprocess.run(
            [cc, *CFLAGS, "-o", tmp, str(SOURCE_DIR / f"{name}.c"), *LIBS],
            capture_output=True, text=True, timeout=COMPILE_TIMEOUT, check=False,
        )  # fmt: skip
        if done.returncode != 0:
            raise CompilerUnavailable(f"{cc} failed to build {name}.c: {done.stderr.strip()[-500:]}")
        os.chmod(tmp, 0o755)
        os.replace(tmp, target)  # atomic: a concurrent build of the same key is harmless
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise CompilerUnavailable(f"{cc} could not build {name}.c: {exc}") from exc
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return str(target)
