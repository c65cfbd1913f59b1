"""Async and blocking handlers: bounded, ordered, concurrent per connection.

Frames wait in the connection's queue; up to ``handler_concurrency`` workers (tasks in
the server's TaskGroup) take them in order and await the handler. Each started message
(or batch, for an ``async def batch``) holds a place in ``order``; replies leave as soon
as every earlier place is answered, gathered into one write per loop turn. At
``max_pipeline`` unanswered messages the connection stops reading from the client and
resumes below half of it, so a client that pipelines faster than the handler answers
cannot grow the server's memory.

The pipe exists only while a connection has work in flight: an idle connection holds
none. The lifecycle is the one every kind has (``aiotcp.lifecycle``): these kinds only
say when they are settled (no pipe), what dropping and cancelling mean for them, and
call ``_settle`` when the pipe empties.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any

from aiotcp.codecs import Frame, FrameError
from aiotcp.connection import HOLD_PIPELINE, Connection

_PENDING: Any = object()


class Place:
    """A message (or batch) in reply order: ``n`` messages, their replies once done."""

    __slots__ = ("n", "replies")

    def __init__(self, n: int, replies: Any = _PENDING) -> None:
        self.n = n
        self.replies = replies


class Pipe:
    """A connection's work in flight."""

    __slots__ = (
        "queue", "order", "done", "answered", "tasks", "workers", "unanswered", "flush_due",
        "inline",
    )

    def __init__(self) -> None:
        self.queue: deque[Frame] = deque()
        self.order: deque[Place] = deque()
        # One worker answers in order by itself: its replies wait here, no Place each.
        self.done: list[Any] = []
        self.answered = 0
        # Workers started and not yet ended. Counted apart from ``tasks``: an eager task
        # can run to its end inside create_task, before the caller could add it.
        self.workers = 0
        self.tasks: set[asyncio.Task[Any]] = set()  # the workers' tasks, to cancel them
        self.unanswered = 0  # frames received and not yet answered on the wire
        self.flush_due = False
        # True while workers start (eagerly, on 3.12+: they run inside the start up to
        # their first suspension): the replies they finish meanwhile are flushed right
        # after, in the same read, not on a later loop turn.
        self.inline = False

    @property
    def idle(self) -> bool:
        return not self.workers and not self.order and not self.queue and not self.answered


