"""``FrontDoor``: the protocol asyncio sees for each accepted socket when TLS or the
PROXY protocol is on. It reads the PROXY header, then runs the TLS handshake, then
creates the server's own connection protocol (the *inner* protocol) and serves it.

For the inner protocol a FrontDoor is the transport: plaintext in, plaintext out,
``peername`` from the PROXY header. With the PROXY protocol and no TLS it steps aside
after the header: the real transport is handed to the inner protocol (``set_protocol``)
behind a ``ProxiedTransport`` whose only change is ``peername``.

Phases: PROXY -> HANDSHAKE -> OPEN -> (WRITE_SHUT) -> CLOSING -> CLOSED.
``data_received`` never raises: an unexpected error aborts this one connection.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Iterable
from typing import Any

from aiotcp.frontdoor.gate import Gate
from aiotcp.frontdoor.proxied import ProxiedTransport
from aiotcp.frontdoor.proxyproto import UNTRUSTED, ProxyHeader, ProxyHeaderParser
from aiotcp.frontdoor.tlsengine import TLSClosed, TLSEngine

log = logging.getLogger("aiotcp")

PROXY, HANDSHAKE, OPEN, WRITE_SHUT, CLOSING, CLOSED = range(6)


class FrontDoor(asyncio.Protocol, asyncio.Transport):
    """One accepted connection before (and, with TLS, around) the inner protocol."""

    __slots__ = (
        "_engine",
        "_eof",
        "_inner",
        "_parser",
        "_paused",
        "_peer",
        "_state",
        "_transport",
    )

    _gate: Gate  # per server: a class attribute of the subclass FrontDoorWrapper makes

    def __init__(self) -> None:
        self._transport: Any = None
        self._inner: Any = None
        self._engine: TLSEngine | None = None
        self._parser: ProxyHeaderParser | None = None
        self._peer: Any = None  # the client's address from the PROXY header, if any
        self._state = PROXY
        self._paused = False
        self._eof = False

    # ---- asyncio.Protocol (the socket's side) --------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport
        gate = self._gate
        if gate.proxy:
            peer = transport.get_extra_info("peername")
            if not gate.trusts(peer):
                gate.rejected(peer, UNTRUSTED, "peer is not in proxy_trusted")
                self._state = CLOSING
                transport.close()
                return
            if not gate.started(self, peer):
                self._state = CLOSING
                transport.close()
                return
            self._parser = ProxyHeaderParser()
        else:
            if not gate.started(self, transport.get_extra_info("peername")):
                self._state = CLOSING
                transport.close()
                return
            self._start_tls()

    def data_received(self, data: bytes) -> None:
        try:
            state = self._state
            if state == OPEN or state == WRITE_SHUT:
                engine = self._engine
                assert engine is not None
                engine.receive(data)
                self._deliver()
            elif state == PROXY:
                self._proxy_data(data)
            elif state == HANDSHAKE:
                assert self._engine is not None
                self._engine.receive(data)
                self._handshake()
            # CLOSING/CLOSED: input after we closed is dropped.
        except Exception:  # a bug must not escape into the loop; this connection ends
            log.exception("front door: unexpected error, aborting the connection")
            self.abort()

    def eof_received(self) -> bool:
        try:
            state = self._state
            if state == PROXY:
                if self._parser is not None and self._parser.buffered:
                    self._gate.rejected(self._peername(), "malformed", "EOF inside the header")
                self._close_now()
            elif state == HANDSHAKE:
                assert self._engine is not None
                self._engine.receive_eof()
                self._handshake()
            elif state == OPEN or state == WRITE_SHUT:
                assert self._engine is not None
                self._engine.receive_eof()
                self._deliver()
        except Exception:
            log.exception("front door: unexpected error at EOF, aborting the connection")
            self.abort()
        return True  # the write side stays open until we (or the inner protocol) close

    def connection_lost(self, exc: Exception | None) -> None:
        was = self._state
        self._state = CLOSED
        self._gate.finished(self)
        inner = self._inner
        if inner is not None and was >= OPEN:
            inner.connection_lost(exc)
        self._engine = None  # free OpenSSL's state now, not when the last reference goes
        self._parser = None

    def pause_writing(self) -> None:
        if self._inner is not None:
            self._inner.pause_writing()

    def resume_writing(self) -> None:
        if self._inner is not None:
            self._inner.resume_writing()

    # ---- phases --------------------------------------------------------------------

    def _proxy_data(self, data: bytes) -> None:
        assert self._parser is not None
        result = self._parser.feed(data)
        if result is None:
            return
        self._parser = None
        gate = self._gate
        if not isinstance(result, ProxyHeader):
            gate.rejected(self._peername(), result.reason, result.detail)
            self._close_now()
            return
        self._peer = result.source
        if gate.tls is not None:
            self._start_tls()
            if result.rest:
                assert self._engine is not None
                self._engine.receive(result.rest)
                self._handshake()
            return
        # Plain TCP: step aside. The inner protocol gets the real transport.
        gate.finished(self)
        self._state = CLOSED
        transport = self._transport
        inner = gate.inner_factory()
        transport.set_protocol(inner)
        inner.connection_made(
            transport if result.source is None else ProxiedTransport(transport, result.source)
        )
        if result.rest and not transport.is_closing():
            inner.data_received(result.rest)

    def _start_tls(self) -> None:
        tls = self._gate.tls
        assert tls is not None
        self._engine = TLSEngine(tls.current)
        self._state = HANDSHAKE

    def _handshake(self) -> None:
        engine = self._engine
        assert engine is not None
        try:
            done = engine.handshake()
        except ssl.SSLError as e:
            self._flush()  # the alert telling the client why
            if not isinstance(e, ssl.SSLEOFError):  # a client that left is no failure
                self._gate.tls_failed(self._peername(), e)
            self._close_now()
            return
        self._flush()
        if not done:
            return
        self._gate.finished(self)
        self._state = OPEN
        inner = self._inner = self._gate.inner_factory()
        inner.connection_made(self)
        if self._state == OPEN and engine.has_pending():
            self._deliver()  # application data that came with the client's Finished

    def _deliver(self) -> None:
        """Hand the inner protocol every plaintext chunk received, unless it paused us."""
        engine = self._engine
        inner = self._inner
        assert engine is not None
        try:
            while not self._paused and self._state <= WRITE_SHUT:
                chunk = engine.read()
                if not chunk:
                    break
                inner.data_received(chunk)
                # Stop without another read (and its want-read exception) when the
                # input held only this record: the usual case.
                if not engine.has_pending():
                    break
        except TLSClosed:
            self._peer_closed()
        except ssl.SSLError as e:
            log.debug("TLS stream from %s broken: %s", self._peername(), e)
            self._flush()
            self._close_now()
            return
        out = engine.output()  # e.g. an answer to a key update
        if out:
            self._transport.write(out)

    def _peer_closed(self) -> None:
        if self._eof:
            return
        self._eof = True
        if self._state <= WRITE_SHUT and not self._inner.eof_received():
            self.close()

    def _flush(self) -> None:
        engine = self._engine
        if engine is not None:
            out = engine.output()
            if out:
                self._transport.write(out)

    def _close_now(self) -> None:
        self._state = CLOSING
        self._gate.finished(self)
        self._transport.close()

    def _peername(self) -> Any:
        return self._transport.get_extra_info("peername") if self._transport else None

    # ---- for the gate --------------------------------------------------------------

    @property
    def in_handshake(self) -> bool:
        return self._state < OPEN

    def handshake_expired(self) -> None:
        self._gate.timed_out(self._peername(), self._state == PROXY)
        self.abort()

    # ---- asyncio.Transport (the inner protocol's side) -----------------------------

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._state != OPEN:
            return  # after close or write_eof, writes are dropped (as by a closing transport)
        engine = self._engine
        assert engine is not None
        self._transport.write(engine.encrypt(data))

    def writelines(self, list_of_data: Iterable[bytes | bytearray | memoryview]) -> None:
        self.write(b"".join(list_of_data))

    def write_eof(self) -> None:
        """close_notify, then half-close the socket: the peer can still send."""
        if self._state != OPEN:
            return
        self._state = WRITE_SHUT
        assert self._engine is not None
        self._engine.close_notify()
        self._flush()
        if self._transport.can_write_eof():
            self._transport.write_eof()

    def can_write_eof(self) -> bool:
        return True

    def close(self) -> None:
        """close_notify (once), then close the socket after what is buffered is sent."""
        if self._state >= CLOSING:
            return
        if self._engine is not None and self._state >= OPEN:
            self._engine.close_notify()
            self._flush()
        self._close_now()

    def abort(self) -> None:
        if self._state != CLOSED:
            self._state = CLOSING
            self._gate.finished(self)
            if self._transport is not None:
                self._transport.abort()

    def is_closing(self) -> bool:
        return self._state >= CLOSING or self._transport.is_closing()

    def pause_reading(self) -> None:
        self._paused = True
        if not self._transport.is_closing():
            self._transport.pause_reading()

    def resume_reading(self) -> None:
        if not self._paused:
            return
        self._paused = False
        if not self._transport.is_closing():
            self._transport.resume_reading()
        engine = self._engine
        if engine is not None and engine.has_pending():
            # Plaintext left when we paused: delivered from the loop, not from inside
            # the inner protocol's own call.
            asyncio.get_running_loop().call_soon(self._deliver_later)

    def _deliver_later(self) -> None:
        try:
            if self._engine is not None and self._state <= WRITE_SHUT:
                self._deliver()
        except Exception:
            log.exception("front door: unexpected error, aborting the connection")
            self.abort()

    def is_reading(self) -> bool:
        return not self._paused and self._state < CLOSING

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self._transport.set_write_buffer_limits(high, low)

    def get_write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size()  # type: ignore[no-any-return]

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return self._transport.get_write_buffer_limits()  # type: ignore[no-any-return]

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._inner = protocol

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._inner  # type: ignore[no-any-return]

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == "peername":
            return self._peer if self._peer is not None else self._peername()
        engine = self._engine
        if engine is not None:
            if name == "ssl_object":
                return engine.obj
            if name == "peercert":
                return engine.obj.getpeercert()
            if name == "cipher":
                return engine.obj.cipher()
            if name == "compression":
                return engine.obj.compression()
            if name == "sslcontext":
                return engine.obj.context
        if self._transport is None:
            return default
        return self._transport.get_extra_info(name, default)
