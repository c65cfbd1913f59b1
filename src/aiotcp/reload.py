"""``--reload`` (development): roll the server when its app's source or the config file
changes, as ``uvicorn --reload`` does, with watchfiles (the ``reload`` extra).

What is watched: the ``.py`` files of the app's top-level package (or of the directory
holding its module; aiotcp's own package for the built-in apps) and the config file.
A change rolls the one worker as SIGHUP does: the new code starts first, and only once
it serves does the old process drain, so a change that does not import (a syntax error
mid-edit) leaves the previous code serving and logs one line; the next change tries
again. Listeners stay open throughout: clients queue, they are never refused.
"""

from __future__ import annotations

import importlib.machinery
import logging
import os
import sys
from collections.abc import Callable

from aiotcp.apps import BUILTIN
from aiotcp.config import Config
from aiotcp.workers import Watcher

log = logging.getLogger("aiotcp.workers")


def app_root(app: str) -> str:
    """The directory whose ``.py`` files are the app's source (found without importing)."""
    if app in BUILTIN:
        return os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    top = app.partition(":")[0].split(".")[0]
    spec = importlib.machinery.PathFinder.find_spec(top, [os.getcwd(), *sys.path])
    if spec is None:
        return os.getcwd()  # not importable yet: the worker says why; a fix lands here
    if spec.submodule_search_locations:
        return os.path.abspath(next(iter(spec.submodule_search_locations)))
    return os.path.dirname(os.path.abspath(spec.origin or "."))


def watcher(config: Config, config_file: str | None) -> Watcher:
    """Watches what :func:`app_root` names and ``config_file``; calls back per change."""
    root = app_root(config.app)
    config_path = os.path.abspath(config_file) if config_file else None
    paths = [root] + ([os.path.dirname(config_path)] if config_path else [])

    def relevant(path: str) -> bool:
        if path == config_path:
            return True
        return path.endswith(".py") and os.path.commonpath([root, path]) == root

    async def watch(on_change: Callable[[str], None]) -> None:
        import watchfiles

        logging.getLogger("watchfiles").setLevel(logging.WARNING)  # our own line says what changed
        log.info("reload: watching %s", ", ".join([root] + ([config_path] if config_path else [])))
        async for changes in watchfiles.awatch(
            *dict.fromkeys(paths), watch_filter=lambda _change, path: relevant(path)
        ):
            on_change(min(path for _change, path in changes))

    return watch
