"""Each baseline server answers correctly over loopback and exits 0 on SIGTERM."""

from __future__ import annotations

import importlib.util
import socket
import time

import pytest

from aiotcp.bench.baselines import BASELINES, LOOSE_BASELINES, REQUIRES
from aiotcp.bench.serverproc import baseline_argv, start_server


def _recv_until(sock: socket.socket, want: int, timeout: float = 5.0) -> bytes:
    data = b""
    deadline = time.monotonic() + timeout
    sock.settimeout(timeout)
    while len(data) < want and time.monotonic() < deadline:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


@pytest.mark.parametrize("name", BASELINES)
def test_baseline_acks_lines_and_stops_cleanly(name: str) -> None:
    lib = REQUIRES.get(name)
    if lib and importlib.util.find_spec(lib) is None:
        pytest.fail(f"{lib} is not installed: the suite needs it (make test installs it)")
    server = start_server(baseline_argv(name))
    try:
        with socket.create_connection((server.host, server.port), timeout=5) as sock:
            if name in LOOSE_BASELINES:
                sock.sendall(b"hello\n")  # the seed replies per read: one message at a time
                assert (
                    _recv_until(sock, len("已收到: hello\n".encode())) == "已收到: hello\n".encode()
                )
            else:
                sock.sendall(
                    b"one\ntwo\r\n\nthree"
                )  # CRLF stripped, empty line acked, partial kept
                want = "已收到: one\n已收到: two\n已收到: \n".encode()
                assert _recv_until(sock, len(want)) == want
                sock.sendall(b"\n")
                assert _recv_until(sock, 16) == "已收到: three\n".encode()
            sock.shutdown(socket.SHUT_WR)
            assert _recv_until(sock, 1) == b""  # the server closes after EOF
    finally:
        status = server.stop()
    assert status == 0


def _length_frame(body: bytes) -> bytes:
    return len(body).to_bytes(4, "big") + body


@pytest.mark.parametrize("feed", ["whole", "byte by byte", "with trailing bytes"])
def test_the_length_framed_protocol_replies_per_frame_however_the_bytes_arrive(feed: str) -> None:
    from aiotcp.bench.baselines.asyncio_protocol import LengthAckProtocol
    from aiotcp.bench.baselines.entry import PREFIX
    from support.fakes import FakeTransport

    bodies = [b"", b"a", b"x" * 70000]
    stream = b"".join(_length_frame(b) for b in bodies)
    proto, transport = LengthAckProtocol(), FakeTransport()
    transport.connect(proto)
    if feed == "whole":
        proto.data_received(stream)
    elif feed == "byte by byte":
        for i in range(len(stream)):
            proto.data_received(stream[i : i + 1])
    else:
        proto.data_received(stream + b"\x00\x00")  # half a header: kept for the next read
        assert proto.pending == b"\x00\x00"
    assert transport.data == b"".join(_length_frame(PREFIX + b) for b in bodies)
