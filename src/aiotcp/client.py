"""``aiotcp client``: send stdin to a server one message per line, print each reply.

Interactive on a terminal; with stdin a pipe or a file it sends every line, and at the
end of stdin waits for the replies to what it sent (one per message in line and length
framing; until the server has been quiet for a moment in raw framing), prints them and
exits 0. It speaks TLS as it speaks plain TCP. It exits 1 with one line on stderr if it
cannot connect, the TLS handshake fails, or the server closes before every reply came.
"""

from __future__ import annotations

import argparse
import asyncio
import ssl
import sys
import threading
from dataclasses import dataclass

from aiotcp.codecs import FrameError, ProtocolError, make_codec

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


class ClientError(Exception):
    """A one-line reason to exit 1."""


def client_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="aiotcp client",
        description="Send each line of stdin as one message and print each reply.",
    )
    p.add_argument("--host", default="127.0.0.1", help="server address (default: 127.0.0.1)")
    p.add_argument("--port", type=int, default=8888, help="server port (default: 8888)")
    p.add_argument("--framing", choices=("line", "length", "raw"), default="line",
                   help="message framing (default: line)")
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
        reply_timeout=ns.reply_timeout,
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


def encode(framing: str, line: bytes) -> bytes:
    """One stdin line (without its newline) as one message in ``framing``."""
    if framing == "line":
        return line + b"\n"
    if framing == "length":
        return len(line).to_bytes(4, "big") + line
    return line


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
    except OSError as e:
        raise ClientError(f"cannot connect to {where}: {e.strerror or e}") from None


def start_stdin_reader(loop: asyncio.AbstractEventLoop, queue: asyncio.Queue[bytes | None]) -> None:
    """Read stdin lines in a daemon thread (it never holds up the exit); None at its end."""

    def put(item: bytes | None) -> None:
        try:
            loop.call_soon_threadsafe(queue.put_nowait, item)
        except RuntimeError:
            pass  # the loop has closed: we are exiting

    def read() -> None:
        for raw in sys.stdin.buffer:
            put(raw.rstrip(b"\n").removesuffix(b"\r"))
        put(None)

    threading.Thread(target=read, name="aiotcp-client-stdin", daemon=True).start()


async def run_client(opts: Options) -> int:
    reader, writer = await connect(opts)
    loop = asyncio.get_running_loop()
    lines: asyncio.Queue[bytes | None] = asyncio.Queue()
    start_stdin_reader(loop, lines)
    printer = ReplyPrinter(opts.framing)
    replies = asyncio.create_task(printer.run(reader))
    sent = 0
    try:
        while True:
            getter = asyncio.ensure_future(lines.get())
            done, _ = await asyncio.wait({getter, replies}, return_when=asyncio.FIRST_COMPLETED)
            if getter not in done:
                getter.cancel()
                break  # the server closed the connection
            line = getter.result()
            if line is None:
                break
            sent += 1
            try:
                writer.write(encode(opts.framing, line))
                await writer.drain()
            except ConnectionError:
                break  # the server closed on us; the replies it sent are still read
        if not replies.done():
            await printer.wait_for(sent, opts.reply_timeout)
    finally:
        replies.cancel()
        writer.close()
        try:
            await writer.wait_closed()
        except (ConnectionError, ssl.SSLError, TimeoutError):
            pass
    if opts.framing != "raw" and printer.count < sent:
        raise ClientError(f"connection closed after {printer.count} of {sent} replies")
    return 0


class ReplyPrinter:
    """Prints replies as they arrive and counts them."""

    def __init__(self, framing: str) -> None:
        self.framing = framing
        self.codec = make_codec(framing, MAX_REPLY)
        self.count = 0
        self.closed = False
        self._changed = asyncio.Event()

    async def run(self, reader: asyncio.StreamReader) -> None:
        try:
            while data := await reader.read(65536):
                for frame in self.codec.feed(data):
                    text = frame.text if isinstance(frame, FrameError) else frame
                    sys.stdout.write(text if self.framing == "raw" else text + "\n")
                    self.count += 1
                sys.stdout.flush()
                self._changed.set()
        except (ConnectionError, ssl.SSLError):
            pass
        except ProtocolError as e:  # a reply over MAX_REPLY, or not the framing asked for
            sys.stderr.write(f"aiotcp client: the server's reply broke the {self.framing} "
                             f"framing: {e.code} {e.text}\n")
        finally:
            if self.framing == "raw" and self.count:
                sys.stdout.write("\n")
                sys.stdout.flush()
            self.closed = True
            self._changed.set()

    async def wait_for(self, sent: int, timeout: float) -> None:
        """Until ``sent`` replies came (raw: the server was quiet RAW_GRACE seconds)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not self.closed:
            if self.framing != "raw" and self.count >= sent:
                return
            self._changed.clear()
            wait = RAW_GRACE if self.framing == "raw" else deadline - loop.time()
            try:
                async with asyncio.timeout(max(0.0, min(wait, deadline - loop.time()))):
                    await self._changed.wait()
            except TimeoutError:
                if self.framing == "raw":
                    return
                raise ClientError(
                    f"{sent - self.count} of {sent} replies not received within {timeout:g}s"
                ) from None
