"""The app contract: a message handler, optionally with a lifespan, bundled as an App.

A handler is any of:

* ``def handle(message: str, conn) -> str | None``: runs inline in the event loop. Keep
  it fast: it must not block.
* ``async def handle(message: str, conn) -> str | None``: up to ``handler_concurrency``
  messages of one connection at once; replies leave in message order.
* a sync handler decorated with :func:`blocking`: runs in a bounded thread pool, so a
  blocking call inside it never stalls the loop.

A returned string is one reply frame; ``None`` sends nothing. A handler that raises
gets ``ERR internal`` for that message (its traceback is logged, rate-limited) and the
connection goes on.

A handler object may also offer ``batch(messages, conn) -> list[str | None]``, one
reply per message, for all the messages of one read (sync), or of whatever is queued
(``async def batch``). If a batch raises, its traceback is logged and each of its
messages gets ``ERR internal``: it is never re-run message by message, so its side
effects happen once.

A handler whose reply is always ``prefix + message`` may say so with an attribute
``reply_prefix = prefix``; the server then answers well-formed frames on bytes, without
decoding them or calling the handler (the built-in ``ack`` and ``echo`` apps do).

An :class:`App` adds a lifespan: async generators that run once per process before the
listener is bound (open pools there) and resume after the last connection has drained
(close them)::

    app = aiotcp.App()

    @app.lifespan
    async def pools(state):
        state.db = await asyncpg.create_pool(DSN)
        yield
        await state.db.close()

    @app.handler
    async def handle(message, conn):
        async with app.state.db.acquire() as c:
            return str(await c.fetchval("SELECT $1::text", message))
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar, Union

if TYPE_CHECKING:
    from aiotcp.observe.stats import Stats

Reply = Union[str, None]
Handler = Callable[[str, Any], Union[Reply, Awaitable[Reply]]]
Lifespan = Callable[["State"], AsyncGenerator[None, None]]

F = TypeVar("F", bound=Callable[..., Any])

BLOCKING_ATTR = "__aiotcp_blocking__"

log = logging.getLogger("aiotcp")


class AppError(ValueError):
    """An app cannot be served as given; the message says why."""


class LifespanError(Exception):
    """A lifespan raised before its ``yield``: the app could not start."""


def blocking(fn: F) -> F:
    """Mark a sync handler as blocking: it runs in the server's thread pool."""
    if inspect.iscoroutinefunction(fn):
        raise TypeError("@blocking is for sync handlers; an async handler never needs it")
    setattr(fn, BLOCKING_ATTR, True)
    return fn


def is_blocking(handler: object) -> bool:
    return bool(getattr(handler, BLOCKING_ATTR, False))


def is_async(fn: object) -> bool:
    """True if calling ``fn`` (a function, method, ``functools.partial`` of one, or a
    callable object) returns a coroutine."""
    while isinstance(fn, functools.partial):
        fn = fn.func
    if inspect.isfunction(fn) or inspect.ismethod(fn):
        return inspect.iscoroutinefunction(fn)
    return inspect.iscoroutinefunction(getattr(fn, "__call__", None))


class State:
    """Attributes an app's lifespan sets for its handlers (``state.db = pool``)."""

    def __repr__(self) -> str:
        return f"State({vars(self)!r})"


class App:
    """A handler with its lifespan (and its codec, for an app that speaks its own
    protocol). ``aiotcp serve --app module:app`` serves it.

    ``App(handler)`` wraps a plain handler; ``@app.handler`` and ``@app.lifespan`` set
    them by decoration. Lifespans enter in the order given and exit in reverse.
    """

    def __init__(
        self, handler: Any = None, *, lifespan: Lifespan | None = None, codec: Any = None
    ) -> None:
        self.state = State()
        self._handler = handler
        # The app's own protocol: a codec class or factory called with max_line, one
        # codec per connection (see aiotcp.codecs.contract); None: the --framing given.
        self.codec = codec
        self._lifespans: list[Lifespan] = [lifespan] if lifespan is not None else []
        # App hooks: the serving server's counters, set by the server
        # before the lifespan runs; readiness checks; drain callbacks.
        self.stats: Stats | None = None
        self._readiness: list[Callable[[], bool]] = []
        self._drains: list[Callable[[], Awaitable[None]]] = []

    def handler(self, fn: F) -> F:
        """Decorator: the handler of this app (a function or a handler object)."""
        self._handler = fn
        return fn

    def lifespan(self, fn: Lifespan) -> Lifespan:
        """Decorator: an async generator ``fn(state)`` yielding once, run per process."""
        if not inspect.isasyncgenfunction(fn):
            raise TypeError("a lifespan is an async generator function: async def f(state): ... yield")
        self._lifespans.append(fn)
        return fn

    def readiness(self, fn: Callable[[], bool]) -> Callable[[], bool]:
        """Decorator: ``fn()`` is False while the app cannot serve (``/readyz`` answers 503).

        Called at every ``/readyz`` request: it must be quick and never block.
        """
        self._readiness.append(fn)
        return fn

    @property
    def ready(self) -> bool:
        """True unless a readiness check says otherwise."""
        return all(fn() for fn in self._readiness)

    def on_drain(self, fn: Callable[[], Awaitable[None]]) -> Callable[[], Awaitable[None]]:
        """Decorator: ``await fn()`` when shutdown begins, before connections are asked
        to finish (a broker delivers what it already received while clients still listen).
        """
        self._drains.append(fn)
        return fn

    async def drain(self) -> None:
        """Await every drain callback in order; one that raises is logged and skipped."""
        for fn in self._drains:
            try:
                await fn()
            except Exception:
                log.exception("drain callback %s failed", getattr(fn, "__qualname__", fn))

    @property
    def target(self) -> Any:
        """The handler; raises AppError if none was set."""
        if self._handler is None:
            raise AppError("the app has no handler (decorate one with @app.handler)")
        return self._handler

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[State]:
        """Run every lifespan up to its ``yield``; on exit, resume them in reverse."""
        async with contextlib.AsyncExitStack() as stack:
            for fn in self._lifespans:
                await stack.enter_async_context(_lifespan_context(fn, self.state))
            yield self.state


@contextlib.asynccontextmanager
async def _lifespan_context(fn: Lifespan, state: State) -> AsyncIterator[None]:
    gen = fn(state)
    try:
        await gen.__anext__()
    except StopAsyncIteration:
        raise AppError(f"lifespan {fn.__qualname__} did not yield") from None
    except Exception as e:
        raise LifespanError(f"{fn.__qualname__}: {type(e).__name__}: {e}") from e
    try:
        yield
    finally:
        try:
            await gen.__anext__()
        except StopAsyncIteration:
            pass
        else:
            await gen.aclose()
            raise AppError(f"lifespan {fn.__qualname__} yielded more than once")


def as_app(obj: Any) -> App:
    """``obj`` if it is an App, else an App serving ``obj`` as its handler."""
    return obj if isinstance(obj, App) else App(obj)
