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
raises: every failure becomes an error reply.

Every kind goes through one lifecycle (``aiotcp.lifecycle``): half-close, ``close()``,
shutdown, timeouts and a lost client are written once, there.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from time import perf_counter
from typing import Any

from aiotcp.codecs import AnyCodec, Frame, FrameError, ProtocolError
from aiotcp.dispatch import Dispatch
from aiotcp.lifecycle import CLOSED, CLOSING, EOF, HANDLER, OPEN, Lifecycle
from aiotcp.limits import TokenBucket
from aiotcp.observe.stats import Stats
from aiotcp.registry import WRITE_HIGH_WATER, WRITE_LOW_WATER, Registry

__all__ = ["Connection", "WRITE_HIGH_WATER", "WRITE_LOW_WATER"]

# Why reading is paused: a bit each, so that one reason ending does not resume reading
# while another still holds it.
HOLD_WRITE = 1  # the client is not reading its replies (output above the high-water mark)
HOLD_PIPELINE = 2  # max_pipeline messages unanswered (queued kinds)
HOLD_RATE = 4  # over --rate-limit or --byte-rate-limit until the budget refills

# conn.send() (messages the server pushes, e.g. pub/sub) refuses to queue more than this
# for a client that is not reading: Redis's client-output-buffer-limit for pub/sub
# clients is 32 MB hard / 8 MB soft; one message server needs far less per client.
PUSH_BACKLOG_LIMIT = 1024 * 1024


class Extra:
    """Per-connection data most connections never need, made on first use."""

    __slots__ = ("ip", "state", "closers", "listening", "peer_eof", "buckets")

    def __init__(self) -> None:
        self.ip: str | None = None
        self.state: dict[str, Any] | None = None
        # Called once from connection_lost (see on_close).
        self.closers: list[Callable[[Connection], None]] | None = None
        self.listening = False
        self.peer_eof = False  # the client half-closed while the connection was closing
        # --rate-limit and --byte-rate-limit budgets (aiotcp.limits), made on first read.
        self.buckets: tuple[TokenBucket | None, TokenBucket | None] | None = None


