"""Serve a streams-style ``handle_client(reader, writer)`` coroutine, as the article writes it.

The coroutine runs unchanged, but inside the server: it counts against the connection
limits, the idle timeout closes it when no data arrives, bytes both ways are counted,
and on shutdown its reader sees EOF after what it has already received, so a loop like
the article's ``while True: data = await reader.read(100); if not data: break`` ends by
itself and closes the writer. Deadlines and admission are the registry's.

The lifecycle is the one every kind has (``aiotcp.lifecycle``), with the streams
meaning of its steps: "answer what arrived" is the reader seeing EOF after the data it
already has; the connection is settled when the app's coroutine has returned; a client
that leaves cancels that coroutine. The app owns its stream, so the server writes no
shutdown error into it (it would land in the middle of the app's own output).
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiotcp.dispatch import Dispatch
from aiotcp.lifecycle import CLOSED, CLOSING, EOF, OPEN, SHUTDOWN, Lifecycle
from aiotcp.registry import Registry


class CountingTransport:
    """The transport a streams app writes to: counts the bytes it writes."""

    __slots__ = ("_transport", "_conn")

    def __init__(self, transport: Any, conn: StreamsConnection) -> None:
        self._transport = transport
        self._conn = conn

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self._conn.bytes_out += len(data)
        self._transport.write(data)

    def writelines(self, chunks: Any) -> None:
        for chunk in chunks:
            self.write(chunk)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class StreamsConnection(Lifecycle, asyncio.StreamReaderProtocol):
    """A StreamReaderProtocol registered with the server, running the app in its TaskGroup."""

    def __init__(self, registry: Registry, dispatch: Dispatch, max_line: int) -> None:
        self._registry = registry
        self._dispatch = dispatch
        self._reader_ref = asyncio.StreamReader(limit=max_line)
        super().__init__(self._reader_ref, self._client_connected)
        self._state = OPEN
        self.last_message = registry.clock
        self.opened = registry.clock
        self.messages = 0  # streams apps frame for themselves: not counted here
        self.bytes_in = 0
        self.bytes_out = 0
        self.close_reason = "closed"
        self.slot = -1
        self._ip: str | None = None
        self._app_task: asyncio.Task[None] | None = None
        self._peer_eof = False

    @property
    def acked(self) -> int:
        return 0

    @property
    def ip(self) -> str | None:
        return self._ip

    @property
    def peer(self) -> Any:
        t = self._transport
        return t.get_extra_info("peername") if t is not None else None

    @property
    def busy(self) -> bool:
        return False

    listening = False  # streams handlers never push: the idle timeout applies

    def output_pending(self) -> int:
        t = self._transport
        return t.get_write_buffer_size() if t is not None and self._state != CLOSED else 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        ip: str | None = None
        if self._registry.wants_ip:
            peer = transport.get_extra_info("peername")
            ip = peer[0] if isinstance(peer, tuple) else str(peer)
            if self._registry.max_per_ip:  # kept to give its per-IP count back
                self._ip = ip
        refusal = self._registry.admit(self, ip)
        if refusal is not None:
            code, text = refusal
            self._ip = None
            self._enter(CLOSING, code)
            transport.write(self._error_bytes(code, text))  # type: ignore[attr-defined]
            transport.close()
            return
        super().connection_made(CountingTransport(transport, self))  # type: ignore[arg-type]

    def _client_connected(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        task = self._dispatch.spawn(self._run(reader, writer))
        if not task.done():  # an eager task may have run to its end already
            self._app_task = task

    async def _run(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await self._dispatch.handler(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the client went away mid-conversation: not the server's error
        except Exception as e:
            self._dispatch.failed(e)
        finally:
            if not writer.is_closing():
                writer.close()
            self._app_task = None
            self._settle()

    def data_received(self, data: bytes) -> None:
        if self._state != OPEN:
            return
        self.bytes_in += len(data)
        self.last_message = self._registry.clock
        super().data_received(data)

    def eof_received(self) -> bool:
        if self._state != OPEN:
            return self._client_eof()
        self._begin_close(EOF)
        super().eof_received()  # the app's reader sees EOF after what it has
        self._settle()
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        refused = self._transport is None
        self._lost(exc)
        self._registry.forget(self)
        if not refused:
            super().connection_lost(exc)

    # ---- lifecycle hooks -----------------------------------------------------------

    def _settled(self) -> bool:
        return self._app_task is None

    def _cancel(self) -> None:
        if self._app_task is not None:
            self._app_task.cancel()

    def _error_bytes(self, code: str, text: str) -> bytes:
        self._registry.stats.error(code)
        if code == SHUTDOWN:
            return b""  # the app owns its stream: see the module doc
        return f"ERR {code} {text}\n".encode()

    def _peer_eof_seen(self) -> None:
        self._peer_eof = True

    def _peer_has_eofed(self) -> bool:
        return self._peer_eof

    def shut_down(self) -> None:
        """Stop reading; the app's reader sees EOF after what it already has."""
        if self._transport is None or not self._begin_close(SHUTDOWN):
            return
        if not self._transport.is_closing():
            self._transport.pause_reading()
        self._reader_ref.feed_eof()
        self._settle()
