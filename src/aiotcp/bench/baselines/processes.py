"""A pool of pre-forked blocking servers sharing one listening socket.

The parent binds, forks ``--workers`` children (default: one per CPU) and waits. Each child
blocks in ``accept()`` on the shared socket (the kernel hands each connection to one waiter)
and serves each connection on its own thread with blocking I/O: the classic pre-fork model.
SIGTERM on the parent terminates the children and exits 0.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
import sys
import threading

from aiotcp.bench.baselines.entry import PREFIX, announce


def serve_connection(conn: socket.socket) -> None:
    """Ack every complete line on ``conn`` until EOF, then close it."""
    with conn, contextlib.suppress(OSError), conn.makefile("rb") as lines:
        for line in lines:
            if not line.endswith(b"\n"):
                break
            conn.sendall(PREFIX + line.rstrip(b"\r\n") + b"\n")


def child(listener: socket.socket) -> None:
    """Accept forever on the shared socket; never returns (exits via signal)."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    while True:
        try:
            conn, _ = listener.accept()
        except OSError:
            continue
        threading.Thread(target=serve_connection, args=(conn,), daemon=True).start()


def main() -> None:
    parser = argparse.ArgumentParser(prog="aiotcp.bench.baselines.processes")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8888)
    parser.add_argument("--backlog", type=int, default=1024)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    listener = socket.create_server((args.host, args.port), backlog=args.backlog)
    pids = []
    for _ in range(max(1, args.workers)):
        pid = os.fork()
        if pid == 0:
            try:
                child(listener)
            finally:
                os._exit(0)
        pids.append(pid)
    announce(listener.getsockname())

    def stop(signum: int, frame: object) -> None:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        for pid in pids:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)
        sys.exit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    while True:
        signal.pause()


if __name__ == "__main__":
    main()