class Connection(Lifecycle, asyncio.Protocol):
    """The server side of one client connection; also what handlers receive as ``conn``.

    Public to handlers: ``peer`` (the client's address), ``state`` (a dict for the
    handler's own per-connection data), ``messages`` (messages received so far),
    ``tls_subject``, ``send(text)`` and ``close()``.
    """

    # Per-connection state only: memory per idle connection is a product figure.
    __slots__ = (
        "_transport",
        "_codec",
        "_state",
        "_holds",
        "_extra",
        "last_message",
        "opened",
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
    _sep: bytes  # b"\n" + _prefix
    _new_codec: Callable[[], AnyCodec]

    def __init__(self) -> None:
        self._transport: Any = None
        self._codec: AnyCodec | None = None  # made on the first read: holding costs no codec
        self._state = OPEN  # see aiotcp.lifecycle
        self._holds = 0  # HOLD_* bits: why reading is paused
        self._extra: Extra | None = None
        # A coarse clock reading shared with the registry: no float is made per read.
        self.last_message: float = self._registry.clock
        self.opened: float = 0.0
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
    def codec(self) -> AnyCodec:
        codec = self._codec
        if codec is None:
            codec = self._codec = self._new_codec()
        return codec

    def close(self) -> None:
        """Close after this message's reply and those before it are sent.

        No message after this one is started; the connection closes once nothing is in
        flight. Safe to call from a ``@blocking`` handler's thread (it is handed to the
        loop); the other methods of ``conn`` belong to the event loop's thread.
        """
        try:
            asyncio.get_running_loop()
        except RuntimeError:  # a @blocking handler's thread: the loop closes it, in order
            self._dispatch.call_in_loop(self.close)
            return
        if self._transport is not None and self._begin_close(HANDLER):
            self._drop()
            asyncio.get_running_loop().call_soon(self._settle)

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

    def send(self, *frames: Any, past_limit: bool = False) -> bool:
        """Push frames to the client outside the reply order (e.g. pub/sub messages), in
        one write.

        Returns False, sending nothing, if the connection is closing or already holds
        PUSH_BACKLOG_LIMIT bytes the client has not read (``past_limit``: queue them
        anyway, for the one error a handler sends before ``close()``). A frame the
        protocol cannot carry (a line break under line framing) is left out, logged and
        counted as internal: the client never reads a frame that is not one.
        """
        t = self._transport
        if self._state != OPEN or t is None or t.is_closing():
            return False
        if not past_limit and t.get_write_buffer_size() > PUSH_BACKLOG_LIMIT:
            return False
        codec = self.codec
        try:
            out = codec.encode(list(frames))
        except (TypeError, ValueError, AttributeError):
            out = self._encode_each(codec, frames, replace=False)
        if out:
            self.bytes_out += len(out)
            t.write(out)
        return True

    # ---- asyncio.Protocol --------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport
        registry = self._registry
        ip: str | None = None
        if registry.wants_ip:
            peer = transport.get_extra_info("peername")
            # A Unix-socket client has no IP: its socket path, or "unix" if unnamed.
            ip = peer[0] if isinstance(peer, tuple) else (str(peer) or "unix")
            if registry.max_per_ip:  # kept to give its per-IP count back
                self._extra_data().ip = ip
        refusal = registry.admit(self, ip)
        if refusal is not None:
            code, text = refusal
            if self._extra is not None:
                self._extra.ip = None  # not counted against the per-IP cap
            self._enter(CLOSING, code)
            transport.write(self._error_bytes(code, text))  # type: ignore[attr-defined]
            transport.close()
            return
        transport.set_write_buffer_limits(  # type: ignore[attr-defined]
            high=WRITE_HIGH_WATER, low=WRITE_LOW_WATER
        )

    def eof_received(self) -> bool:
        """Half-close: every complete message is answered (with those the codec finds
        complete at EOF), then the connection closes."""
        if self._state != OPEN:
            return self._client_eof()
        codec = self._codec
        if codec is not None:
            try:
                last = codec.eof()
            except ProtocolError as e:
                self._violation(codec, e)
                last = []
            except Exception as e:
                self._codec_failed(e)
                return True
            if last and self._state == OPEN:
                self._receive(codec, last, codec.clean)
        self._begin_close(EOF)
        self._settle()
        return True  # keep the write side open until our replies are out

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost(exc)
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
        self._hold(HOLD_WRITE)

    def resume_writing(self) -> None:
        self._release(HOLD_WRITE)

    def _hold(self, bit: int) -> None:
        """Pause reading for the reason ``bit`` (idempotent per reason)."""
        holds = self._holds
        if holds & bit:
            return
        self._holds = holds | bit
        t = self._transport
        if not holds and t is not None and not t.is_closing():
            t.pause_reading()

    def _release(self, bit: int) -> None:
        """The reason ``bit`` is over: resume reading if no other reason holds it."""
        holds = self._holds
        if not holds & bit:
            return
        self._holds = holds & ~bit
        t = self._transport
        if holds == bit and t is not None and not t.is_closing():
            t.resume_reading()

    @property
    def reading_paused(self) -> bool:
        return bool(self._holds)

    def output_pending(self) -> int:
        t = self._transport
        return t.get_write_buffer_size() if t is not None and self._state != CLOSED else 0

    # ---- lifecycle hooks (aiotcp.lifecycle) ------------------------------------------

    def _error_bytes(self, code: str, text: str) -> bytes:
        self._stats.error(code)
        codec = self.codec
        reply = codec.error_reply(code, text)
        return codec.encode([reply]) if reply is not None else b""

    def _count_out(self, data: bytes) -> None:
        self.bytes_out += len(data)

    def _peer_eof_seen(self) -> None:
        self._extra_data().peer_eof = True

    def _peer_has_eofed(self) -> bool:
        return self._extra is not None and self._extra.peer_eof

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
                if self._state:
                    break
        except Exception as e:
            self._recover(frames, replies, e)
        self.messages += len(replies)
        return replies

    def _recover(self, frames: list[str], replies: list[Any], exc: Exception) -> None:
        """The handler raised on ``frames[len(replies)]``: its error reply, then go on."""
        dispatch = self._dispatch
        handle = self._handle
        codec = self.codec
        replies.append(dispatch.internal_error(exc, codec))
        for m in frames[len(replies) :]:
            if self._state:
                return
            try:
                replies.append(handle(m, self))
            except Exception as e:
                replies.append(dispatch.internal_error(e, codec))

    def _write_replies(self, codec: AnyCodec, replies: list[Any]) -> None:
        """Encode and write ``replies`` in one write; None means no reply."""
        try:
            out = codec.encode(replies) if replies else b""
        except Exception:  # a None, or a reply it cannot carry: reply by reply
            out = self._encode_each(codec, replies)
        if out:
            self.bytes_out += len(out)
            self._transport.write(out)

    def _encode_each(
        self, codec: AnyCodec, replies: Sequence[Any], replace: bool = True
    ) -> bytes:
        """Encode reply by reply: None is no reply; a reply the protocol cannot carry (not
        a str, a line break under line framing) is logged and counted, and becomes the
        internal error (``replace``: a reply keeps its place in the order) or nothing.
        A codec that cannot encode even its own error is broken: the connection closes."""
        chunks: list[bytes] = []
        for r in replies:
            if r is None:
                continue
            try:
                chunks.append(codec.encode([r]))
            except Exception as e:
                error = self._dispatch.bad_reply(r, e, codec)
                if replace and error is not None:
                    try:
                        chunks.append(codec.encode([error]))
                    except Exception as broken:
                        self._codec_failed(broken)
                        break
        return b"".join(chunks)

    def _feed(self, data: bytes) -> list[Any] | None:
        """Count ``data`` and feed it to the codec: the complete frames, or None if there
        are none or the codec refused the input (then the connection is closing)."""
        self.bytes_in += len(data)
        codec = self._codec
        if codec is None:
            codec = self._codec = self._new_codec()
        try:
            return codec.feed(data) or None
        except ProtocolError as e:
            self._violation(codec, e)
        except Exception as e:
            self._codec_failed(e)
        return None

    def _receive(self, codec: AnyCodec, frames: list[Any], clean: bool) -> None:
        """What this kind does with decoded frames (``clean``: no FrameError among them)."""
        self.last_message = self._registry.clock
        if clean:
            self._write_replies(codec, self._handle_each(frames))
        else:
            self._mixed(codec, frames)

    def _violation(self, codec: AnyCodec, e: ProtocolError) -> None:
        """The codec found a violation: the messages before it are answered, then the
        protocol's error reply, then the connection closes (logged in one line)."""
        self._dispatch.violation(self.peer, e)
        self._receive(codec, [*e.messages, FrameError(e.code, e.text, fatal=True)], False)

    def _codec_failed(self, exc: BaseException) -> None:
        """A bug in the codec: this connection closes, the traceback is logged."""
        self._dispatch.codec_failed(exc)
        t = self._transport
        if self._begin_close("codec") and t is not None and not t.is_closing():
            t.close()

    def _mixed(self, codec: AnyCodec, frames: list[Frame]) -> None:
        """A read whose frames include errors: answer each frame in order."""
        replies: list[Any] = []
        fatal: FrameError | None = None
        for f in frames:
            if type(f) is not FrameError:
                replies.extend(self._handle_each([f]))
                if self._state:
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
            # The replies before it and its own error reply are written: close.
            if self._begin_close(fatal.code):
                self._settle()

    def _extra_data(self) -> Extra:
        extra = self._extra
        if extra is None:
            extra = self._extra = Extra()
        return extra


class InlineConnection(Connection):
    """A sync handler, called inline per message; one write per read."""

    __slots__ = ()

    def data_received(self, data: bytes) -> None:
        if self._state:
            return
        self.bytes_in += len(data)
        codec = self._codec
        if codec is None:
            codec = self._codec = self._new_codec()
        # _feed, _handle_each and _write_replies, inlined: this is the hot path of every
        # sync handler.
        try:
            frames = codec.feed(data)
        except ProtocolError as e:
            self._violation(codec, e)
            return
        except Exception as e:
            self._codec_failed(e)
            return
        if not frames:
            return
        self.last_message = self._registry.clock
        if not codec.clean:
            self._mixed(codec, frames)
            return
        handle = self._handle
        replies: list[Any] = []
        append = replies.append
        try:
            for m in frames:
                append(handle(m, self))
                if self._state:
                    break
        except Exception as e:
            self._recover(frames, replies, e)  # type: ignore[arg-type]
        self.messages += len(replies)
        try:
            out = codec.encode(replies)
        except Exception:  # a None, or a reply it cannot carry: reply by reply
            out = self._encode_each(codec, replies)
            if not out:
                return
        self.bytes_out += len(out)
        self._transport.write(out)


class BatchConnection(Connection):
    """A sync ``batch(messages, conn)``: one call per read."""

    __slots__ = ()

    def data_received(self, data: bytes) -> None:
        if self._state:
            return
        frames = self._feed(data)
        if frames is not None:
            codec = self._codec
            assert codec is not None
            self._receive(codec, frames, codec.clean)

    def _receive(self, codec: AnyCodec, frames: list[Any], clean: bool) -> None:
        self.last_message = self._registry.clock
        if clean:
            self.messages += len(frames)
            self._write_replies(codec, self._dispatch.run_batch(self, frames))
        else:
            self._mixed(codec, frames)


class PrefixConnection(Connection):
    """Replies that are always ``prefix + message``, answered on bytes when they can be."""

    __slots__ = ()

    def data_received(self, data: bytes) -> None:
        if self._state:
            return
        codec = self._codec
        if codec is None:
            codec = self._codec = self._new_codec()
        done = codec.prefix_frames(data, self._prefix, self._sep)
        if done is not None:
            self.bytes_in += len(data)
            out, n = done
            if n:
                self.messages += n
                self.last_message = self._registry.clock
                self.bytes_out += len(out)
                self._transport.write(out)
            return
        frames = self._feed(data)
        if frames is not None:
            self._receive(codec, frames, codec.clean)


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



def rate_limited(
    cls: type[Connection], messages: tuple[float, float] | None, byte_rate: float
) -> type[Connection]:
    """A subclass of ``cls`` whose reads spend a message and a byte budget (token
    buckets, ``aiotcp.limits``): over budget, reading pauses until it refills. What was
    read is handled and answered as usual: the client is slowed, it loses nothing."""
    base = cls.data_received

    def data_received(self: Connection, data: bytes) -> None:
        before = self.messages
        base(self, data)
        extra = self._extra_data()
        loop = asyncio.get_running_loop()
        now = loop.time()
        buckets = extra.buckets
        if buckets is None:
            buckets = extra.buckets = (
                TokenBucket(messages[0], messages[1], now) if messages else None,
                TokenBucket(byte_rate, byte_rate, now) if byte_rate else None,
            )
        wait = 0.0
        msgs, byts = buckets
        if msgs is not None:
            wait = msgs.take(self.messages - before, now)
        if byts is not None:
            wait = max(wait, byts.take(len(data), now))
        if wait > 0 and not self._holds & HOLD_RATE:
            self._hold(HOLD_RATE)
            loop.call_later(wait, self._release, HOLD_RATE)

    return type(cls.__name__, (cls,), {"__slots__": (), "data_received": data_received})
