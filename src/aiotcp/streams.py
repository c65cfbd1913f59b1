"""Serve a streams-style ``handle_client(reader, writer)`` coroutine, as the article writes it.

The coroutine runs unchanged, but inside the server: it counts against the connection
limits, the idle timeout closes it when no data arrives, and on shutdown its reader
sees EOF after what it has already received, so a loop like the article's
``while True: data = await reader.read(100); if not data: break`` ends by itself and
closes the writer. Deadlines and the registry are the server's.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from aiotcp.server import Server


class StreamsConnection(asyncio.StreamReaderProtocol):
    """A StreamReaderProtocol that registers with the server and runs the app in its TaskGroup."""

    def __init__(self, server: Server) -> None:
        self._aiotcp = server
        self._reader_ref = asyncio.StreamReader(limit=server.config.max_line)
        super().__init__(self._reader_ref, self._client_connected)
        self.last_message = server.clock
        self.opened = server.clock
        self.paused_since: float | None = None
        self.messages = 0  # streams apps frame for themselves: not counted here
        self.acked = 0
        self.bytes_in = 0
        self.bytes_out = 0
        self.close_reason = "closed"
        self.ip: str | None = None
        self.slot = -1
        self._transport_ref: Any = None
        self._task: asyncio.Task[None] | None = None
        self._done = False

    @property
    def peer(self) -> Any:
        t = self._transport_ref
        return t.get_extra_info("peername") if t is not None else None

    @property
    def busy(self) -> bool:
        return False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport_ref = transport
        refusal = self._aiotcp.admit(self, transport)
        if refusal is not None:
            self._done = True
            self._aiotcp.stats.error("busy")
            transport.write(f"ERR busy {refusal}\n".encode())  # type: ignore[attr-defined]
            transport.close()
            return
        super().connection_made(transport)

    def _client_connected(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self._task = self._aiotcp.spawn(self._run(reader, writer))

    async def _run(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await self._aiotcp.handler(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the client went away mid-conversation: not the server's error
        except Exception as e:
            self._aiotcp.handler_failed(e)
        finally:
            if not writer.is_closing():
                writer.close()

    def data_received(self, data: bytes) -> None:
        if self._done:
            return
        self.bytes_in += len(data)
        self.last_message = self._aiotcp.clock
        super().data_received(data)

    def connection_lost(self, exc: Exception | None) -> None:
        if exc is not None and self.close_reason == "closed":
            self.close_reason = "reset"
        self._aiotcp.forget(self)
        if not self._done:
            super().connection_lost(exc)

    def shut_down(self) -> None:
        """Stop reading; the app's reader sees EOF after what it already has."""
        self.close_reason = "shutdown"
        t = self._transport_ref
        if t is not None and not t.is_closing():
            t.pause_reading()
        self._reader_ref.feed_eof()

    def expire(self, code: str, text: str) -> None:
        t = self._transport_ref
        if t is None or t.is_closing():
            return
        self.close_reason = code
        self._aiotcp.stats.error(code)
        t.write(f"ERR {code} {text}\n".encode())
        t.close()

    def abort(self) -> None:
        self.close_reason = "aborted"
        if self._transport_ref is not None:
            self._transport_ref.abort()
        if self._task is not None:
            self._task.cancel()
