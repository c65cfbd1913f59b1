"""Loading what ``--app`` names: a built-in app, or a user's ``module:attr``.

Built-in apps are made from the Config by a factory, so an app's own settings
(``--ack-prefix``, ``--store``, ``--redis``, ``--broker``, ``--upstream``...) reach it. A
module that provides an app defines ``make_app(config) -> App``; :data:`BUILTIN` maps each
name to its module, imported only when chosen (an app's library is needed only when
served).
"""

from __future__ import annotations

import importlib
from collections.abc import AsyncGenerator
from typing import TYPE_CHECKING, Any

from aiotcp.app import App, AppError, State, as_app
from aiotcp.apps.basic import Ack, Echo
from aiotcp.loading import LoadError, import_object

if TYPE_CHECKING:
    from aiotcp.config import Config

__all__ = ["Ack", "Echo", "BUILTIN", "app_name", "counting_app", "load_app"]

# name -> (module, the extra that module's library comes with, or "")
BUILTIN: dict[str, tuple[str, str]] = {
    "ack": ("", ""),
    "echo": ("", ""),
    "ingest": ("aiotcp.apps.ingest", ""),
    "kv": ("aiotcp.apps.kv", "redis"),
    "pubsub": ("aiotcp.apps.pubsub", "redis"),
    "gateway": ("aiotcp.apps.gateway", "gateway"),
    "redis": ("aiotcp.apps.redis", ""),
}


def load_app(config: Config) -> App:
    """Resolve ``config.app`` to an App (with ``api=streams``: one serving a coroutine).

    Raises AppError with a readable one-line message when the module or attribute is
    missing, not callable, or needs an extra that is not installed.
    """
    name = config.app
    if config.api == "handler":
        if name == "ack":
            return App(Ack(config.ack_prefix, binary=config.binary))
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
    if ":" not in name:
        choices = ", ".join(repr(n) for n in BUILTIN)
        raise AppError(f"app must be one of {choices} or 'module:attr', not {name!r}")
    try:
        obj: Any = import_object(name, "app")
    except LoadError as e:
        raise AppError(str(e)) from None
    if not callable(obj) and not isinstance(obj, App):
        raise AppError(f"app {name!r} is not callable")
    return as_app(obj)


def app_name(obj: Any) -> str:
    """How the log names a handler or App served by ``aiotcp.serve(obj)``: the handler's
    ``module:qualname`` (a handler object's class's; ``__main__:handle`` in a script)."""
    if isinstance(obj, App):
        try:
            obj = obj.target
        except AppError:
            return "an App without a handler"
    named = obj if hasattr(obj, "__qualname__") else type(obj)
    module = getattr(named, "__module__", None) or "?"
    return f"{module}:{getattr(named, '__qualname__', repr(named))}"


def counting_app(handler: Any) -> App:
    """An App serving ``handler``, which counts its own ``ERR`` replies in its ``stats``:
    once the app runs, those are the serving server's counters (``aiotcp_errors_total``).
    The handler's own lifespans are added after this one."""
    app = App(handler)

    @app.lifespan
    async def count_into_the_server(state: State) -> AsyncGenerator[None, None]:
        if app.stats is not None:  # set by the server before its lifespans run
            handler.stats = app.stats
        yield

    return app
