"""One client connection: asyncio.Protocol <-> codec <-> handler.

The hot path (a sync handler, every frame valid) is ``data_received``: one codec feed,
one handler batch, one encode, one ``transport.write``. No Task, no coroutine, no timer
and no logging per message. Everything else (frame errors, async and blocking handlers,
handler errors) takes the slow path, chosen per read by one flag check.
"""

from __future__ import annotations

import asyncio
from collections import deque
from time import perf_counter
from typing import TYPE_CHECKING, Any

from aiotcp.codecs import Codec, Frame, FrameError

if TYPE_CHECKING:
    from aiotcp.observe.stats import Stats
    from aiotcp.server import Server

# Output buffer marks, per connection. Above HIGH the client is not keeping up: stop
# reading from it (so it cannot make us buffer more) until it drains below LOW. asyncio
# uses 64 KiB as its default high-water mark; so do we.
WRITE_HIGH_WATER = 64 * 1024
WRITE_LOW_WATER = 16 * 1024

# Async and blocking handlers: replies are gathered and written together, but never
# held back longer than this while later messages are still being handled.
ASYNC_FLUSH_AFTER = 0.001

MODE_INLINE = 0  # sync handler, called in data_received
MODE_QUEUED = 1  # async or blocking handler, run in order by one worker per connection


