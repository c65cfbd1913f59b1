"""One client connection: asyncio.Protocol <-> codec <-> handler.

The class is chosen once per server by the handler's kind (``aiotcp.dispatch``), and
its per-server constants (registry, dispatch, handler, codec factory) are class
attributes of a subclass made for that server, so ``data_received`` never branches on
a setting that is fixed for the server:

``PrefixConnection``  replies ``prefix + message`` on bytes (the ack and echo apps)
``BatchConnection``   one ``batch(messages, conn)`` call per read
``InlineConnection``  a sync handler, called per message in a tight loop
``QueuedConnection``  async and blocking handlers (``aiotcp.queued``)

Each read is one codec feed, the handler calls, one encode and one ``transport.write``:
no Task, coroutine, timer or log line per message. A read whose frames are not all
valid takes ``_mixed``, which answers each frame in order. ``data_received`` never
raises: every failure becomes an ``ERR`` reply.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from time import perf_counter
from typing import Any

from aiotcp.codecs import Codec, Frame, FrameError
from aiotcp.dispatch import Dispatch
from aiotcp.observe.stats import Stats
from aiotcp.registry import Registry

# Output buffer marks, per connection. Above HIGH the client is not keeping up: stop
# reading from it (so it cannot make us buffer more) until it drains below LOW. asyncio
# uses 64 KiB as its default high-water mark; so do we.
WRITE_HIGH_WATER = 64 * 1024
WRITE_LOW_WATER = 16 * 1024

# conn.send() (messages the server pushes, e.g. pub/sub) refuses to queue more than this
# for a client that is not reading: Redis's client-output-buffer-limit for pub/sub
# clients is 32 MB hard / 8 MB soft; one message server needs far less per client.
PUSH_BACKLOG_LIMIT = 1024 * 1024


class Extra:
    """Per-connection data most connections never need, made on first use."""

    __slots__ = ("ip", "state", "closers", "listening")

    def __init__(self) -> None:
        self.ip: str | None = None
        self.state: dict[str, Any] | None = None
        # Called once from connection_lost (see on_close).
        self.closers: list[Callable[[Connection], None]] | None = None
        self.listening = False


class Connection(asyncio.Protocol):
    """The server side of one client connection; also what handlers receive as ``conn``.

    Public to handlers: ``peer`` (the client's address), ``state`` (a dict for the
    handler's own per-connection data), ``messages`` (messages received so far),
    ``tls_subject``, ``send(text)`` and ``close()``.
    """

    # Per-connection state only: memory per idle connection is a product figure.
    __slots__ = (
        "_transport",
        "_codec",
        "_closing",
        "_extra",
        "last_message",
        "opened",
        "paused_since",
        "slot",
        "messages",
        "bytes_in",
        "bytes_out",
        "close_reason",
    )

    # Per-server constants: class attributes of the subclass connection_class() makes.
    _registry: Registry
    _dispatch: Dispatch
    _stats: Stats
    _handle: Any
    _prefix: bytes
    _new_codec: Callable[[], Codec]

    def __init__(self) -> None:
        self._transport: Any = None
        self._codec: Codec | None = None  # made on the first read: holding costs no codec
        self._closing = False
        self._extra: Extra | None = None
        # A coarse clock reading shared with the registry: no float is made per read.
        self.last_message: float = self._registry.clock
        self.opened: float = 0.0
        self.paused_since: float | None = None
        self.slot = -1  # index in the registry while registered
        self.messages = 0  # frames received that were messages (not frame errors)
        self.bytes_in = 0
        self.bytes_out = 0
        self.close_reason = "closed"

    # ---- what handlers see -------------------------------------------------------

    @property
    def peer(self) -> Any:
        """The client's address, e.g. ``('127.0.0.1', 50000)`` (from a PROXY header if on)."""
        return self._transport.get_extra_info("peername") if self._transport else None

    @property
    def tls_subject(self) -> str | None:
        """The verified client certificate's subject (``CN=...,O=...``), or None."""
        cert = self._transport.get_extra_info("peercert") if self._transport else None
        if not cert:
            return None
        parts = [f"{k}={v}" for rdn in cert.get("subject", ()) for k, v in rdn]
        return ",".join(parts) or None

    @property
    def state(self) -> dict[str, Any]:
        """A dict for the handler's own per-connection data."""
        extra = self._extra_data()
        if extra.state is None:
            extra.state = {}
        return extra.state

    @property
    def listening(self) -> bool:
        """True while the handler keeps this connection to push to it (pub/sub
        subscriptions): the idle timeout does not apply to it, as Redis exempts pub/sub
        clients from its ``timeout``."""
        extra = self._extra
        return extra is not None and extra.listening

    @listening.setter
    def listening(self, value: bool) -> None:
        self._extra_data().listening = value

    @property
    def acked(self) -> int:
        """Messages the handler has finished with (sync kinds: all that were received)."""
        return self.messages

    @property
    def ip(self) -> str | None:
        """The client IP counted against the per-IP cap (None when that cap is off)."""
        return self._extra.ip if self._extra is not None else None

    @property
    def busy(self) -> bool:
        """True while a handler is still working on this connection's messages."""
        return False

    @property
    def codec(self) -> Codec:
        codec = self._codec
        if codec is None:
            codec = self._codec = self._new_codec()
        return codec

    def close(self) -> None:
        """Close after the replies of this read (this message's included) are sent.

        Later messages of the same read are not handled.
        """
        if self._closing or self._transport is None:
            return
        self._closing = True
        self.close_reason = "handler"
        asyncio.get_running_loop().call_soon(self._close_transport)

    def on_close(self, fn: Callable[[Connection], None]) -> None:
        """Call ``fn(conn)`` once when this connection is lost.

        For handlers that keep server-wide data per connection (subscriptions). ``fn``
        runs inside ``connection_lost``: it must be quick and not raise (an exception is
        logged and ignored).
        """
        extra = self._extra_data()
        if extra.closers is None:
            extra.closers = []
        extra.closers.append(fn)

    def send(self, text: str) -> bool:
        """Push one frame to the client outside the reply order (e.g. a pub/sub message).

        Returns False, sending nothing, if the connection is closing or already holds
        PUSH_BACKLOG_LIMIT bytes the client has not read.
        """
        t = self._transport
        if self._closing or t is None or t.is_closing():
            return False
        if t.get_write_buffer_size() > PUSH_BACKLOG_LIMIT:
            return False
        out = self.codec.encode([text])
        self.bytes_out += len(out)
        t.write(out)
        return True

    # ---- asyncio.Protocol --------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport
        registry = self._registry
        ip: str | None = None
        if registry.max_per_ip:
            peer = transport.get_extra_info("peername")
            ip = peer[0] if isinstance(peer, tuple) else str(peer)
            self._extra_data().ip = ip
        refusal = registry.admit(self, ip)
        if refusal is not None:
            code, text = refusal
            self._closing = True
            self.close_reason = code
            transport.write(self._encode_error(code, text))  # type: ignore[attr-defined]
            transport.close()
            return
        transport.set_write_buffer_limits(  # type: ignore[attr-defined]
            high=WRITE_HIGH_WATER, low=WRITE_LOW_WATER
        )

    def eof_received(self) -> bool:
        """Half-close: every complete message is answered already; close after the replies."""
        if not self._closing:
            self._closing = True
            self.close_reason = "eof"
        self._close_transport()
        return True  # keep the write side open until our replies are out

    def connection_lost(self, exc: Exception | None) -> None:
        if exc is not None and self.close_reason in ("closed", "eof"):
            self.close_reason = "reset"
        extra = self._extra
        if extra is not None and extra.closers:
            closers, extra.closers = extra.closers, None
            for fn in closers:
                try:
                    fn(self)
                except Exception as e:
                    self._dispatch.failed(e)
        self._registry.forget(self)

    def pause_writing(self) -> None:
        # The client is not reading its replies: stop reading its requests.
        if self.paused_since is None and self._transport is not None:
            self.paused_since = self._registry.clock
            if not self._transport.is_closing():
                self._transport.pause_reading()

    def resume_writing(self) -> None:
        if self.paused_since is not None:
            self.paused_since = None
            t = self._transport
            if t is not None and not t.is_closing() and not self._reading_held():
                t.resume_reading()

    def _reading_held(self) -> bool:
        """True while something besides the output buffer keeps reading paused."""
        return False

    # ---- replies -----------------------------------------------------------------

    def _handle_each(self, frames: list[str]) -> list[Any]:
        """Call the handler on each message, stopping after one whose handler closed.

        Returns the raw replies (str, None or anything a handler returned), one per
        handled message, and counts them as messages.
        """
        handle = self._handle
        replies: list[Any] = []
        append = replies.append
        try:
            for m in frames:
                append(handle(m, self))
                if self._closing:
                    break
        except Exception as e:
            self._recover(frames, replies, e)
        self.messages += len(replies)
        return replies

    def _recover(self, frames: list[str], replies: list[Any], exc: Exception) -> None:
        """The handler raised on ``frames[len(replies)]``: ERR internal, then go on."""
        dispatch = self._dispatch
        handle = self._handle
        replies.append(dispatch.internal_error(exc))
        for m in frames[len(replies) :]:
            if self._closing:
                return
            try:
                replies.append(handle(m, self))
            except Exception as e:
                replies.append(dispatch.internal_error(e))

    def _write_replies(self, codec: Codec, replies: list[Any]) -> None:
        """Encode and write ``replies`` in one write; None means no reply."""
        try:
            out = codec.encode(replies) if replies else b""
        except (TypeError, AttributeError):  # a None (no reply) or a non-str reply
            strings = self._strings(replies)
            out = codec.encode(strings) if strings else b""
        if out:
            self.bytes_out += len(out)
            self._transport.write(out)

    def _strings(self, replies: list[Any]) -> list[str]:
        out: list[str] = []
        for r in replies:
            if r is None:
                continue
            out.append(r if type(r) is str else self._dispatch.not_a_reply(r))
        return out

    def _answer(self, codec: Codec, frames: list[Frame]) -> None:
        """Answer the frames of one read, one call per message (InlineConnection has
        this inlined: it is its hot path)."""
        self.last_message = self._registry.clock
        if codec.clean:
            self._write_replies(codec, self._handle_each(frames))  # type: ignore[arg-type]
        else:
            self._mixed(codec, frames)

    def _mixed(self, codec: Codec, frames: list[Frame]) -> None:
        """A read whose frames include errors: answer each frame in order."""
        replies: list[Any] = []
        fatal: FrameError | None = None
        for f in frames:
            if type(f) is str:
                replies.extend(self._handle_each([f]))
                if self._closing:
                    break
            else:
                assert isinstance(f, FrameError)
                self._stats.error(f.code)
                replies.append(codec.error_reply(f.code, f.text))
                if f.fatal:
                    fatal = f
                    break
        self._write_replies(codec, replies)
        if fatal is not None:
            self._closing = True
            self.close_reason = fatal.code
            self._transport.close()

    def _encode_error(self, code: str, text: str) -> bytes:
        self._stats.error(code)
        codec = self.codec
        return codec.encode([codec.error_reply(code, text)])

    def _extra_data(self) -> Extra:
        extra = self._extra
        if extra is None:
            extra = self._extra = Extra()
        return extra

    def _close_transport(self) -> None:
        t = self._transport
        if t is not None and not t.is_closing():
            t.close()

    # ---- called by the registry and the server -------------------------------------

    def shut_down(self) -> None:
        """Graceful stop: ``ERR shutdown`` after the replies already written, half-close."""
        if self._closing or self._transport is None:
            return
        self._closing = True
        self.close_reason = "shutdown"
        if not self._transport.is_closing():
            self._end_with_shutdown(eof=False)

    def _end_with_shutdown(self, eof: bool) -> None:
        """ERR shutdown, then half-close: FIN after the replies; close at the client's EOF
        (or when the server's drain deadline aborts what is left).

        Reading goes on meanwhile (input is dropped once closing): closing a socket with
        unread input makes the kernel send RST, which can destroy the replies and the
        ERR line still on their way to the client.
        """
        t = self._transport
        t.write(self._encode_error("shutdown", "server is shutting down"))
        if eof or not t.can_write_eof():
            t.close()
            return
        try:
            t.write_eof()
        except OSError:  # the client is already gone (asyncio raises, uvloop does not)
            t.abort()

    def end_linger(self) -> None:
        """Shutdown: stop waiting for the client's EOF after ERR shutdown; close."""
        if self.close_reason == "shutdown" and not self.busy:
            self._close_transport()

    def expire(self, code: str, text: str) -> None:
        """Close for a timeout (idle, write): tell the client why if it can still hear."""
        t = self._transport
        if t is None or t.is_closing():
            return
        self._closing = True
        self.close_reason = code
        if code == "write-timeout":
            # The client is not reading: more bytes would only queue. Drop it.
            self._stats.error(code)
            t.abort()
            return
        t.write(self._encode_error(code, text))
        t.close()

    def abort(self) -> None:
        if self._transport is not None:
            self._closing = True
            self.close_reason = "aborted"
            self._transport.abort()


class InlineConnection(Connection):
    """A sync handler, called inline per message; one write per read."""

    __slots__ = ()

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
        if not codec.clean:
            self._mixed(codec, frames)
            return
        # _handle_each and _write_replies, inlined: this is the hot path of every
        # sync handler.
        handle = self._handle
        replies: list[Any] = []
        append = replies.append
        try:
            for m in frames:
                append(handle(m, self))
                if self._closing:
                    break
        except Exception as e:
            self._recover(frames, replies, e)  # type: ignore[arg-type]
        self.messages += len(replies)
        try:
            out = codec.encode(replies)
        except (TypeError, AttributeError):  # a None (no reply) or a non-str reply
            strings = self._strings(replies)
            if not strings:
                return
            out = codec.encode(strings)
        self.bytes_out += len(out)
        self._transport.write(out)


class BatchConnection(Connection):
    """A sync ``batch(messages, conn)``: one call per read."""

    __slots__ = ()

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
        if codec.clean:
            self.messages += len(frames)
            self._write_replies(codec, self._dispatch.run_batch(self, frames))  # type: ignore[arg-type]
        else:
            self._mixed(codec, frames)


class PrefixConnection(Connection):
    """Replies that are always ``prefix + message``, answered on bytes when they can be."""

    __slots__ = ()

    def data_received(self, data: bytes) -> None:
        if self._closing:
            return
        self.bytes_in += len(data)
        codec = self._codec
        if codec is None:
            codec = self._codec = self._new_codec()
        done = codec.prefix_frames(data, self._prefix)
        if done is not None:
            out, n = done
            if n:
                self.messages += n
                self.last_message = self._registry.clock
                self.bytes_out += len(out)
                self._transport.write(out)
            return
        frames = codec.feed(data)
        if frames:
            self._answer(codec, frames)


def timed(cls: type[Connection], stats: Stats) -> type[Connection]:
    """A subclass of ``cls`` that records how long the replies of each read took."""
    base = cls.data_received
    observe = stats.ack_latency.observe

    def data_received(self: Connection, data: bytes) -> None:
        started = perf_counter()
        before = self.messages
        base(self, data)
        n = self.messages - before
        if n > 0:
            observe(perf_counter() - started, n)

    return type(cls.__name__, (cls,), {"__slots__": (), "data_received": data_received})

