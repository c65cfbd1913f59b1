"""Handlers: the default ``ack`` app, ``echo``, and loading a user's ``module:attr``.

The handler contract (see the README):

* ``def handle(message: str, conn) -> str | None`` runs inline in the event loop. Keep
  it fast: it must not block.
* ``async def handle(message: str, conn) -> str | None`` runs in order per connection.
* a sync handler decorated with :func:`blocking` runs in a bounded thread pool, so a
  blocking call inside it never stalls the loop.

A returned string is sent as one reply frame; ``None`` sends nothing. A handler that
raises gets ``ERR internal`` for that message and the connection goes on.

A handler object may also offer ``batch(messages, conn) -> list[str]``: one reply per
message for all the messages of one read. The server calls it instead of calling the
handler once per message; it must behave exactly like calling the handler on each
message in turn (if it raises, each message is handled one by one instead).

A handler whose reply is always ``prefix + message`` may say so with an attribute
``reply_prefix = prefix``; the server then answers well-formed frames on bytes, without
decoding them or calling the handler (``Ack`` and ``Echo`` do this).
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar, Union

if TYPE_CHECKING:
    from aiotcp.config import Config

Reply = Union[str, None]
Handler = Callable[[str, Any], Union[Reply, Awaitable[Reply]]]

F = TypeVar("F", bound=Callable[..., Any])

BLOCKING_ATTR = "__aiotcp_blocking__"


def blocking(fn: F) -> F:
    """Mark a sync handler as blocking: it runs in the server's thread pool."""
    if inspect.iscoroutinefunction(fn):
        raise TypeError("@blocking is for sync handlers; an async handler never needs it")
    setattr(fn, BLOCKING_ATTR, True)
    return fn


def is_blocking(handler: object) -> bool:
    return bool(getattr(handler, BLOCKING_ATTR, False))


def is_async(handler: object) -> bool:
    call = handler if inspect.isfunction(handler) or inspect.ismethod(handler) else getattr(
        handler, "__call__", handler
    )
    return inspect.iscoroutinefunction(call)


class Ack:
    """The article's server: reply ``<prefix><message>`` (default ``已收到: ``)."""

    __slots__ = ("prefix",)

    def __init__(self, prefix: str = "已收到: ") -> None:
        self.prefix = prefix

    @property
    def reply_prefix(self) -> str:
        """Every reply is this prefix + the message: the server may answer on bytes."""
        return self.prefix

    def __call__(self, message: str, conn: object) -> str:
        return self.prefix + message

    def batch(self, messages: list[str], conn: object) -> list[str]:
        prefix = self.prefix
        return [prefix + m for m in messages]


class Echo:
    """Reply with the message itself."""

    __slots__ = ()
    reply_prefix = ""

    def __call__(self, message: str, conn: object) -> str:
        return message

    def batch(self, messages: list[str], conn: object) -> list[str]:
        return messages


class AppError(ValueError):
    """The ``app`` setting names nothing that can be served."""


def load_app(config: Config) -> Any:
    """Resolve ``config.app`` to a handler (or, with ``api=streams``, a client coroutine).

    ``ack`` and ``echo`` are built in; anything else is ``module:attr``. Raises AppError
    with a readable message when the module or attribute is missing or not callable.
    """
    if config.app == "ack" and config.api == "handler":
        return Ack(config.ack_prefix)
    if config.app == "echo" and config.api == "handler":
        return Echo()
    module_name, sep, attr = config.app.partition(":")
    if not sep or not module_name or not attr:
        raise AppError(f"app must be 'ack', 'echo' or 'module:attr', not {config.app!r}")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise AppError(f"cannot import app module {module_name!r}: {e}") from None
    obj: Any = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise AppError(f"module {module_name!r} has no attribute {attr!r}") from None
    if not callable(obj):
        raise AppError(f"app {config.app!r} is not callable")
    return obj
