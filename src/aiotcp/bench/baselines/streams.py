"""asyncio streams, the textbook way: ``readline`` then ``write`` + ``drain`` per line."""

from __future__ import annotations

import asyncio
import contextlib

from aiotcp.bench.baselines.entry import PREFIX, announce, parse_args, until_signalled


async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Ack each complete line; a partial last line at EOF is dropped."""
    try:
        while True:
            line = await reader.readline()
            if not line.endswith(b"\n"):
                break
            writer.write(PREFIX + line.rstrip(b"\r\n") + b"\n")
            await writer.drain()
    except (ConnectionError, asyncio.LimitOverrunError, ValueError):
        pass
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


async def main() -> None:
    args = parse_args("aiotcp.bench.baselines.streams")
    server = await asyncio.start_server(handle, args.host, args.port, backlog=args.backlog)
    announce(server.sockets[0].getsockname())
    await until_signalled()
    server.close()


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main())
