"""The lifecycle conformance matrix: every connection kind x every event x both loops x
plain, TLS and PROXY, each with the outcome the one rule (``aiotcp.lifecycle``) requires.

Each row runs a real server in this process and a client over a real loopback socket,
and compares what the client saw (reply lines, then EOF or still open) with the row's
expected transcript. A kind the server knows and the table lacks fails
``test_every_kind_has_its_rows``: a new connection kind cannot land without its rows.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

import aiotcp
from aiotcp.config import Config
from aiotcp.frontdoor.tlsengine import TLSClosed, TLSEngine
from aiotcp.runner import loop_factory
from aiotcp.server import KINDS, Server
from support.certs import Certs
from support.clients import ACK
from support.waiting import HANG_GUARD, wait_until_async

MAX_LINE = 256
# Handlers of "slow:" messages take this long, so that the event comes while their
# replies are pending; the outcome is the same either way (no timing is asserted).
SLOW = 0.05
# A reply this big to "fill" outgrows a small socket buffer but not the high-water
# mark's 64 KiB: the case where a close waits for a flush that never comes.
FILL = 48 * 1024
EOF_MARK = "<EOF>"
OPEN_MARK = "<open>"
INTERNAL = "ERR internal handler failed"
SHUTDOWN = "ERR shutdown server is shutting down"
TOO_LONG = f"ERR too-long frame exceeds {MAX_LINE} bytes"
INVALID = "ERR invalid-utf8 message is not valid UTF-8"


# ---- what the handlers do, whatever their kind ------------------------------------------


@dataclass
class Probe:
    """What the handlers of one row saw."""

    handled: list[str] = field(default_factory=list)
    started: list[str] = field(default_factory=list)
    cancelled: list[str] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)


PROBE = Probe()


def reply_to(message: str, conn: Any) -> str:
    """The sync part every kind shares: record, act, return the reply."""
    PROBE.handled.append(message)
    if message == "raise":
        raise RuntimeError("the handler failed")
    if message == "own-timeout":
        raise TimeoutError("the handler's own timeout (a driver's, socket.timeout)")
    if message.startswith("close:") and conn is not None:
        conn.close()
    if message == "fill":
        return ACK + "x" * FILL
    if message == "two-lines":
        return "a reply\nthat would read as two"
    return ACK + message


async def reply_async(message: str, conn: Any) -> str:
    if message.startswith("slow:"):
        await asyncio.sleep(SLOW)
    if message == "hang":
        PROBE.started.append(message)
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            PROBE.cancelled.append(message)
            raise
    return reply_to(message, conn)


def reply_blocking(message: str, conn: Any) -> str:
    if message.startswith("slow:"):
        time.sleep(SLOW)
    if message == "hang":
        PROBE.started.append(message)
        PROBE.release.wait(HANG_GUARD)  # a thread cannot be cancelled: the row lets it go
    return reply_to(message, conn)


def inline(message: str, conn: Any) -> str:
    return reply_to(message, conn)


class SyncBatch:
    def __call__(self, message: str, conn: Any) -> str:
        return reply_to(message, conn)

    def batch(self, messages: list[str], conn: Any) -> list[str]:
        return [reply_to(m, conn) for m in messages]


class AsyncBatch(SyncBatch):
    async def batch(self, messages: list[str], conn: Any) -> list[str]:  # type: ignore[override]
        return [await reply_async(m, conn) for m in messages]


async def streams_app(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """The same behaviour as a streams app: lines in, lines out, close on ``close:``."""
    while True:
        line = await reader.readline()
        if not line.endswith(b"\n"):
            break  # EOF (a partial line at EOF is dropped, as the codecs drop it)
        message = line[:-1].decode()
        reply = await reply_async(message, None)
        writer.write(reply.encode() + b"\n")
        await writer.drain()
        if message.startswith("close:"):
            break
    writer.close()


# kind -> (handler, extra settings)
KIND_APPS: dict[str, tuple[Any, dict[str, Any]]] = {
    "prefix": (aiotcp.Ack(), {}),
    "inline": (inline, {}),
    "batch": (SyncBatch(), {}),
    "sequential": (reply_async, {}),
    "queued": (reply_async, {"handler_concurrency": 4}),
    "async-batch": (AsyncBatch(), {}),
    "blocking": (aiotcp.blocking(reply_blocking), {"threads": 4}),
    "streams": (streams_app, {"api": "streams"}),
}

SYNC = ("inline", "batch")
BATCHES = ("batch", "async-batch")  # one call takes every message of a read
NO_HANDLER = ("prefix",)  # no user code runs: handler events do not apply


# ---- the wire: one client over plain TCP, TLS or behind a PROXY header -------------------


class Wire:
    """A client socket; ``lines()`` reads until EOF (or until ``n`` lines)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = b""
        self.eof = False

    @classmethod
    async def open(cls, port: int, transport: str, certs: Certs, rcvbuf: int = 0) -> Wire:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.setblocking(False)
        loop = asyncio.get_running_loop()
        await loop.sock_connect(sock, ("127.0.0.1", port))
        if transport == "tls":
            wire: Wire = TLSWire(sock, certs)
        else:
            wire = cls(sock)
        if transport == "proxy":
            await wire._send_raw(b"PROXY TCP4 203.0.113.7 127.0.0.1 40000 8888\r\n")
        await wire.start()
        return wire

    async def start(self) -> None:
        pass

    async def _send_raw(self, data: bytes) -> None:
        await asyncio.get_running_loop().sock_sendall(self.sock, data)

    async def send(self, data: bytes) -> None:
        await self._send_raw(data)

    async def _recv(self) -> bytes:
        try:
            return await asyncio.get_running_loop().sock_recv(self.sock, 65536)
        except ConnectionResetError:
            return b""

    async def _fill(self) -> None:
        chunk = await self._recv()
        if chunk:
            self.buf += chunk
        else:
            self.eof = True

    async def lines(self, n: int | None = None) -> list[str]:
        """Reply lines until EOF (with EOF_MARK appended), or the next ``n`` lines."""
        out: list[str] = []
        async with asyncio.timeout(HANG_GUARD):
            while n is None or len(out) < n:
                while b"\n" in self.buf and (n is None or len(out) < n):
                    line, self.buf = self.buf.split(b"\n", 1)
                    out.append(line.decode())
                if n is not None and len(out) == n:
                    break
                if self.eof:
                    out.append(EOF_MARK)
                    break
                await self._fill()
        return out

    async def open_or_eof(self) -> list[str]:
        """[OPEN_MARK] if a round trip still gets its reply, else what came instead."""
        try:
            await self.send(b"ping\n")
        except OSError:
            return [EOF_MARK]
        got = await self.lines(1)
        return [OPEN_MARK] if got == [ACK + "ping"] else got

    async def half_close(self) -> None:
        self.sock.shutdown(socket.SHUT_WR)

    def reset(self) -> None:
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.sock.close()

    def close(self) -> None:
        self.sock.close()


