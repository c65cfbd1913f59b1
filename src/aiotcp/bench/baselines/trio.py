"""Trio's ``serve_tcp``: a task per connection, ``receive_some`` + split lines + ``send_all``."""

from __future__ import annotations

import functools
import signal
from typing import Any

from aiotcp.bench.baselines.entry import PREFIX, announce, parse_args

_SEP = b"\n" + PREFIX


async def handle(stream: Any) -> None:
    """Ack every complete line in order; a partial line at EOF is dropped."""
    import trio

    pending = b""
    try:
        while True:
            data = await stream.receive_some(65536)
            if not data:
                return
            lines = (pending + data).split(b"\n")
            pending = lines.pop()
            if lines:
                await stream.send_all(
                    PREFIX + _SEP.join(line.rstrip(b"\r") for line in lines) + b"\n"
                )
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        return


async def serve(host: str, port: int, backlog: int) -> None:
    import trio

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(
            functools.partial(trio.serve_tcp, handle, port, host=host, backlog=backlog)
        )
        announce(listeners[0].socket.getsockname())
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async for _ in signals:
                nursery.cancel_scope.cancel()
                break


def main() -> None:
    import trio

    args = parse_args("aiotcp.bench.baselines.trio")
    trio.run(serve, args.host, args.port, args.backlog)


if __name__ == "__main__":
    main()
