"""Blocked-loop detector: a thread that notices when the event loop stops turning.

The loop side is one ``call_later`` tick every ``threshold / 4`` that stores a
timestamp; nothing runs per message. A daemon thread wakes at the same period and, when
the stored timestamp is older than the threshold, logs once per stall the stack of the
loop thread's current frame and adds one to ``Stats.loop_stalls``.

The record names the line to blame: the innermost frame, among those the loop is
running, of code that is not asyncio, uvloop, aiotcp or the rest of the standard
library, i.e. the user's (a handler blocked in ``threading.Event.wait`` is named, not
``threading.py``). With none, the innermost aiotcp frame; with no frame of either (the
loop is between callbacks: many short ones added up to the stall, as under overload)
the record says so, rather than naming ``asyncio/runners.py`` where the loop was entered.

Limits: the thread needs the GIL to look. Python code that blocks (``time.sleep``, a
socket call, a busy loop) lets it run; a C extension that holds the GIL for the whole
stall is reported only after it returns, with whatever stack the loop thread has then.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import threading
import time
import traceback
from pathlib import Path
from types import FrameType
from typing import Protocol

log = logging.getLogger("aiotcp.watchdog")

# The heartbeat ticks four times per threshold so that a tick that is merely late by
# scheduling jitter never looks like a stall, and a real stall is seen within 1.25x.
TICKS_PER_THRESHOLD = 4

# Frames shown in the log record, innermost last (the blocking line is the last one).
STACK_LIMIT = 30

# Where the code a stall is never blamed on lives (see the module doc).
_AIOTCP_DIR = str(Path(__file__).resolve().parents[1]) + os.sep
_STDLIB_DIR = os.path.dirname(os.__file__) + os.sep
_ASYNCIO_DIR = os.path.dirname(asyncio.__file__) + os.sep
# Frames in which the loop runs its callbacks: what is outside them (the runner, the
# CLI, a script calling aiotcp.serve) waits for the loop and is no part of a stall.
_LOOP_ENTRIES = frozenset({"run_forever", "run_until_complete", "run"})
BETWEEN_CALLBACKS = "between callbacks"


class _StallCounter(Protocol):
    loop_stalls: int


class Watchdog:
    """Handle of a running watchdog; ``stop()`` ends the heartbeat and the thread.

    Only the watchdog thread writes ``stats.loop_stalls``, so the plain ``+= 1`` needs no
    lock. ``stalls`` counts the stalls this watchdog saw (the same number).
    """

    def __init__(
        self, loop: asyncio.AbstractEventLoop, stats: _StallCounter, threshold_ms: float
    ) -> None:
        if threshold_ms <= 0:
            raise ValueError("threshold_ms must be > 0")
        self.threshold = threshold_ms / 1000.0
        self.period = self.threshold / TICKS_PER_THRESHOLD
        self.stalls = 0
        self._loop = loop
        self._stats = stats
        self._last_tick = time.monotonic()
        self._handle: asyncio.TimerHandle | None = None
        self._stopped = threading.Event()
        self._loop_thread_id = 0
        self._thread = threading.Thread(target=self._watch, name="aiotcp-watchdog", daemon=True)

    def start(self) -> None:
        """Begin watching. Must be called from the loop's own thread."""
        self._loop_thread_id = threading.get_ident()
        self._last_tick = time.monotonic()
        self._handle = self._loop.call_later(self.period, self._tick)
        self._thread.start()

    def _tick(self) -> None:
        self._last_tick = time.monotonic()
        if not self._stopped.is_set():
            self._handle = self._loop.call_later(self.period, self._tick)

    def stop(self) -> None:
        """Stop the heartbeat and the thread (waits up to one period). Idempotent.

        Call it from the loop thread (or after the loop has stopped).
        """
        self._stopped.set()
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=max(1.0, 2 * self.period))

    def _watch(self) -> None:
        reported_tick = -1.0  # the heartbeat value of the stall already reported
        while not self._stopped.wait(self.period):
            last = self._last_tick
            blocked = time.monotonic() - last
            if blocked <= self.threshold or last == reported_tick:
                continue
            if self._stopped.is_set() or self._loop.is_closed():
                return
            if not self._loop.is_running():
                continue  # a stopped loop is not a blocked one
            reported_tick = last
            self.stalls += 1
            self._stats.loop_stalls += 1
            self._report(blocked)

    def _report(self, blocked: float) -> None:
        frame = sys._current_frames().get(self._loop_thread_id)
        where, stack = _describe(frame)
        at = (
            "by many short callbacks (none running now)"
            if where == BETWEEN_CALLBACKS
            else f"at {where}"
        )
        log.warning(
            "event loop blocked for %.0f ms (threshold %.0f ms) %s\n%s",
            blocked * 1000,
            self.threshold * 1000,
            at,
            stack,
            extra={"blocked_ms": round(blocked * 1000, 1), "where": where},
        )


def _describe(frame: FrameType | None) -> tuple[str, str]:
    """(``file:line in function`` of the frame to blame (see the module doc), or
    BETWEEN_CALLBACKS; the formatted stack of ``frame``)."""
    if frame is None:
        return "<loop thread not found>", ""
    stack = "".join(traceback.format_stack(frame, limit=STACK_LIMIT)).rstrip("\n")
    blamed = _blame(frame)
    if blamed is None:
        return BETWEEN_CALLBACKS, stack
    code = blamed.f_code
    return f"{code.co_filename}:{blamed.f_lineno} in {code.co_name}", stack


def _blame(frame: FrameType) -> FrameType | None:
    """The innermost frame the loop runs of the user's code; else the innermost aiotcp
    frame; None if the loop runs neither."""
    ours = None
    f: FrameType | None = frame
    while f is not None and not _is_loop_entry(f):
        filename = f.f_code.co_filename
        if not _is_library(filename):
            return f
        if ours is None and filename.startswith(_AIOTCP_DIR):
            ours = f
        f = f.f_back
    return ours


def _is_loop_entry(frame: FrameType) -> bool:
    code = frame.f_code
    return code.co_name in _LOOP_ENTRIES and code.co_filename.startswith(_ASYNCIO_DIR)


def _is_library(filename: str) -> bool:
    """True for aiotcp, uvloop and the standard library (asyncio included)."""
    if filename.startswith((_AIOTCP_DIR, "<frozen ")):
        return True
    uvloop = sys.modules.get("uvloop")
    uvloop_file = getattr(uvloop, "__file__", None)
    if uvloop_file and filename.startswith(os.path.dirname(uvloop_file) + os.sep):
        return True
    if filename.startswith(_STDLIB_DIR):  # but not the site-packages a Python may hold
        return not filename[len(_STDLIB_DIR) :].startswith(("site-packages", "dist-packages"))
    return False


def start_watchdog(
    loop: asyncio.AbstractEventLoop, stats: _StallCounter, threshold_ms: float
) -> Watchdog:
    """Start a watchdog on ``loop`` (call from the loop thread, loop running or about to).

    Returns the Watchdog; call ``.stop()`` at shutdown. Raises ValueError if
    ``threshold_ms <= 0`` (``block_threshold = 0`` means: do not call this).
    """
    watchdog = Watchdog(loop, stats, threshold_ms)
    watchdog.start()
    return watchdog
