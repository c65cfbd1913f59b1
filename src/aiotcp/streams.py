"""Serve a streams-style ``handle_client(reader, writer)`` coroutine, as the article writes it.

The coroutine runs unchanged, but inside the server: it counts against the connection
limits, the idle timeout closes it when no data arrives, bytes both ways are counted,
and on shutdown its reader sees EOF after what it has already received, so a loop like
the article's ``while True: data = await reader.read(100); if not data: break`` ends by
itself and closes the writer. Deadlines and admission are the registry's.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiotcp.dispatch import Dispatch
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


class StreamsConnection(asyncio.StreamReaderProtocol):
    """A StreamReaderProtocol registered with the server, running the app in its TaskGroup."""

    def __init__(self, registry: Registry, dispatch: Dispatch, max_line: int) -> None:
        self._registry = registry
        self._dispatch = dispatch
        self._reader_ref = asyncio.StreamReader(limit=max_line)
        super().__init__(self._reader_ref, self._client_connected)
        self.last_message = registry.clock
        self.opened = registry.clock
        self.paused_since: float | None = None
        self.messages = 0  # streams apps frame for themselves: not counted here
        self.bytes_in = 0
        self.bytes_out = 0
        self.close_reason = "closed"
        self.slot = -1
        self._ip: str | None = None
        self._transport_ref: Any = None
        self._task: asyncio.Task[None] | None = None
        self._refused = False

    @property
    def acked(self) -> int:
        return 0

    @property
    def ip(self) -> str | None:
        return self._ip

    @property
    def peer(self) -> Any:
        t = self._transport_ref
        return t.get_extra_info("peername") if t is not None else None

    @property
    def busy(self) -> bool:
        return False

    listening = False  # streams handlers never push: the idle timeout applies

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport_ref = transport
        if self._registry.max_per_ip:
            peer = transport.get_extra_info("peername")
            self._ip = peer[0] if isinstance(peer, tuple) else str(peer)
        refusal = self._registry.admit(self, self._ip)
        if refusal is not None:
            code, text = refusal
            self._refused = True
            self.close_reason = code
            self._registry.stats.error(code)
            transport.write(f"ERR {code} {text}\n".encode())  # type: ignore[attr-defined]
            transport.close()
            return
        super().connection_made(CountingTransport(transport, self))  # type: ignore[arg-type]

    def _client_connected(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self._task = self._dispatch.spawn(self._run(reader, writer))

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

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        self.bytes_in += len(data)
        self.last_message = self._registry.clock
        super().data_received(data)

    def connection_lost(self, exc: Exception | None) -> None:
        if exc is not None and self.close_reason == "closed":
            self.close_reason = "reset"
        self._registry.forget(self)
        if not self._refused:
            super().connection_lost(exc)

    def shut_down(self) -> None:
        """Stop reading; the app's reader sees EOF after what it already has."""
        self.close_reason = "shutdown"
        t = self._transport_ref
        if t is not None and not t.is_closing():
            t.pause_reading()
        self._reader_ref.feed_eof()

    def end_linger(self) -> None:
        """The app keeps its writer until it ends; the drain deadline aborts what is left."""
        t = self._transport_ref
        if self._task is not None and self._task.done() and t is not None and not t.is_closing():
            t.close()

    def expire(self, code: str, text: str) -> None:
        t = self._transport_ref
        if t is None or t.is_closing():
            return
        self.close_reason = code
        self._registry.stats.error(code)
        t.write(f"ERR {code} {text}\n".encode())
        t.close()

    def abort(self) -> None:
        self.close_reason = "aborted"
        if self._transport_ref is not None:
            self._transport_ref.abort()
        if self._task is not None:
            self._task.cancel()