class TLSWire(Wire):
    """The same over TLS, with a sans-I/O engine so that the client can half-close
    (close_notify, then FIN) as a TLS peer does."""

    def __init__(self, sock: socket.socket, certs: Certs) -> None:
        super().__init__(sock)
        self.engine = TLSEngine(certs.client_context(), server_side=False,
                                server_hostname="localhost")

    async def start(self) -> None:
        engine = self.engine
        while not engine.handshake():
            await self._send_raw(engine.output())
            chunk = await self._recv()
            if not chunk:
                raise ConnectionError("the server closed during the handshake")
            engine.receive(chunk)
        await self._send_raw(engine.output())

    async def send(self, data: bytes) -> None:
        await self._send_raw(self.engine.encrypt(data))

    async def _fill(self) -> None:
        chunk = await self._recv()
        if chunk:
            self.engine.receive(chunk)
        else:
            self.engine.receive_eof()
        try:
            while piece := self.engine.read():
                self.buf += piece
        except TLSClosed:
            self.eof = True
        except OSError:  # a reset or a broken stream: the server is gone all the same
            self.eof = True
        out = self.engine.output()
        if out and not self.eof:
            with contextlib.suppress(OSError):
                await self._send_raw(out)

    async def half_close(self) -> None:
        self.engine.close_notify()
        await self._send_raw(self.engine.output())
        self.sock.shutdown(socket.SHUT_WR)


# ---- the rows ---------------------------------------------------------------------------


