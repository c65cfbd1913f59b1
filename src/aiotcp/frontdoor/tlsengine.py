"""TLS as bytes in, bytes out: ``ssl.SSLObject`` over two ``ssl.MemoryBIO``, sans-I/O.

The caller feeds the ciphertext it read (``receive``), drives the handshake, pulls
plaintext (``read``), pushes plaintext (``write``) and sends whatever ``output()``
returns. Nothing here touches a socket, a clock or an event loop (the shape of Trio's
SSLStream and of asyncio's sslproto, without their per-connection buffers).

Memory is the point: a TLS connection holds only OpenSSL's state and two memory BIOs
(empty between reads); no read buffer is kept per connection.
"""

from __future__ import annotations

import ssl

# One TLS record carries at most 16 KiB of plaintext (RFC 8446 5.1), and SSL_read
# returns at most one record: asking for more would only allocate more per call.
READ_SIZE = 16 * 1024


class TLSClosed(Exception):
    """The peer ended the TLS stream: ``clean`` if by close_notify, else a ragged EOF."""

    def __init__(self, clean: bool) -> None:
        super().__init__("close_notify" if clean else "EOF without close_notify")
        self.clean = clean


class TLSEngine:
    """One TLS connection's state machine (server or client side)."""

    __slots__ = ("_incoming", "_outgoing", "_shut", "obj")

    def __init__(
        self, context: ssl.SSLContext, server_side: bool = True, server_hostname: str | None = None
    ) -> None:
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self.obj = context.wrap_bio(
            self._incoming, self._outgoing, server_side=server_side,
            server_hostname=server_hostname,
        )
        self._shut = False

    def receive(self, data: bytes) -> None:
        """Ciphertext from the peer."""
        self._incoming.write(data)

    def receive_eof(self) -> None:
        """The peer's TCP stream ended (FIN): later reads raise TLSClosed."""
        self._incoming.write_eof()

    def handshake(self) -> bool:
        """Advance the handshake. True once it is complete; False: need more from the peer.

        Raises ssl.SSLError (e.g. SSLCertVerificationError, SSLEOFError) if it failed;
        ``output()`` may then hold an alert worth sending before closing.
        """
        try:
            self.obj.do_handshake()
        except ssl.SSLWantReadError:
            return False
        return True

    def read(self) -> bytes:
        """The next plaintext chunk decrypted from what was received; b"" if none yet.

        Raises TLSClosed when the peer closed (close_notify or ragged EOF), and
        ssl.SSLError for a corrupt stream.
        """
        try:
            data = self.obj.read(READ_SIZE)
        except ssl.SSLWantReadError:
            return b""
        except ssl.SSLZeroReturnError:
            raise TLSClosed(True) from None
        except ssl.SSLEOFError:
            raise TLSClosed(False) from None
        if not data:  # SSLObject.read reports the peer's close_notify as b""
            raise TLSClosed(True)
        return data

    def has_pending(self) -> bool:
        """True if a ``read()`` may return plaintext or TLSClosed without more input."""
        incoming = self._incoming
        return bool(incoming.pending or incoming.eof or self.obj.pending())

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Encrypt ``data`` into ``output()``. Ignored after ``close_notify()``."""
        if not self._shut:
            self.obj.write(data)

    def encrypt(self, data: bytes | bytearray | memoryview) -> bytes:
        """``write(data)`` then ``output()`` in one call (the hot path of sending)."""
        if self._shut:
            return b""
        self.obj.write(data)
        return self._outgoing.read()

    def output(self) -> bytes:
        """Ciphertext to send to the peer now (b"" if none)."""
        out = self._outgoing
        return out.read() if out.pending else b""

    def close_notify(self) -> None:
        """Queue our close_notify alert in ``output()``; no more writes after it. Idempotent."""
        if self._shut:
            return
        self._shut = True
        try:
            self.obj.unwrap()
        except ssl.SSLError:
            pass  # want-read (the peer's close_notify has not come: we do not wait) or a dead stream

    @property
    def shut(self) -> bool:
        return self._shut
