"""The TLS front door before the handshake completes (``aiotcp.frontdoor.tlsengine``).

aiotcp has no ClientHello or record parser of its own: the front door hands every byte
of the handshake to OpenSSL through ``TLSEngine`` (``ssl.MemoryBIO``), built with the
server's real context (``build_server_context``, the default profile). The harness is
what a client can do to that: any bytes, in any chunks, then EOF. (Coverage guidance
sees the Python side only; OpenSSL is not instrumented.)

Asserts: ``handshake()`` returns False (need more) or raises ssl.SSLError, never
anything else, and never completes (no one can forge a Finished); whether the bytes
fail the handshake or leave it waiting is the same whatever the chunking; once the peer's
EOF is received an unfinished handshake raises ssl.SSLError (it never waits on a client
that is gone); ``output()`` is bytes and ``close_notify()`` never raises.
"""

from __future__ import annotations

import ssl
import tempfile
from pathlib import Path

import trustme

from aiotcp.config import Config
from aiotcp.frontdoor.context import build_server_context
from aiotcp.frontdoor.tlsengine import TLSEngine
from fuzz.runner import chunkings


def _context() -> ssl.SSLContext:
    cert = trustme.CA().issue_cert("localhost", "127.0.0.1")
    pem = Path(tempfile.mkdtemp(prefix="aiotcp-fuzz-tls-")) / "server.pem"
    cert.private_key_and_cert_chain_pem.write_to_path(str(pem))
    return build_server_context(Config(tls_cert=str(pem), tls_key=str(pem)))


CONTEXT = _context()


def outcome(chunks: list[bytes]) -> str:
    """``failed`` (ssl.SSLError), or ``waiting`` (still wanting bytes) after ``chunks``."""
    engine = TLSEngine(CONTEXT)
    state = "waiting"
    for chunk in chunks:
        engine.receive(chunk)
        try:
            done = engine.handshake()
        except ssl.SSLError:
            state = "failed"
            break
        assert done is False, "a handshake completed with bytes no client key made"
        assert type(engine.output()) is bytes
    if state == "waiting":
        engine.receive_eof()
        try:
            engine.handshake()
        except ssl.SSLError:
            pass
        else:
            raise AssertionError("after EOF the handshake still waits for bytes")
    assert type(engine.output()) is bytes
    engine.close_notify()
    engine.close_notify()
    return state


def check(data: bytes) -> None:
    got = {outcome(chunks) for chunks in chunkings(data)}
    assert len(got) == 1, f"the chunking changes the verdict: {got}"