class QueuedConnection(Connection):
    """A connection whose handler awaits: see the module doc."""

    __slots__ = ("_pipe", "_acked")

    def __init__(self) -> None:
        super().__init__()
        self._pipe: Pipe | None = None
        self._acked = 0

    @property
    def acked(self) -> int:
        return self._acked

    @property
    def busy(self) -> bool:
        return self._pipe is not None

    def data_received(self, data: bytes) -> None:
        if self._state:
            return
        frames = self._feed(data)
        if frames is not None:
            self._receive(self.codec, frames, True)

    def _receive(self, codec: Any, frames: list[Any], clean: bool) -> None:
        """Queue the frames (FrameErrors among them are answered in their turn)."""
        self.last_message = self._registry.clock
        pipe = self._pipe
        if pipe is None:
            pipe = self._pipe = Pipe()
        n = len(frames)
        self.messages += n  # frame errors are taken back when answered
        pipe.queue.extend(frames)
        pipe.unanswered += n
        if pipe.unanswered >= self._dispatch.max_pipeline:
            self._hold(HOLD_PIPELINE)
        pipe.inline = True
        try:
            self._start_workers(pipe)
        finally:
            pipe.inline = False
        if pipe.flush_due:
            self._flush(pipe)

    # ---- lifecycle hooks -----------------------------------------------------------

    def _settled(self) -> bool:
        return self._pipe is None

    def _drop(self) -> None:
        pipe = self._pipe
        if pipe is not None and pipe.queue:
            pipe.unanswered -= len(pipe.queue)
            pipe.queue.clear()
            self._flush_soon(pipe)  # the pipe may be idle now

    def _cancel(self) -> None:
        pipe, self._pipe = self._pipe, None
        if pipe is not None:
            for task in list(pipe.tasks):
                task.cancel()

    # ---- workers -------------------------------------------------------------------

    def _start_workers(self, pipe: Pipe) -> None:
        dispatch = self._dispatch
        room = dispatch.concurrency - pipe.workers
        wanted = 1 if dispatch.async_batch is not None else len(pipe.queue)
        for _ in range(min(room, wanted)):
            pipe.workers += 1
            dispatch.spawn(self._work(pipe))

    def _enlist(self, pipe: Pipe) -> asyncio.Task[Any] | None:
        task = asyncio.current_task()
        if task is not None:
            pipe.tasks.add(task)
        return task

    async def _work(self, pipe: Pipe) -> None:
        """Take frames from the queue in order until it is empty."""
        task = self._enlist(pipe)
        dispatch = self._dispatch
        queue, order = pipe.queue, pipe.order
        try:
            while queue:
                f = queue[0]
                if type(f) is FrameError:
                    queue.popleft()
                    self._frame_error(pipe, f)
                    continue
                if dispatch.async_batch is not None:
                    batch: list[Any] = []
                    while queue and type(queue[0]) is not FrameError:
                        batch.append(queue.popleft())
                    place = Place(len(batch))
                    order.append(place)
                    place.replies = await dispatch.call_batch(self, batch)
                else:
                    queue.popleft()
                    place = Place(1)
                    order.append(place)
                    place.replies = [await dispatch.call(self, f)]
                self._acked += place.n
                self._flush_soon(pipe)
        finally:
            self._retire(pipe, task)

    def _retire(self, pipe: Pipe, task: asyncio.Task[Any] | None) -> None:
        """A worker ends: count it out; the flush decides what happens next."""
        pipe.workers -= 1
        if task is not None:
            pipe.tasks.discard(task)
        self._flush_soon(pipe)

    def _frame_error(self, pipe: Pipe, f: FrameError) -> None:
        self.messages -= 1  # it was counted, but it is no message
        self._stats.error(f.code)
        pipe.order.append(Place(1, [self.codec.error_reply(f.code, f.text)]))
        if f.fatal:
            self._fatal(f)
        self._flush_soon(pipe)

    def _fatal(self, f: FrameError) -> None:
        """A fatal frame error reached its turn: close once the replies before it and its
        own error reply are written (the codec drops what came after it)."""
        self._begin_close(f.code)

    # ---- replies -------------------------------------------------------------------

    def _flush_soon(self, pipe: Pipe) -> None:
        """Replies finished in one loop turn leave together, at the end of it (or, while
        workers start inline, at the end of the read)."""
        if not pipe.flush_due:
            pipe.flush_due = True
            if not pipe.inline:
                asyncio.get_running_loop().call_soon(self._flush, pipe)

    def _flush(self, pipe: Pipe) -> None:
        pipe.flush_due = False
        order = pipe.order
        answered = pipe.answered
        if answered:
            out, pipe.done = pipe.done, []
            pipe.answered = 0
        else:
            out = []
        while order and order[0].replies is not _PENDING:
            place = order.popleft()
            answered += place.n
            out.extend(r for r in place.replies if r is not None)
        t = self._transport
        if out and t is not None and not t.is_closing():
            self._write_replies(self.codec, out)
        pipe.unanswered -= answered
        if pipe is not self._pipe:
            return  # the client is gone (connection_lost took the pipe)
        if pipe.unanswered <= self._dispatch.max_pipeline // 2:
            self._release(HOLD_PIPELINE)
        if pipe.idle:
            self._pipe = None
            self._settle()


class SequentialConnection(QueuedConnection):
    """``handler_concurrency`` 1 with a per-message handler (the default): one worker
    answers the messages in order, so its replies need no places in an order."""

    __slots__ = ()

    def _start_workers(self, pipe: Pipe) -> None:
        if not pipe.workers:
            pipe.workers = 1
            self._dispatch.spawn(self._work(pipe))

    async def _work(self, pipe: Pipe) -> None:
        task = self._enlist(pipe)
        dispatch = self._dispatch
        call = dispatch.call
        # No timeout, no timing: the handler is awaited here, without a call() coroutine
        # around each message (dispatch._call_direct, inlined).
        handler = dispatch.handler if dispatch.direct else None
        queue = pipe.queue
        try:
            while queue:
                f = queue.popleft()
                if type(f) is not FrameError:
                    if handler is not None:
                        try:
                            reply = await handler(f, self)
                        except Exception as e:
                            reply = dispatch.internal_error(e, self.codec)
                    else:
                        reply = await call(self, f)
                    self._acked += 1
                    if reply is not None:
                        pipe.done.append(reply)  # pipe.done is a new list after each flush
                else:
                    assert isinstance(f, FrameError)
                    self.messages -= 1  # it was counted, but it is no message
                    self._stats.error(f.code)
                    pipe.done.append(self.codec.error_reply(f.code, f.text))
                    if f.fatal:
                        self._fatal(f)
                pipe.answered += 1
                if not pipe.flush_due:
                    self._flush_soon(pipe)
        finally:
            self._retire(pipe, task)
