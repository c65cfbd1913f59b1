"""The compiled twins of the hot modules, built by ``setup.py`` (see ``aiotcp.core``).

Only the extension modules live here, under flat names (``aiotcp.codecs.line`` is
``aiotcp._speedups.codecs_line``). ``COMPILED`` says whether they are used: built, and
not turned off by ``AIOTCP_NO_EXTENSIONS=1``. Deciding needs no import of them.
"""

from __future__ import annotations

import os
from importlib.util import find_spec

ENV_NO_EXTENSIONS = "AIOTCP_NO_EXTENSIONS"


def _compiled() -> bool:
    if os.environ.get(ENV_NO_EXTENSIONS, "") not in ("", "0"):
        return False
    try:
        return find_spec("aiotcp._speedups.connection") is not None
    except (ImportError, ValueError):
        return False


COMPILED = _compiled()


def twin(module: str) -> str:
    """The module to import for ``module`` (``aiotcp.codecs.line``) under this core."""
    if not COMPILED:
        return module
    return "aiotcp._speedups." + module.removeprefix("aiotcp.").replace(".", "_")
