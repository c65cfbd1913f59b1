"""Which process shape serves a Config: one process, the worker supervisor, or the
development reloader (the supervisor with one worker, rolling on each source change).

The supervisor gets the way to build the Config again (the same flags, environment and
config file), which a rolling restart and a reload use to re-read the config file.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

from aiotcp import config as configmod
from aiotcp.config import ENV_PREFIX, Config

log = logging.getLogger("aiotcp")


def launch(config: Config, flags: Mapping[str, Any], config_file: str | None) -> int:
    """Serve ``config`` (built from ``flags`` and ``config_file``) until stopped; the
    process exit code."""
    from aiotcp.runner import run

    if not config.reload and config.worker_count() == 0:
        return run(config)
    from aiotcp.observe.logs import configure_logging
    from aiotcp.runner import missing_extra
    from aiotcp.workers import supervise

    missing = missing_extra(config)
    if missing is not None:
        configure_logging(config.log_level, config.log_format)
        log.error("%s", missing)
        return 2

    def rebuild() -> Config:
        return configmod.build(flags, config_file=config_file)

    if config.reload:
        from aiotcp.reload import watcher

        path = config_file or os.environ.get(ENV_PREFIX + "CONFIG") or None
        return supervise(config, rebuild, watcher(config, path))
    return supervise(config, rebuild)
