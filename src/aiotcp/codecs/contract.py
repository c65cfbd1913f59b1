"""The codec contract: what a protocol gives the server, sans-I/O.

A codec turns one connection's bytes into messages and replies into bytes, and nothing
else: no asyncio, no sockets, no clocks (a test asserts this package imports none). The
server makes one per connection (``factory(max_frame)``) and calls:

``feed(data) -> list``
    The complete messages ``data`` finishes, in order: ``str``, ``bytes`` or a parsed
    object (a RESP command, a protobuf message). Partial input stays buffered. Over the
    frame-size limit the codec raises :class:`ProtocolError` *before* buffering what
    would exceed it. A frame it cannot decode but can skip may be returned in place as a
    :class:`FrameError` (answered with its error reply; the handler never sees it); a
    codec that does so sets ``clean = False`` after each feed that returned one.
``encode(replies) -> bytes``
    The bytes of one write for ``replies`` (already in order). A reply the protocol
    cannot carry (wrong type; a line break in a line) raises TypeError or ValueError:
    the server then encodes reply by reply and puts the protocol's internal error in the
    place of the bad one, so the client never loses its place.
``error_reply(code, text) -> reply | None``
    How the protocol writes the server's own errors (``busy``, ``idle-timeout``,
    ``shutdown``, ``internal``, ``timeout``...), as a reply ``encode`` takes; None writes
    nothing (a protocol with no error message).
``eof() -> list``
    Messages still buffered when the client half-closes that are complete at EOF (as
    Netty's ``decodeLast`` and tokio's ``decode_eof``); most protocols drop a partial
    frame and return [].

A :class:`ProtocolError` from ``feed`` closes that connection: the messages decoded
before the violation (``ProtocolError.messages``) are answered first, then the error
reply if the protocol has one; it is counted (``aiotcp_errors_total{code}``) and logged
in one line, without a traceback, and no other client notices. Any other exception
from a codec is a bug in the codec: that connection closes, the traceback is logged
(rate-limited), the server goes on.

Subclass :class:`Codec` to get the optional members; any object with ``feed`` and
``encode`` works too.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar

M = TypeVar("M")


class FrameError:
    """A frame the codec could not turn into a message; answered with one error reply.

    Returned in ``feed``'s list in the frame's place; the connection goes on. ``fatal``
    is the server's own marker for a :class:`ProtocolError` (a codec raises instead).
    """

    __slots__ = ("code", "text", "fatal")

    def __init__(self, code: str, text: str, fatal: bool = False) -> None:
        self.code = code
        self.text = text
        self.fatal = fatal

    def __repr__(self) -> str:
        return f"FrameError({self.code!r}, {self.text!r}, fatal={self.fatal})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, FrameError) and (self.code, self.text, self.fatal) == (
            other.code,
            other.text,
            other.fatal,
        )

    def __hash__(self) -> int:
        return hash((self.code, self.text, self.fatal))


class ProtocolError(Exception):
    """A violation of the protocol (raised by ``feed``): the connection closes.

    ``code`` and ``text`` make the error reply (``ERR too-long ...``, ``-ERR Protocol
    error: ...``); ``messages`` are the complete messages decoded before the violation,
    answered before it.
    """

    def __init__(self, code: str, text: str, messages: Sequence[Any] = ()) -> None:
        super().__init__(f"{code}: {text}")
        self.code = code
        self.text = text
        self.messages = list(messages)


class CodecError(ValueError):
    """A codec cannot be served as given (not found, not a codec); the message says why."""


class Codec(Generic[M]):
    """A base for codecs: subclass it and write ``feed`` and ``encode``.

    The defaults: ``clean`` (no in-band FrameError), no limit of its own, no error
    replies written, nothing complete at EOF, no fast path.
    """

    __slots__ = ()

    clean: bool = True
    max_frame: int = 0

    def feed(self, data: bytes) -> list[M | FrameError]:
        raise NotImplementedError

    def encode(self, replies: list[Any]) -> bytes:
        raise NotImplementedError

    def error_reply(self, code: str, text: str) -> Any:
        return None

    def eof(self) -> list[M]:
        return []

    def pending(self) -> int:
        """Bytes buffered towards an incomplete frame."""
        return 0

    def prefix_frames(self, data: bytes, prefix: bytes, sep: bytes) -> tuple[bytes, int] | None:
        """The built-ins' fast path for ``prefix + message`` replies (``sep`` is
        ``b"\\n" + prefix``); None: take ``feed``."""
        return None


# What the server reads of a codec besides feed and encode, with the defaults it uses
# when a codec (one not subclassing Codec) lacks them.
OPTIONAL = ("clean", "max_frame", "error_reply", "eof", "pending", "prefix_frames")


class Adapted(Codec[Any]):
    """A codec without some optional member, given the defaults (one call more per feed)."""

    __slots__ = ("_inner", "_feed", "_encode", "_error_reply", "_eof")

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self._feed = inner.feed
        self._encode = inner.encode
        self._error_reply = getattr(inner, "error_reply", None)
        self._eof = getattr(inner, "eof", None)

    @property
    def clean(self) -> bool:  # type: ignore[override]
        return bool(getattr(self._inner, "clean", True))

    @property
    def max_frame(self) -> int:  # type: ignore[override]
        return int(getattr(self._inner, "max_frame", 0))

    def feed(self, data: bytes) -> list[Any]:
        return self._feed(data)  # type: ignore[no-any-return]

    def encode(self, replies: list[Any]) -> bytes:
        return self._encode(replies)  # type: ignore[no-any-return]

    def error_reply(self, code: str, text: str) -> Any:
        return self._error_reply(code, text) if self._error_reply is not None else None

    def eof(self) -> list[Any]:
        return self._eof() if self._eof is not None else []


CodecFactory = Callable[[int], Any]


def checked_factory(factory: CodecFactory, max_frame: int, name: str) -> Callable[[], Any]:
    """A no-argument factory of codecs for one server, after making one to check it.

    Raises CodecError (one line, naming ``name``) if the factory fails or what it makes
    has no ``feed`` or ``encode``. A codec lacking optional members is adapted.
    """
    try:
        probe = factory(max_frame)
    except Exception as e:
        raise CodecError(f"codec {name}: {type(e).__name__}: {e}") from None
    missing = [m for m in ("feed", "encode") if not callable(getattr(probe, m, None))]
    if missing:
        raise CodecError(
            f"codec {name} makes {type(probe).__name__}, which has no "
            f"{' or '.join(missing)} (subclass aiotcp.Codec)"
        )
    if all(hasattr(probe, m) for m in OPTIONAL):
        return functools.partial(factory, max_frame)  # made per connection: no Python frame
    return lambda: Adapted(factory(max_frame))


def too_long(limit: int, messages: Sequence[Any] = ()) -> ProtocolError:
    return ProtocolError("too-long", f"frame exceeds {limit} bytes", messages)


INVALID_UTF8 = FrameError("invalid-utf8", "message is not valid UTF-8")


def error_text(code: str, text: str) -> str:
    """The body of an error reply in aiotcp's own framings: ``ERR <code> <text>``."""
    return f"ERR {code} {text}"
