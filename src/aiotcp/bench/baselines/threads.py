"""Thread per connection with blocking sockets (socketserver.ThreadingTCPServer)."""

from __future__ import annotations

import contextlib
import socketserver

from aiotcp.bench.baselines.entry import PREFIX, announce, exit_on_sigterm, parse_args


class AckHandler(socketserver.StreamRequestHandler):
    """Reads lines from a buffered file; writes one reply per line (unbuffered wfile)."""

    def handle(self) -> None:
        with contextlib.suppress(ConnectionError):
            for line in self.rfile:
                if not line.endswith(b"\n"):
                    break
                self.wfile.write(PREFIX + line.rstrip(b"\r\n") + b"\n")


class Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 1024


def main() -> None:
    args = parse_args("aiotcp.bench.baselines.threads")
    exit_on_sigterm()
    with Server((args.host, args.port), AckHandler) as server:
        announce(server.server_address)
        with contextlib.suppress(KeyboardInterrupt, SystemExit):
            server.serve_forever()


if __name__ == "__main__":
    main()
