"""Async and blocking handlers: bounded, ordered, concurrent per connection.

Frames wait in the connection's queue; up to ``handler_concurrency`` workers (tasks in
the server's TaskGroup) take them in order and await the handler. Each started message
(or batch, for an ``async def batch``) holds a place in ``order``; replies leave as soon
as every earlier place is answered, gathered into one write per loop turn. At
``max_pipeline`` unanswered messages the connection stops reading from the client and
resumes below half of it, so a client that pipelines faster than the handler answers
cannot grow the server's memory.

The pipe exists only while a connection has work in flight: an idle connection holds
none.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any

from aiotcp.codecs import Frame, FrameError
from aiotcp.connection import Connection

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
        "queue", "order", "done", "answered", "tasks", "unanswered", "held", "flush_due",
        "fatal", "eof",
    )

    def __init__(self) -> None:
        self.queue: deque[Frame] = deque()
        self.order: deque[Place] = deque()
        # One worker answers in order by itself: its replies wait here, no Place each.
        self.done: list[str] = []
        self.answered = 0
        self.tasks: set[asyncio.Task[None]] = set()
        self.unanswered = 0  # frames received and not yet answered on the wire
        self.held = False  # reading paused for max_pipeline
        self.flush_due = False
        self.fatal: str | None = None  # the code of a fatal frame error, once seen
        self.eof = False

    @property
    def idle(self) -> bool:
        return not self.tasks and not self.order and not self.queue and not self.answered


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
        if self._closing:
            return
        self.bytes_in += len(data)
        codec = self._codec
        if codec is None:
            codec = self._codec = self._new_codec()
        frames = codec.feed(data)
        if not frames:
            return
        self.last_message = self._registry.clock
        pipe = self._pipe
        if pipe is None:
            pipe = self._pipe = Pipe()
        n = len(frames)
        self.messages += n  # frame errors are taken back when answered
        pipe.queue.extend(frames)
        pipe.unanswered += n
        if not pipe.held and pipe.unanswered >= self._dispatch.max_pipeline:
            pipe.held = True
            if self.paused_since is None:
                self._transport.pause_reading()
        self._start_workers(pipe)

    def _start_workers(self, pipe: Pipe) -> None:
        dispatch = self._dispatch
        room = dispatch.concurrency - len(pipe.tasks)
        wanted = 1 if dispatch.async_batch is not None else len(pipe.queue)
        for _ in range(min(room, wanted)):
            task = dispatch.spawn(self._work(pipe))
            pipe.tasks.add(task)

    async def _work(self, pipe: Pipe) -> None:
        """Take frames from the queue in order until it is empty."""
        dispatch = self._dispatch
        queue, order = pipe.queue, pipe.order
        try:
            while queue:
                f = queue[0]
                if type(f) is not str:
                    queue.popleft()
                    self._frame_error(pipe, f)  # type: ignore[arg-type]
                    continue
                if dispatch.async_batch is not None:
                    batch: list[str] = []
                    while queue and type(queue[0]) is str:
                        batch.append(queue.popleft())  # type: ignore[arg-type]
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
            self._retire(pipe)

    def _retire(self, pipe: Pipe) -> None:
        """A worker ends: forget its task; the flush decides what happens next."""
        task = asyncio.current_task()
        if task is not None:
            pipe.tasks.discard(task)
        self._flush_soon(pipe)

    def _frame_error(self, pipe: Pipe, f: FrameError) -> None:
        self.messages -= 1  # it was counted, but it is no message
        self._stats.error(f.code)
        pipe.order.append(Place(1, [self.codec.error_reply(f.code, f.text)]))
        if f.fatal:
            pipe.fatal = f.code
            pipe.unanswered -= len(pipe.queue)
            pipe.queue.clear()
            self._closing = True
        self._flush_soon(pipe)

    def _flush_soon(self, pipe: Pipe) -> None:
        """Replies finished in one loop turn leave together, at the end of it."""
        if not pipe.flush_due:
            pipe.flush_due = True
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
            data = self.codec.encode(out)
            self.bytes_out += len(data)
            t.write(data)
        pipe.unanswered -= answered
        if pipe.held and pipe.unanswered <= self._dispatch.max_pipeline // 2:
            pipe.held = False
            if self.paused_since is None and t is not None and not t.is_closing():
                t.resume_reading()
        if pipe.idle and pipe is self._pipe:
            self._pipe = None
            self._finish(pipe)

    def _finish(self, pipe: Pipe) -> None:
        """Nothing is in flight any more: act on what happened meanwhile."""
        t = self._transport
        if t is None or t.is_closing():
            return
        if pipe.fatal is not None:
            self.close_reason = pipe.fatal
            t.close()
        elif self._closing and self.close_reason == "shutdown":
            self._end_with_shutdown(eof=pipe.eof)
        elif self._closing:
            t.close()
        elif pipe.eof:
            self._closing = True
            self.close_reason = "eof"
            t.close()
        elif pipe.held:
            pipe.held = False
            if self.paused_since is None:
                t.resume_reading()

    def _reading_held(self) -> bool:
        return self._pipe is not None and self._pipe.held


class SequentialConnection(QueuedConnection):
    """``handler_concurrency`` 1 with a per-message handler (the default): one worker
    answers the messages in order, so its replies need no places in an order."""

    __slots__ = ()

    def _start_workers(self, pipe: Pipe) -> None:
        if not pipe.tasks:
            pipe.tasks.add(self._dispatch.spawn(self._work(pipe)))

    async def _work(self, pipe: Pipe) -> None:
        call = self._dispatch.call
        queue = pipe.queue
        try:
            while queue:
                f = queue.popleft()
                if type(f) is str:
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
                        pipe.fatal = f.code
                        pipe.unanswered -= len(queue)
                        queue.clear()
                        self._closing = True
                pipe.answered += 1
                if not pipe.flush_due:
                    self._flush_soon(pipe)
        finally:
            self._retire(pipe)

    # ---- lifecycle -----------------------------------------------------------------

    def eof_received(self) -> bool:
        pipe = self._pipe
        if pipe is None:
            return super().eof_received()
        pipe.eof = True  # close once the replies to what arrived are out
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        pipe, self._pipe = self._pipe, None
        if pipe is not None:
            pipe.queue.clear()
            for task in list(pipe.tasks):
                task.cancel()
        super().connection_lost(exc)

    def close(self) -> None:
        """Close after the replies to the messages already started; drop the rest."""
        if self._closing or self._transport is None:
            return
        self._closing = True
        self.close_reason = "handler"
        pipe = self._pipe
        if pipe is None:
            self._close_transport()
            return
        pipe.unanswered -= len(pipe.queue)
        pipe.queue.clear()

    def shut_down(self) -> None:
        """Answer what arrived, then ``ERR shutdown`` and half-close."""
        if self._closing or self._transport is None:
            return
        self._closing = True
        self.close_reason = "shutdown"
        if self._transport.is_closing():
            return
        if self._pipe is None:
            self._end_with_shutdown(eof=False)
        # else: _finish ends it once the pipe is idle