class Connection(asyncio.Protocol):
    """The server side of one client connection; also what handlers receive as ``conn``.

    Public to handlers: ``peer`` (the client's address), ``state`` (a dict for the
    handler's own per-connection data), ``messages`` (messages received so far) and
    ``close()``.
    """

    # Per-connection state only: memory per idle connection is a product figure. What
    # is the same for every connection of a server is a class attribute of the subclass
    # that connection_type() makes for that server.
    __slots__ = (
        "_transport",
        "_codec",
        "last_message",
        "opened",
        "paused_since",
        "_queue",
        "_worker",
        "_closing",
        "_eof",
        "_ip",
        "_state",
        "slot",
        "messages",
        "acked",
        "bytes_in",
        "bytes_out",
        "close_reason",
    )

    _server: Server
    _handle: Any
    _batch: Any
    _prefix: bytes | None
    _mode: int
    _stats: Stats
    _timed: bool

    def __init__(self) -> None:
        self._transport: Any = None
        # Made on the first read: a connection that only holds costs no codec.
        self._codec: Codec | None = None
        # A coarse clock reading shared with the server: no float is made per read.
        self.last_message: float = self._server.clock
        self.opened: float = 0.0
        self.paused_since: float | None = None
        self._queue: deque[Frame] | None = None
        self._worker: asyncio.Task[None] | None = None
        self._closing = False
        self._eof = False
        self._ip: str | None = None
        self._state: dict[str, Any] | None = None
        self.slot = -1  # index in the server's registry while registered
        self.messages = 0  # frames received that were messages (not frame errors)
        self.acked = 0  # messages the handler finished with (replied or not)
        self.bytes_in = 0
        self.bytes_out = 0
        self.close_reason = "closed"

    # ---- what handlers see -------------------------------------------------------

    @property
    def peer(self) -> Any:
        """The client's address as the socket reports it, e.g. ``('127.0.0.1', 50000)``."""
        return self._transport.get_extra_info("peername") if self._transport else None

    @property
    def state(self) -> dict[str, Any]:
        if self._state is None:
            self._state = {}
        return self._state

    def close(self) -> None:
        """Close after the replies already written have been sent."""
        if self._transport is not None and not self._transport.is_closing():
            self._closing = True
            self.close_reason = "handler"
            self._transport.close()

    # ---- asyncio.Protocol --------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport
        refusal = self._server.admit(self, transport)
        if refusal is not None:
            self._closing = True
            self.close_reason = "busy"
            transport.write(self._encode_error("busy", refusal))  # type: ignore[attr-defined]
            transport.close()
            return
        transport.set_write_buffer_limits(  # type: ignore[attr-defined]
            high=WRITE_HIGH_WATER, low=WRITE_LOW_WATER
        )

    def data_received(self, data: bytes) -> None:
        """Frame, handle and reply. Never raises: every failure becomes an ERR reply."""
        if self._closing:
            return
        if self._timed:
            self._timed_data_received(data)
            return
        self._data_received(data)

    def _timed_data_received(self, data: bytes) -> None:
        """The same, recording how long the replies of this read took (metrics on)."""
        started = perf_counter()
        acked = self.acked
        self._data_received(data)
        n = self.acked - acked
        if n:
            self._stats.ack_latency.observe(perf_counter() - started, n)

    def _data_received(self, data: bytes) -> None:
        self.bytes_in += len(data)
        codec = self._codec
        if codec is None:
            codec = self._codec = self._server.new_codec()
        prefix = self._prefix
        if prefix is not None:
            done = codec.prefix_frames(data, prefix)
            if done is not None:
                out, n = done
                if n:
                    self.messages += n
                    self.acked += n
                    self.last_message = self._server.clock
                    self.bytes_out += len(out)
                    self._transport.write(out)
                return
        frames = codec.feed(data)
        if not frames:
            return
        n = len(frames)
        self.messages += n
        self.last_message = self._server.clock
        if codec.clean and self._mode == MODE_INLINE and self._queue is None:
            batch = self._batch
            try:
                if batch is not None:
                    replies = batch(frames, self)
                else:
                    replies = self._run_inline(frames)  # type: ignore[arg-type]
                out = codec.encode(replies) if replies else b""
            except Exception:  # a batch that raised or returned something not str
                replies = self._run_inline(frames)  # type: ignore[arg-type]
                out = codec.encode(replies) if replies else b""
            self.acked += n
            if out:
                self.bytes_out += len(out)
                self._transport.write(out)
            return
        self._slow(frames)

    def eof_received(self) -> bool:
        """Half-close: ack every complete message, then close. A partial frame is dropped."""
        self._eof = True
        if self._worker is None and self._closing and self.close_reason == "shutdown":
            self._transport.close()  # the client has read ERR shutdown and closed too
        elif self._worker is None and not self._closing:
            self._closing = True
            self.close_reason = "eof"
            self._transport.close()
        return True  # keep the write side open until our replies are out

    def connection_lost(self, exc: Exception | None) -> None:
        if exc is not None and self.close_reason in ("closed", "eof"):
            self.close_reason = "reset"
        if self._worker is not None:
            self._worker.cancel()
            self._worker = None
        self._server.forget(self)

    def pause_writing(self) -> None:
        # The client is not reading its replies: stop reading its requests.
        if self.paused_since is None and self._transport is not None:
            self.paused_since = self._server.clock
            if not self._transport.is_closing():
                self._transport.pause_reading()

    def resume_writing(self) -> None:
        if self.paused_since is not None:
            self.paused_since = None
            if self._transport is not None and not self._transport.is_closing():
                self._transport.resume_reading()

    # ---- the slow path -----------------------------------------------------------

    def _run_inline(self, frames: list[str]) -> list[str]:
        handle = self._handle
        out: list[str] = []
        for m in frames:
            try:
                r = handle(m, self)
            except Exception as e:
                r = self._internal_error(e)
            if r is not None:
                if type(r) is not str:
                    r = self._internal_error(TypeError(f"handler returned {type(r).__name__}"))
                out.append(r)
        return out

    @property
    def codec(self) -> Codec:
        codec = self._codec
        if codec is None:
            codec = self._codec = self._server.new_codec()
        return codec

    def _internal_error(self, exc: BaseException) -> str:
        self._server.handler_failed(exc)
        self._stats.error("internal")
        return self.codec.error_reply("internal", "handler failed")

    def _encode_error(self, code: str, text: str) -> bytes:
        self._stats.error(code)
        codec = self.codec
        return codec.encode([codec.error_reply(code, text)])

    def _slow(self, frames: list[Frame]) -> None:
        """Frames with errors, or a queued (async/blocking) handler."""
        if self._mode == MODE_QUEUED or self._queue is not None:
            if self._queue is None:
                self._queue = deque()
            self._queue.extend(frames)
            if self._worker is None:
                self._worker = self._server.spawn(self._work())
            return
        replies: list[str] = []
        fatal: FrameError | None = None
        for f in frames:
            if type(f) is str:
                replies.extend(self._run_inline([f]))
                self.acked += 1
            else:
                assert isinstance(f, FrameError)
                self.messages -= 1  # it was counted, but it is no message
                self._stats.error(f.code)
                replies.append(self.codec.error_reply(f.code, f.text))
                if f.fatal:
                    fatal = f
                    break
        if replies:
            out = self.codec.encode(replies)
            self.bytes_out += len(out)
            self._transport.write(out)
        if fatal is not None:
            self._closing = True
            self.close_reason = fatal.code
            self._transport.close()

    async def _work(self) -> None:
        """Run queued messages through an async or blocking handler, in order."""
        server = self._server
        codec = self.codec
        queue = self._queue
        assert queue is not None
        loop = asyncio.get_running_loop()
        pending: list[str] = []
        timer: asyncio.TimerHandle | None = None
        fatal = False

        def flush() -> None:
            nonlocal timer
            if timer is not None:
                timer.cancel()
                timer = None
            if pending:
                self._write_replies(pending)
                pending.clear()

        try:
            while queue and not fatal:
                f = queue.popleft()
                if type(f) is str:
                    r = await server.call_handler(self, f)
                    self.acked += 1
                    if r is not None:
                        pending.append(r)
                else:
                    assert isinstance(f, FrameError)
                    self.messages -= 1
                    self._stats.error(f.code)
                    pending.append(codec.error_reply(f.code, f.text))
                    fatal = f.fatal
                    if fatal:
                        self.close_reason = f.code
                if pending:
                    if not queue or fatal:
                        flush()
                    elif timer is None:
                        # Never hold a reply back behind a slow message queued after it.
                        timer = loop.call_later(ASYNC_FLUSH_AFTER, flush)
        finally:
            if timer is not None:
                timer.cancel()
            self._worker = None
        if fatal or self._eof or self._closing:
            self._closing = True
            if self._server.shutting_down and not fatal and not self._eof:
                self._end_with_shutdown()
                return
            self._transport.close()

    def _write_replies(self, replies: list[str]) -> None:
        out = self.codec.encode(replies)
        self.bytes_out += len(out)
        if not self._transport.is_closing():
            self._transport.write(out)

    # ---- called by the server ----------------------------------------------------

    def shut_down(self) -> None:
        """Graceful stop: finish queued messages, then ``ERR shutdown`` and close."""
        if self._closing or self._transport is None:
            return
        self._closing = True
        self.close_reason = "shutdown"
        if self._transport.is_closing():
            return
        # Reading goes on (data_received drops input once closing): closing a socket
        # with unread input makes the kernel send RST, which can destroy the replies
        # and the ERR line still on their way to the client.
        if self._worker is None:
            self._end_with_shutdown()
        # else: _work writes ERR shutdown and closes when its queue is empty

    def _end_with_shutdown(self) -> None:
        """ERR shutdown, then half-close: FIN after the replies; close at the client's EOF
        (or when the server's drain deadline aborts what is left)."""
        t = self._transport
        t.write(self._encode_error("shutdown", "server is shutting down"))
        if self._eof or not t.can_write_eof():
            t.close()
        else:
            t.write_eof()

    def end_linger(self) -> None:
        """Shutdown: stop waiting for the client's EOF after ERR shutdown; close."""
        t = self._transport
        if self.close_reason == "shutdown" and self._worker is None and t is not None:
            if not t.is_closing():
                t.close()

    def expire(self, code: str, text: str) -> None:
        """Close for a timeout (idle, write): tell the client why if it can still hear."""
        if self._transport is None or self._transport.is_closing():
            return
        self._closing = True
        self.close_reason = code
        if code == "write-timeout":
            # The client is not reading: more bytes would only queue. Drop it.
            self._stats.error(code)
            self._transport.abort()
            return
        self._transport.write(self._encode_error(code, text))
        self._transport.close()

    def abort(self) -> None:
        if self._transport is not None:
            self.close_reason = "aborted"
            self._transport.abort()

    @property
    def ip(self) -> str | None:
        return self._ip

    @ip.setter
    def ip(self, value: str | None) -> None:
        self._ip = value

    @property
    def busy(self) -> bool:
        """True while an async/blocking handler is still working on this connection."""
        return self._worker is not None


def connection_type(server: Server) -> type[Connection]:
    """A Connection subclass whose class attributes are ``server``'s per-server constants."""
    attrs = {
        "__slots__": (),
        "_server": server,
        # staticmethod: a plain function must not become a method of the connection.
        "_handle": staticmethod(server.handler),
        "_batch": staticmethod(server.batch) if server.batch is not None else None,
        "_prefix": server.reply_prefix,
        "_mode": server.mode,
        "_stats": server.stats,
        "_timed": server.timed,
    }
    return type("Connection", (Connection,), attrs)
