"""A blocking TLS line client (LineClient over an SSL socket)."""

from __future__ import annotations

import socket
import ssl

from support.clients import LineClient


class TLSLineClient(LineClient):
    """LineClient whose socket speaks TLS; the handshake happens in the constructor.

    Raises ssl.SSLError if the handshake fails.
    """

    def __init__(self, port: int, context: ssl.SSLContext, timeout: float = 5.0,
                 server_hostname: str = "localhost", prefix: bytes = b"",
                 source: str | None = None) -> None:
        raw = socket.create_connection(
            ("127.0.0.1", port), timeout=timeout,
            source_address=(source, 0) if source else None,
        )
        if prefix:  # e.g. a PROXY header, which travels before TLS
            raw.sendall(prefix)
        self.sock = context.wrap_socket(raw, server_hostname=server_hostname)
        self._buf = b""

    def peer_certificate(self) -> bytes:
        """The server certificate, DER."""
        assert isinstance(self.sock, ssl.SSLSocket)
        der = self.sock.getpeercert(binary_form=True)
        assert der is not None
        return der


class EngineClient:
    """A blocking client made of aiotcp's own sans-I/O TLSEngine over a plain socket:
    it can do what ssl.SSLSocket cannot, e.g. send close_notify and keep reading."""

    def __init__(self, port: int, context: ssl.SSLContext, timeout: float = 5.0) -> None:
        from aiotcp.frontdoor.tlsengine import TLSEngine

        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.engine = TLSEngine(context, server_side=False, server_hostname="localhost")
        while not self.engine.handshake():
            self._flush()
            self._receive()
        self._flush()

    def _flush(self) -> None:
        out = self.engine.output()
        if out:
            self.sock.sendall(out)

    def _receive(self) -> bool:
        data = self.sock.recv(65536)
        if not data:
            self.engine.receive_eof()
            return False
        self.engine.receive(data)
        return True

    def send(self, data: bytes) -> None:
        self.engine.write(data)
        self._flush()

    def close_notify(self) -> None:
        self.engine.close_notify()
        self._flush()

    def read_to_end(self) -> tuple[bytes, bool]:
        """Plaintext until the server ends the stream; True if it ended with close_notify."""
        from aiotcp.frontdoor.tlsengine import TLSClosed

        out = b""
        while True:
            try:
                while chunk := self.engine.read():
                    out += chunk
            except TLSClosed as e:
                return out, e.clean
            try:
                self._receive()
            except ConnectionResetError:
                return out, False
