"""Importing what a setting names as ``module:attr`` (an app, a codec).

As uvicorn and gunicorn do, the current directory comes first on the import path while
the module is imported, so ``aiotcp serve --app myapp:handle`` next to ``myapp.py``
works without installing it.
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import Any


class LoadError(ValueError):
    """What a setting names cannot be imported; the message says why, in one line."""


def import_object(spec: str, what: str) -> Any:
    """The object ``spec`` (``module:attr``, attr may be dotted) names.

    ``what`` names the setting in messages (``app``, ``codec``). Raises LoadError.
    """
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise LoadError(f"{what} must be 'module:attr', not {spec!r}")
    cwd = os.getcwd()
    added = cwd not in sys.path
    if added:
        sys.path.insert(0, cwd)
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise LoadError(f"cannot import {what} module {module_name!r}: {e}") from None
    except Exception as e:  # noqa: BLE001 (the module itself raised: a bad deploy, a typo)
        raise LoadError(
            f"cannot import {what} module {module_name!r}: {type(e).__name__}: {e}"
        ) from None
    finally:
        if added and cwd in sys.path:
            sys.path.remove(cwd)
    obj: Any = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise LoadError(f"module {module_name!r} has no attribute {attr!r}") from None
    return obj