@dataclass
class Run:
    """One row's server, client and probe."""

    server: Server
    port: int
    transport: str
    certs: Certs
    wires: list[Wire] = field(default_factory=list)

    async def wire(self, rcvbuf: int = 0) -> Wire:
        w = await Wire.open(self.port, self.transport, self.certs, rcvbuf)
        self.wires.append(w)
        return w

    async def received(self, n: int) -> None:
        """Wait until the one connection is registered and has received ``n`` bytes."""
        await wait_until_async(
            lambda: self.server.registry.members
            and self.server.registry.members[0].bytes_in >= n,
            what=f"the server receiving {n} bytes",
        )

    async def gone(self) -> None:
        await wait_until_async(lambda: len(self.server.registry) == 0,
                               what="the connection leaving the registry")


async def half_close(run: Run) -> list[str]:
    w = await run.wire()
    await w.send(b"a\nslow:b\npartial")
    await w.half_close()
    return await w.lines()


async def close_mid_read(run: Run) -> list[str]:
    w = await run.wire()
    await w.send(b"a\nclose:b\nc\n")
    out = await w.lines()
    if run.server.kind not in BATCHES:
        assert "c" not in PROBE.handled  # nothing after the closing message is handled
    return out


async def shutdown_pending(run: Run) -> list[str]:
    w = await run.wire()
    await w.send(b"a\nslow:b\n")
    await run.received(len(b"a\nslow:b\n"))
    stopping = asyncio.ensure_future(run.server.shutdown())
    out = await w.lines()
    w.close()
    await stopping
    return out


async def client_leaves(run: Run) -> list[str]:
    """The client resets while its handler works: the handler is cancelled (threads
    cannot be: they are let go), the place is freed at once, nothing is left running."""
    w = await run.wire()
    hangs = run.server.kind not in SYNC + NO_HANDLER
    await w.send(b"hang\n" if hangs else b"a\n")
    if hangs:
        await wait_until_async(lambda: PROBE.started, what="the handler starting")
    else:
        await run.received(2)
    w.reset()
    await run.gone()
    if run.server.kind == "blocking":
        PROBE.release.set()
    elif hangs:
        await wait_until_async(lambda: PROBE.cancelled == ["hang"], what="the handler cancelled")
    await wait_until_async(lambda: not run.server.dispatch.running,
                           what="no handler task left running")
    return [EOF_MARK]


async def handler_raises(run: Run) -> list[str]:
    w = await run.wire()
    await w.send(b"raise\n")
    out = await w.lines(1)
    return out if out == [EOF_MARK] else out + await w.open_or_eof()


async def own_timeout(run: Run) -> list[str]:
    w = await run.wire()
    await w.send(b"own-timeout\n")
    out = await w.lines(1)
    return out if out == [EOF_MARK] else out + await w.open_or_eof()


async def bad_reply(run: Run) -> list[str]:
    """A reply holding the framing's delimiter is never written as two frames: the
    message gets the internal error and the next reply pairs with the next request."""
    w = await run.wire()
    await w.send(b"two-lines\nb\n")
    return await w.lines(2) + await w.open_or_eof()


async def frame_error(run: Run) -> list[str]:
    w = await run.wire()
    await w.send(b"a\n" + b"x" * (MAX_LINE + 10) + b"\nb\n")
    return await w.lines()


async def bad_frame(run: Run) -> list[str]:
    w = await run.wire()
    await w.send(b"a\n\xff\nb\n")
    return await w.lines(3) + await w.open_or_eof()


