"""asyncio.Protocol: split the read buffer once, one ``transport.write`` per ``data_received``.

``uvloop_protocol`` runs this same protocol on uvloop. ``--framing length`` serves
length-prefixed frames (4-byte big-endian length, then the bytes; the reply is framed
the same way), written in the same style: slice the frames out of the read, one write.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import cast

from aiotcp.bench.baselines.entry import (
    PREFIX,
    announce,
    parse_args,
    until_signalled,
)

_SEP = b"\n" + PREFIX


class AckProtocol(asyncio.Protocol):
    """Replies ``PREFIX + line + \\n`` for every complete line, in order."""

    __slots__ = ("pending", "transport")

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.pending = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        if self.pending:
            data = self.pending + data
        lines = data.split(b"\n")
        self.pending = lines.pop()
        if lines and self.transport is not None:
            if b"\r" in data:
                lines = [line.rstrip(b"\r") for line in lines]
            self.transport.write(PREFIX + _SEP.join(lines) + b"\n")

    def eof_received(self) -> bool | None:
        return None  # close after the replies already written are flushed


class LengthAckProtocol(AckProtocol):
    """Replies ``len(PREFIX + body) PREFIX body`` for every complete length-prefixed frame."""

    __slots__ = ()

    def data_received(self, data: bytes) -> None:
        if self.pending:
            data = self.pending + data
        out: list[bytes] = []
        pos, end = 0, len(data)
        while end - pos >= 4:
            size = int.from_bytes(data[pos : pos + 4], "big")
            if pos + 4 + size > end:
                break
            out += ((len(PREFIX) + size).to_bytes(4, "big"), PREFIX, data[pos + 4 : pos + 4 + size])
            pos += 4 + size
        self.pending = data[pos:] if pos else data
        if out and self.transport is not None:
            self.transport.write(b"".join(out))


PROTOCOLS: dict[str, type[AckProtocol]] = {"line": AckProtocol, "length": LengthAckProtocol}


async def serve(host: str, port: int, backlog: int, framing: str = "line") -> None:
    """Serve on the running loop until cancelled."""
    loop = asyncio.get_running_loop()
    server = await loop.create_server(PROTOCOLS[framing], host, port, backlog=backlog)
    announce(server.sockets[0].getsockname())
    await until_signalled()
    server.close()


def main(use_uvloop: bool = False) -> None:
    """Parse flags and serve on asyncio (or uvloop) until SIGTERM/SIGINT."""
    args = parse_args(
        "aiotcp.bench.baselines." + ("uvloop_protocol" if use_uvloop else "asyncio_protocol"),
        framings=tuple(PROTOCOLS),
    )
    runner: object = asyncio
    if use_uvloop:
        import uvloop

        runner = uvloop
    with contextlib.suppress(KeyboardInterrupt):
        runner.run(serve(args.host, args.port, args.backlog, args.framing))  # type: ignore[attr-defined]


if __name__ == "__main__":
    main()
