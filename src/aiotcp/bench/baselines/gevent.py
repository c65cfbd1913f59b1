"""gevent's StreamServer: a greenlet per connection, blocking-style code on a cooperative hub."""

from __future__ import annotations

import contextlib
import signal
from typing import Any

from aiotcp.bench.baselines.entry import PREFIX, announce, parse_args


def handle(sock: Any, address: tuple[str, int]) -> None:
    """Ack every complete line until EOF (gevent closes the socket afterwards)."""
    with contextlib.suppress(OSError), sock.makefile("rb") as lines:
        for line in lines:
            if not line.endswith(b"\n"):
                break
            sock.sendall(PREFIX + line.rstrip(b"\r\n") + b"\n")


def main() -> None:
    import gevent
    from gevent.server import StreamServer

    args = parse_args("aiotcp.bench.baselines.gevent")
    server = StreamServer((args.host, args.port), handle, backlog=args.backlog)
    server.start()
    announce(server.socket.getsockname())
    gevent.signal_handler(signal.SIGTERM, server.stop)
    gevent.signal_handler(signal.SIGINT, server.stop)
    server.serve_forever()


if __name__ == "__main__":
    main()