async def zero_window(run: Run) -> list[str]:
    """A client that stops reading with output below the high-water mark queued, past
    its idle timeout: the write clock drops it; its slot, fd and buffers are freed."""
    w = await run.wire(rcvbuf=4096)
    await run.received(0)
    conn = run.server.registry.members[0]
    raw = conn._transport.get_extra_info("socket")  # type: ignore[attr-defined]
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    if run.server.kind == "prefix":
        await w.send((b"x" * 60 + b"\n") * (FILL // 64))
    else:
        await w.send(b"fill\n")
    await run.gone()
    assert run.server.stats.errors.get("write-timeout") == 1
    w.close()
    return [EOF_MARK]


EVENTS: dict[str, Callable[[Run], Any]] = {
    "half-close": half_close,
    "close": close_mid_read,
    "shutdown": shutdown_pending,
    "client-leaves": client_leaves,
    "handler-raises": handler_raises,
    "own-timeout": own_timeout,
    "bad-reply": bad_reply,
    "frame-error": frame_error,
    "bad-frame": bad_frame,
    "zero-window": zero_window,
}

NA = None  # the event cannot happen on this kind; the reason is in the comment beside it

HALF = [ACK + "a", ACK + "slow:b", EOF_MARK]
CLOSE = [ACK + "a", ACK + "close:b", EOF_MARK]
# A batch gets every message of the read at once: its replies leave, then the close.
CLOSE_BATCH = [ACK + "a", ACK + "close:b", ACK + "c", EOF_MARK]
SHUT = [ACK + "a", ACK + "slow:b", SHUTDOWN, EOF_MARK]
RAISED = [INTERNAL, OPEN_MARK]
FATAL = [ACK + "a", TOO_LONG, EOF_MARK]
BAD = [ACK + "a", INVALID, ACK + "b", OPEN_MARK]
GONE = [EOF_MARK]


def row(**overrides: list[str] | None) -> dict[str, list[str] | None]:
    """The outcomes of a kind: the common rule, with this kind's own differences."""
    rule: dict[str, list[str] | None] = {
        "half-close": HALF, "close": CLOSE, "shutdown": SHUT, "client-leaves": GONE,
        "handler-raises": RAISED, "own-timeout": RAISED,
        "bad-reply": [INTERNAL, ACK + "b", OPEN_MARK], "frame-error": FATAL,
        "bad-frame": BAD, "zero-window": GONE,
    }
    rule.update(overrides)
    return rule


# kind -> event -> the transcript the client must see
EXPECTED: dict[str, dict[str, list[str] | None]] = {
    # No user code runs: close/raise/timeout cannot happen.
    "prefix": row(**{
        "close": NA, "handler-raises": NA, "own-timeout": NA, "bad-reply": NA,
    }),
    "inline": row(),
    "batch": row(close=CLOSE_BATCH),
    "sequential": row(),
    "queued": row(),
    "async-batch": row(close=CLOSE_BATCH),
    "blocking": row(),
    # The app owns its stream: no shutdown error is written into it; an app that raises
    # ends (the connection closes); it frames for itself, so frame errors and what its
    # replies hold are its own.
    "streams": row(**{
        "shutdown": HALF, "handler-raises": GONE, "own-timeout": GONE,
        "bad-reply": NA, "frame-error": NA, "bad-frame": NA,
    }),
}


def test_every_kind_has_its_rows() -> None:
    assert set(EXPECTED) == set(KINDS) == set(KIND_APPS)
    for kind, outcomes in EXPECTED.items():
        assert set(outcomes) == set(EVENTS), kind
    assert len(ROWS) == sum(1 for o in EXPECTED.values() for v in o.values() if v is not NA)


TRANSPORTS = ("plain", "tls", "proxy")


@contextlib.asynccontextmanager
async def serving(kind: str, transport: str, loop: str, certs: Certs) -> AsyncIterator[Run]:
    handler, extra = KIND_APPS[kind]
    settings: dict[str, Any] = {
        "host": "127.0.0.1", "port": 0, "loop": loop, "max_line": MAX_LINE,
        "idle_timeout": 0.5, "write_timeout": 0.5, "access_log": False,
        # Timed, with no handler timeout: the path on which a handler's own TimeoutError
        # used to break the worker.
        "handler_timeout": 0, "metrics_port": 1, **extra,
    }
    if transport == "tls":
        settings.update(tls_cert=str(certs.server), tls_key=str(certs.server))
    elif transport == "proxy":
        settings.update(proxy_protocol=True)
    server = Server(handler, Config(**settings))
    assert server.kind == kind
    await server.start()
    run = Run(server, server.addresses[0][1], transport, certs)
    try:
        yield run
    finally:
        PROBE.release.set()
        for w in run.wires:
            w.close()
        await server.shutdown()


# Every (kind, event) the table says can happen; test_every_kind_has_its_rows checks the
# table states every pair.
ROWS = [(k, e) for k in KINDS for e in EVENTS if EXPECTED.get(k, {}).get(e) is not NA]


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize(("kind", "event"), ROWS, ids=[f"{k}-{e}" for k, e in ROWS])
def test_lifecycle(kind: str, event: str, transport: str, loop: str, certs: Certs) -> None:
    expected = EXPECTED[kind][event]
    global PROBE
    PROBE = Probe()

    async def main() -> list[str]:
        async with serving(kind, transport, loop, certs) as run:
            return await EVENTS[event](run)  # type: ignore[no-any-return]

    with asyncio.Runner(loop_factory=loop_factory(Config(loop=loop))) as runner:
        assert runner.run(main()) == expected
