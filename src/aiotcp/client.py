"""``aiotcp client``: send stdin to a server one message per line, print each reply.

Interactive on a terminal; with stdin a pipe or a file it sends every line, and at the
end of stdin waits for the replies to what it sent (one per message in line and length
framing; until the server has been quiet for a moment in raw framing), prints them and
exits 0. It speaks TLS as it speaks plain TCP.

Exit 0 only when stdin ended and every reply came. Exit 1 with one line on stderr when
it cannot connect, the TLS handshake fails, or the connection ends early: the server
closes (idle timeout, ``ERR shutdown``, a refused client certificate) while stdin is
still open or before every reply came.

Stdin is read on the event loop (``add_reader`` on its descriptor, left in blocking mode
because a terminal shares it with stdout), never by a thread: a thread blocked in a read
of ``sys.stdin`` when the client exits aborts the interpreter at shutdown.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import ssl
import sys
from dataclasses import dataclass
from typing import Any

from aiotcp.codecs import (
    FRAMINGS, CodecError, FrameError, ProtocolError, builtin, checked_factory, imported,
)

# Replies can be longer than the server's --max-line (prefix + message): the client
# only protects itself from a runaway frame.
MAX_REPLY = 16 * 1024 * 1024
# Raw framing has no message boundaries: after stdin ends, replies are awaited until
# the server has been quiet this long.
RAW_GRACE = 0.5
CONNECT_TIMEOUT = 10.0
# After stdin ends, how long to wait for the replies still due.
DEFAULT_REPLY_TIMEOUT = 10.0


@dataclass
class Options:
    host: str
    port: int
    framing: str
    tls: bool
    tls_ca: str | None
    tls_cert: str | None
    tls_key: str | None
    server_name: str | None
    reply_timeout: float
    codec: str | None = None
    binary: bool = False

    @property
    def raw(self) -> bool:
        """Raw framing: replies have no boundaries (counted by the server going quiet)."""
        return self.codec is None and self.framing == "raw"

    def new_codec(self) -> Any:
        """A codec for the connection: the named one, or the built-in framing's.

        Raises ClientError (one line) if the codec cannot be loaded or made.
        """
        try:
            if self.codec is None:
                factory, name = builtin(self.framing, self.binary), self.framing
            else:
                factory, name = imported(self.codec), self.codec
            return checked_factory(factory, MAX_REPLY, name)()
        except CodecError as e:
            raise ClientError(str(e)) from None


class ClientError(Exception):
    """A one-line reason to exit 1."""


def client_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="aiotcp client",
        description="Send each line of stdin as one message and print each reply.",
    )
    p.add_argument("--host", default="127.0.0.1", help="server address (default: 127.0.0.1)")
    p.add_argument("--port", type=int, default=8888, help="server port (default: 8888)")
    p.add_argument("--framing", choices=FRAMINGS, default="line",
                   help="message framing (default: line)")
    p.add_argument("--codec", metavar="MODULE:ATTR",
                   help="the server's own codec (as serve --codec): each stdin line is one "
                        "message through its encode, each reply one line of its feed; "
                        "overrides --framing")
    p.add_argument("--binary", action="store_true",
                   help="messages as bytes, not text: stdin lines are sent as they are and "
                        "replies printed as they came (as serve --binary)")
    p.add_argument("--tls", action="store_true", help="connect with TLS")
    p.add_argument("--tls-ca", help="CA bundle (PEM) to verify the server (implies --tls)")
    p.add_argument("--tls-cert", help="client certificate chain (PEM) (implies --tls)")
    p.add_argument("--tls-key", help="client private key (PEM; default: in --tls-cert)")
    p.add_argument("--server-name", help="TLS server name to verify (default: --host)")
    p.add_argument("--reply-timeout", type=float, default=DEFAULT_REPLY_TIMEOUT,
                   help="seconds to wait for outstanding replies after stdin ends")
    return p


def client_main(argv: list[str]) -> int:
    ns = client_parser().parse_args(argv)
    opts = Options(
        host=ns.host, port=ns.port, framing=ns.framing,
        tls=bool(ns.tls or ns.tls_ca or ns.tls_cert), tls_ca=ns.tls_ca,
        tls_cert=ns.tls_cert, tls_key=ns.tls_key, server_name=ns.server_name,
        reply_timeout=ns.reply_timeout, codec=ns.codec, binary=ns.binary,
    )
    try:
        return asyncio.run(run_client(opts))
    except ClientError as e:
        print(f"aiotcp client: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def tls_context(opts: Options) -> ssl.SSLContext:
    """The client SSLContext for ``opts``; raises ClientError for an unreadable file."""
    try:
        ctx = ssl.create_default_context(cafile=opts.tls_ca)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        if opts.tls_cert:
            ctx.load_cert_chain(opts.tls_cert, opts.tls_key)
    except (OSError, ssl.SSLError) as e:
        raise ClientError(f"cannot load TLS files: {e}") from None
    return ctx


async def connect(opts: Options) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    ctx = tls_context(opts) if opts.tls else None
    where = f"{opts.host}:{opts.port}"
    try:
        async with asyncio.timeout(CONNECT_TIMEOUT):
            return await asyncio.open_connection(
                opts.host, opts.port, ssl=ctx,
                server_hostname=(opts.server_name or opts.host) if ctx else None,
            )
    except ssl.SSLError as e:
        raise ClientError(f"TLS handshake with {where} failed: {e.reason or e}") from None
    except TimeoutError:
        raise ClientError(f"cannot connect to {where}: timed out") from None
    except OSError as e:  # asyncio's strerror is "Connect call failed (addr)": say why
        reason = os.strerror(e.errno) if e.errno else str(e)
        raise ClientError(f"cannot connect to {where}: {reason}") from None


class StdinLines:
    """The lines of a file descriptor (stdin), without their line ends; None at its end.

    A pipe, socket or terminal is watched by the loop and read when readable; a regular
    file or ``/dev/null`` (which the loop cannot watch, and whose reads never wait) is
    read when a line is asked for.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, fd: int) -> None:
        self._loop = loop
        self._fd = fd
        self._pending = bytearray()
        self._lines: asyncio.Queue[bytes | None] = asyncio.Queue()
        self._ended = False
        try:
            loop.add_reader(fd, self._read)
            self._watched = True
        except (OSError, ValueError):  # EPERM: a regular file; EBADF: no stdin at all
            self._watched = False

    def _read(self) -> None:
        try:
            data = os.read(self._fd, 65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:  # EIO: the terminal went away; EBADF: closed
            data = b""
        if not data:
            self._end()
            return
        self._pending += data
        *lines, rest = self._pending.split(b"\n")
        self._pending = bytearray(rest)
        for line in lines:
            self._lines.put_nowait(bytes(line).removesuffix(b"\r"))

    def _end(self) -> None:
        if self._ended:
            return
        self._ended = True
        self.close()
        if self._pending:
            self._lines.put_nowait(bytes(self._pending).removesuffix(b"\r"))
            self._pending.clear()
        self._lines.put_nowait(None)

    async def next(self) -> bytes | None:
        """The next line; None once stdin has ended."""
        while not self._watched and self._lines.empty() and not self._ended:
            self._read()
        return await self._lines.get()

    def close(self) -> None:
        """Stop watching the descriptor (idempotent); it stays open and unchanged."""
        if self._watched:
            self._watched = False
            self._loop.remove_reader(self._fd)


async def run_client(opts: Options) -> int:
    """Send stdin, print replies; 0 when stdin ended and every reply came.

    Raises ClientError (one line) when the connection cannot be made or ends early.
    """
    codec = opts.new_codec()
    reader, writer = await connect(opts)
    stdin = StdinLines(asyncio.get_running_loop(), 0)  # fd 0 even if sys.stdin is None
    printer = ReplyPrinter(opts, codec)
    replies = asyncio.create_task(printer.run(reader))
    sent = 0
    ended = False
    try:
        while True:
            getter = asyncio.ensure_future(stdin.next())
            done, _ = await asyncio.wait({getter, replies}, return_when=asyncio.FIRST_COMPLETED)
            if getter not in done:
                getter.cancel()
                break  # the server closed the connection
            line = getter.result()
            if line is None:
                ended = True
                break
            sent += 1
            try:
                message: Any = line if opts.binary else line.decode("utf-8", "replace")
                writer.write(codec.encode([message]))
                await writer.drain()
            except (ConnectionError, ssl.SSLError):
                break  # the server closed on us; the replies it sent are still read
        if not replies.done():  # stdin ended, or a write failed: the replies still due
            await printer.wait_for(sent, opts.reply_timeout)
    finally:
        stdin.close()
        replies.cancel()
        writer.close()
        try:
            await writer.wait_closed()
        except (ConnectionError, ssl.SSLError, TimeoutError):
            pass
    complete = ended and not printer.broken and (opts.raw or printer.count >= sent)
    if complete:
        return 0
    if printer.error:
        raise ClientError(printer.error)
    if not ended:
        raise ClientError("the server closed the connection before the end of stdin")
    raise ClientError(f"connection closed after {printer.count} of {sent} replies")


class ReplyPrinter:
    """Prints replies as they arrive and counts them."""

    def __init__(self, opts: Options, codec: Any) -> None:
        self.raw = opts.raw
        self.framing = opts.codec or opts.framing
        self.codec = codec
        self.count = 0
        self.closed = False
        # Why reading ended, if not by the server's close: a TLS alert (such as a
        # refused client certificate), a reply that broke the framing.
        self.error = ""
        self.broken = False  # a reply could not be read: never a complete exchange
        self._changed = asyncio.Event()

    async def run(self, reader: asyncio.StreamReader) -> None:
        try:
            while data := await reader.read(65536):
                for frame in self.codec.feed(data):
                    self.show(frame)
                    self.count += 1
                sys.stdout.flush()
                self._changed.set()
        except ssl.SSLError as e:
            reason = str(e.reason or e)
            if "CERTIFICATE" in reason or "UNKNOWN_CA" in reason:  # the server's alert
                self.error = f"the server refused the client certificate ({reason})"
            else:
                self.error = f"TLS error: {reason}"
        except ConnectionError:
            pass  # a reset after the server's last reply (e.g. ERR too-long) is a close
        except ProtocolError as e:  # a reply over MAX_REPLY, or not the framing asked for
            self.error = f"the server's reply broke the {self.framing} framing: {e.code} {e.text}"
            self.broken = True
        finally:
            if self.raw and self.count:
                sys.stdout.write("\n")
                sys.stdout.flush()
            self.closed = True
            self._changed.set()

    def show(self, frame: Any) -> None:
        """One reply on stdout: text as it is, bytes as they came, anything else as str."""
        end = "" if self.raw else "\n"
        if isinstance(frame, FrameError):
            frame = frame.text
        if isinstance(frame, (bytes, bytearray, memoryview)):
            sys.stdout.flush()
            sys.stdout.buffer.write(bytes(frame) + end.encode())
        else:
            sys.stdout.write(str(frame) + end)

    async def wait_for(self, sent: int, timeout: float) -> None:
        """Until ``sent`` replies came (raw: the server was quiet RAW_GRACE seconds)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not self.closed:
            if not self.raw and self.count >= sent:
                return
            self._changed.clear()
            wait = RAW_GRACE if self.raw else deadline - loop.time()
            try:
                async with asyncio.timeout(max(0.0, min(wait, deadline - loop.time()))):
                    await self._changed.wait()
            except TimeoutError:
                if self.raw:
                    return
                raise ClientError(
                    f"{sent - self.count} of {sent} replies not received within {timeout:g}s"
                ) from None
