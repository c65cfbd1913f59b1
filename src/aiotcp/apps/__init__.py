"""Loading what ``--app`` names: a built-in app, or a user's ``module:attr``.

Built-in apps are made from the Config by a factory, so an app's own settings
(``--ack-prefix``, ``--store``, ``--redis``, ``--broker``, ``--upstream``...) reach it. A
module that provides an app defines ``make_app(config) -> App``; :data:`BUILTIN` maps each
name to its module, imported only when chosen (an app's library is needed only when
served).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from aiotcp.app import App, AppError, as_app
from aiotcp.apps.basic import Ack, Echo

if TYPE_CHECKING:
    from aiotcp.config import Config

__all__ = ["Ack", "Echo", "BUILTIN", "load_app"]

# name -> (module, the extra that module's library comes with, or "")
BUILTIN: dict[str, tuple[str, str]] = {
    "ack": ("", ""),
    "echo": ("", ""),
    "ingest": ("aiotcp.apps.ingest", ""),
    "kv": ("aiotcp.apps.kv", "redis"),
    "pubsub": ("aiotcp.apps.pubsub", "redis"),
    "gateway": ("aiotcp.apps.gateway", "gateway"),
}


def load_app(config: Config) -> App:
    """Resolve ``config.app`` to an App (with ``api=streams``: one serving a coroutine).

    Raises AppError with a readable one-line message when the module or attribute is
    missing, not callable, or needs an extra that is not installed.
    """
    name = config.app
    if config.api == "handler":
        if name == "ack":
            return App(Ack(config.ack_prefix))
        if name == "echo":
            return App(Echo())
        if name in BUILTIN:
            module_name, extra = BUILTIN[name]
            try:
                module = importlib.import_module(module_name)
            except ImportError as e:
                hint = f" (pip install 'aiotcp[{extra}]')" if extra else ""
                raise AppError(f"app {name!r} needs {e.name or e}{hint}") from None
            app: App = module.make_app(config)
            return app
    module_name, sep, attr = name.partition(":")
    if not sep or not module_name or not attr:
        choices = ", ".join(repr(n) for n in BUILTIN)
        raise AppError(f"app must be one of {choices} or 'module:attr', not {name!r}")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise AppError(f"cannot import app module {module_name!r}: {e}") from None
    obj: Any = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise AppError(f"module {module_name!r} has no attribute {attr!r}") from None
    if not callable(obj) and not isinstance(obj, App):
        raise AppError(f"app {name!r} is not callable")
    return as_app(obj)
