"""One lifecycle for every connection kind: its states, its rules, its one implementation.

States (``Lifecycle._state``), changed only by :meth:`Lifecycle._enter`:

``OPEN``      reading; every complete message is handled.
``CLOSING``   no new message is handled (input is read and dropped); the replies to the
              messages already taken still leave, in order. ``close_reason`` says why.
``DRAINING``  after shutdown only: the protocol's shutdown error and FIN are sent; input
              is read and dropped until the client's EOF (or the end of the linger), so
              that no unread input turns the close into a RST.
``CLOSED``    ``connection_lost``: the connection is gone.

The rules, the same for every kind (prefix, inline, batch, sequential, queued, async
batch, blocking, streams; plain, TLS, PROXY):

- replies to what arrived leave before any close, in message order;
- half-close (client EOF): every complete message is answered, then the connection
  closes;
- ``conn.close()`` from a handler: this message's reply and those before it leave;
  no message after it is started;
- shutdown: answer what arrived, then the protocol's shutdown error, then FIN
  (``DRAINING``); after the server's linger, a connection that settles closes at once,
  still with FIN, never RST; the server's deadline aborts what is left. A connection
  that has sent nothing yet (accepted just before, or as, shutdown began: its first
  message may be on its way) is served through the linger, then shut down the same way;
- a fatal frame error: the replies before it and its error reply leave, then close;
- a client that leaves (reset, or the transport lost): its handler work is cancelled
  and its place in the registry is freed at once;
- timeouts: idle closes with the protocol's error; write-timeout (a client that takes
  no output) aborts.

A kind supplies four hooks: :meth:`_settled` (no handler work in flight), :meth:`_drop`
(forget messages not yet started), :meth:`_cancel` (cancel handler work) and
:meth:`_error_bytes` (the protocol's encoding of a server error, or ``b""``).
"""

from __future__ import annotations

from typing import Any

OPEN = 0
CLOSING = 1
DRAINING = 2
CLOSED = 3

STATE_NAMES = ("open", "closing", "draining", "closed")

# Why a connection closed, as the access log and the matrix tests name it. Fatal frame
# errors close with their own code (``too-long``, ``protocol``...).
EOF = "eof"  # the client half-closed
HANDLER = "handler"  # conn.close()
SHUTDOWN = "shutdown"
IDLE_TIMEOUT = "idle-timeout"
WRITE_TIMEOUT = "write-timeout"
ABORTED = "aborted"  # the server's deadline or a second stop request
RESET = "reset"  # the client reset the connection
LOST = "closed"  # lost without any of the above (the default reason)

SHUTDOWN_TEXT = "server is shutting down"


class Lifecycle:
    """The lifecycle every connection kind mixes in (see the module doc).

    The class using it provides ``_state``, ``close_reason``, ``_transport``,
    ``_registry`` and the four hooks; this class has no state of its own.
    """

    __slots__ = ()

    _state: int
    close_reason: str
    _transport: Any
    _registry: Any

    # ---- hooks of the kind ---------------------------------------------------------

    def _settled(self) -> bool:
        """True when no handler work is in flight (every reply taken is written)."""
        return True

    def _drop(self) -> None:
        """Forget messages received and not yet started."""

    def _cancel(self) -> None:
        """Cancel handler work in flight (the client is gone)."""

    def _error_bytes(self, code: str, text: str) -> bytes:
        """The protocol's bytes for a server error, counted; ``b""`` to write none."""
        return b""

    def _peer_eof_seen(self) -> None:
        """Remember that the client half-closed while this connection was closing."""

    def _peer_has_eofed(self) -> bool:
        return False

    # ---- the one place the state changes -----------------------------------------

    def _enter(self, state: int, reason: str | None = None) -> None:
        # The slots are the kind's (this mixin has none, so that kinds stay dict-free).
        self._state = state  # type: ignore[misc]
        if reason is not None:
            self.close_reason = reason  # type: ignore[misc]

    # ---- events --------------------------------------------------------------------

    @property
    def closing(self) -> bool:
        """True once the connection has left ``OPEN``."""
        return self._state != OPEN

    @property
    def state_name(self) -> str:
        return STATE_NAMES[self._state]

    def _begin_close(self, reason: str) -> bool:
        """OPEN -> CLOSING(reason); False if not OPEN. What was received is still
        answered (half-close, shutdown); ``close()`` drops what was not started."""
        if self._state != OPEN:
            return False
        self._enter(CLOSING, reason)
        return True

    def _settle(self) -> None:
        """Handler work finished: a CLOSING connection with nothing in flight ends."""
        if self._state == CLOSING and self._settled():
            self._end()

    def _end(self) -> None:
        """CLOSING and settled: end the way ``close_reason`` requires."""
        t = self._transport
        if t is None or t.is_closing():
            return
        if self.close_reason != SHUTDOWN:
            t.close()  # after the buffered replies are sent
            return
        out = self._error_bytes(SHUTDOWN, SHUTDOWN_TEXT)
        if out:
            self._count_out(out)
            t.write(out)
        if self._registry.linger_over or self._peer_has_eofed() or not t.can_write_eof():
            t.close()
            return
        try:
            t.write_eof()
        except OSError:  # the client is already gone (asyncio raises, uvloop does not)
            t.abort()
            return
        self._enter(DRAINING)

    def _count_out(self, data: bytes) -> None:
        """Count ``data`` as written by the server (kinds that count bytes override)."""

    def _client_eof(self) -> bool:
        """The client half-closed in a state other than OPEN; returns ``eof_received``'s
        answer (True: keep the transport for the replies still to leave)."""
        if self._state == DRAINING:
            self._transport.close()
        elif self._state == CLOSING:
            self._peer_eof_seen()
        return True

    def shut_down(self) -> None:
        """Graceful stop: answer what arrived, the shutdown error, FIN (then DRAINING)."""
        if self._transport is None:
            return
        if self._begin_close(SHUTDOWN):
            self._settle()

    def end_linger(self) -> None:
        """The server's linger is over: stop waiting for the client's EOF.

        A connection still CLOSING ends by itself when it settles (``_end`` reads the
        registry's ``linger_over``), with FIN. One still OPEN (it had sent nothing when
        shutdown began, so its first message may have been on its way) is shut down now:
        what it sent meanwhile is answered first.
        """
        if self._state == DRAINING:
            self._transport.close()
        elif self._state == OPEN:
            self.shut_down()

    def expire(self, code: str, text: str) -> None:
        """A deadline passed (the registry's sweep): idle closes with the protocol's
        error; write-timeout (the client takes no output) aborts, whatever the state."""
        t = self._transport
        if t is None:
            return
        if code == WRITE_TIMEOUT:
            self._error_bytes(code, text)  # counted; nothing is written to such a client
            self._abort(code)
            return
        if t.is_closing() or not self._begin_close(code):
            return
        out = self._error_bytes(code, text)
        if out:
            self._count_out(out)
            t.write(out)
        t.close()

    def abort(self) -> None:
        """Drop the connection now (the drain deadline, a second stop request)."""
        self._abort(ABORTED)

    def _abort(self, reason: str) -> None:
        if self._state == CLOSED or self._transport is None:
            return
        self._enter(CLOSING if self._state == OPEN else self._state, reason)
        self._drop()
        self._transport.abort()

    def _lost(self, exc: Exception | None) -> None:
        """``connection_lost``: CLOSED, work cancelled; the kind then frees its place."""
        reset = exc is not None and self.close_reason in (LOST, EOF)
        self._enter(CLOSED, RESET if reset else None)
        self._drop()
        self._cancel()
