"""Logging set-up (text or JSON lines) and the per-connection access log.

``configure_logging`` owns the root handler: one stream handler on stderr, so every
``logging.getLogger(...)`` in aiotcp and in user apps ends up in one place, in one format.

The access log is one INFO record per connection, written once at close on the logger
``aiotcp.access``. ``log_access`` returns at once when that logger is not enabled for
INFO, so ``--no-access-log`` (or a level above INFO) costs one cached level check.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from typing import IO, Any

ACCESS_LOGGER = "aiotcp.access"

_access = logging.getLogger(ACCESS_LOGGER)

# Attributes every LogRecord has; anything else on a record came from ``extra=`` and is
# emitted as its own JSON field.
_STANDARD_ATTRS = frozenset(
    vars(logging.LogRecord("x", logging.INFO, "x", 0, "x", None, None)).keys()
) | {"message", "asctime", "taskName"}

# Marks the handler configure_logging installed, so a second call replaces it instead of
# adding a duplicate (tests and embedders call it more than once).
_HANDLER_MARK = "_aiotcp_handler"

# Set by the worker supervisor in each worker's environment; tags every record so the
# interleaved stderr of N workers can be told apart.
ENV_WORKER_INDEX = "AIOTCP_WORKER_INDEX"


class _WorkerTag(logging.Filter):
    """Adds ``worker`` (index) and ``pid`` to every record of a supervised worker."""

    def __init__(self, index: int) -> None:
        super().__init__()
        self.index = index
        self.pid = os.getpid()

    def filter(self, record: logging.LogRecord) -> bool:
        record.worker = self.index
        record.pid = self.pid
        return True


def _iso_time(created: float) -> str:
    """``2024-05-01T12:00:00.123Z``: UTC, millisecond resolution, sortable."""
    seconds = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created))
    return f"{seconds}.{int(created % 1 * 1000):03d}Z"


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, then every extra field.

    Values that JSON cannot encode are written as their ``str()``; an exception is
    written as ``exc`` (the formatted traceback). Never raises on odd extras.
    """

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": _iso_time(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD_ATTRS and not key.startswith("_"):
                out[key] = value
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        if record.stack_info:
            out["stack"] = self.formatStack(record.stack_info)
        return json.dumps(out, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    """``2024-05-01T12:00:00.123Z INFO aiotcp.server: message`` (UTC, like the JSON).

    In a worker: ``... INFO aiotcp [worker 1 pid 4242]: message``.
    """

    def __init__(self, worker: bool = False) -> None:
        tag = " [worker %(worker)s pid %(pid)s]" if worker else ""
        super().__init__(f"%(asctime)s %(levelname)s %(name)s{tag}: %(message)s")

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return _iso_time(record.created)


def configure_logging(
    level: str = "info",
    fmt: str = "text",
    access_log: bool = True,
    stream: IO[str] | None = None,
) -> None:
    """Send all logging to ``stream`` (default stderr) in ``fmt`` ("text" or "json").

    ``level`` is a logging level name (case-insensitive). ``access_log=False`` silences
    ``aiotcp.access`` only. In a supervised worker every record also carries ``worker``
    and ``pid``. Calling it again replaces the previous aiotcp handler.
    Raises ValueError for an unknown level or format.
    """
    numeric = logging.getLevelNamesMapping().get(level.upper())
    if numeric is None:
        raise ValueError(f"unknown log level {level!r}")
    worker = os.environ.get(ENV_WORKER_INDEX, "")
    if fmt == "json":
        formatter: logging.Formatter = JsonFormatter()
    elif fmt == "text":
        formatter = TextFormatter(worker=worker.isdigit())
    else:
        raise ValueError(f"unknown log format {fmt!r} (text or json)")
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, _HANDLER_MARK, False)]:
        root.removeHandler(old)
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(formatter)
    if worker.isdigit():
        handler.addFilter(_WorkerTag(int(worker)))
    setattr(handler, _HANDLER_MARK, True)
    root.addHandler(handler)
    root.setLevel(numeric)
    # NOTSET inherits the root level; WARNING drops the INFO access records.
    _access.setLevel(logging.NOTSET if access_log else logging.WARNING)


def format_peer(peer: object) -> str:
    """``host:port`` for an IPv4 peer, ``[host]:port`` for IPv6, ``unix`` for an unnamed
    Unix-socket client, ``str(peer)`` otherwise."""
    if isinstance(peer, tuple) and len(peer) >= 2:
        host, port = peer[0], peer[1]
        if ":" in str(host):
            return f"[{host}]:{port}"
        return f"{host}:{port}"
    if peer == "":
        return "unix"
    return "-" if peer is None else str(peer)


def log_access(
    peer: object,
    duration_s: float,
    messages: int,
    bytes_in: int,
    bytes_out: int,
    reason: str,
) -> None:
    """Log one closed connection at INFO on ``aiotcp.access``; no-op when not enabled.

    ``peer`` is the transport's ``peername`` (tuple, str or None); ``reason`` says why it
    closed ("eof", "idle-timeout", "too-long", "shutdown", ...). Never raises.
    """
    if not _access.isEnabledFor(logging.INFO):
        return
    addr = format_peer(peer)
    _access.info(
        "%s %.3fs messages=%d in=%d out=%d close=%s",
        addr,
        duration_s,
        messages,
        bytes_in,
        bytes_out,
        reason,
        extra={
            "peer": addr,
            "duration_s": round(duration_s, 6),
            "messages": messages,
            "bytes_in": bytes_in,
            "bytes_out": bytes_out,
            "reason": reason,
        },
    )
