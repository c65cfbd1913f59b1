"""The compiled load engine: builds, drives the C server and aiotcp cleanly, catches wrong replies,
and gives way to the Python engine when there is no compiler."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import socketserver
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from aiotcp.bench import lineup
from aiotcp.bench.cengine import choose_engine, run_c_connrate, run_c_load
from aiotcp.bench.cli import bench_main
from aiotcp.bench.loadgen import LoadConfig
from aiotcp.bench.native import CompilerUnavailable, build
from aiotcp.bench.serverproc import ServerProcess, aiotcp_argv, baseline_argv, start_server

PREFIX = "已收到: ".encode()


@pytest.fixture(scope="module")
def c_server() -> Iterator[ServerProcess]:
    with start_server(lineup.server_argv("c-epoll", [])) as server:
        yield server


def test_c_engine_drives_the_c_server_without_a_mismatch(c_server: ServerProcess) -> None:
    marks: list[str] = []
    cfg = LoadConfig(port=c_server.port, connections=20, in_flight=16, duration=0.5)
    result = run_c_load(cfg, ready=lambda: marks.append("ready"))
    assert result.ok, result.error_samples
    assert result.engine == "c" and marks == ["ready"]
    assert result.connected == 20 and result.messages_acked > 0
    assert len(result.client_cpu) == 1 and result.client_cpu[0] > 0
    assert 0 < result.latency_ms["p50"] <= result.latency_ms["p99"] <= result.latency_ms["max"]


@pytest.mark.parametrize(
    "serve_args", [[], ["--app", "aiotcp.bench.userapp:handle"], ["--framing", "length"]],
    ids=["ack", "user-sync-handler", "length-framing"],
)  # fmt: skip
def test_c_engine_drives_aiotcp_without_a_mismatch(serve_args: list[str]) -> None:
    framing = "length" if "length" in serve_args else "line"
    with start_server(aiotcp_argv(serve_args)) as server:
        cfg = LoadConfig(port=server.port, connections=5, in_flight=8, duration=0.4, framing=framing)
        result = run_c_load(cfg)
    assert result.ok, result.error_samples
    assert result.messages_acked > 0


def test_count_mode_sends_exactly_count(c_server: ServerProcess) -> None:
    cfg = LoadConfig(port=c_server.port, connections=7, in_flight=4, duration=0, count=1000)
    result = run_c_load(cfg)
    assert result.ok, result.error_samples
    assert result.messages_sent == result.messages_acked == 1000


def test_open_loop_sends_on_schedule(c_server: ServerProcess) -> None:
    result = run_c_load(LoadConfig(port=c_server.port, connections=2, duration=0.5, rate=200.0))
    assert result.ok, result.error_samples
    assert 50 <= result.messages_sent <= 110  # 200/s for 0.5 s; bounds, not a speed claim


def test_two_engine_processes_merge(c_server: ServerProcess) -> None:
    result = run_c_load(LoadConfig(port=c_server.port, connections=3, duration=0.3, processes=2))
    assert result.ok, result.error_samples
    assert len(result.client_cpu) == 2 and result.connected == 3


def test_prefix_option_and_a_wrong_prefix() -> None:
    argv = [build("server"), "--host", "127.0.0.1", "--port", "0", "--prefix", "got: "]
    with start_server(argv) as server:
        good = run_c_load(LoadConfig(port=server.port, duration=0.3, expect_prefix="got: "))
        bad = run_c_load(LoadConfig(port=server.port, duration=0.3, connections=2))
    assert good.ok, good.error_samples
    assert bad.errors == {"verify": 2}
    assert "mismatch" in bad.error_samples[0] and "got: 0-" in bad.error_samples[0]


class _SwappingHandler(socketserver.StreamRequestHandler):
    """A wrong server: answers each pair of lines in reverse order."""

    def handle(self) -> None:
        held: list[bytes] = []
        for line in self.rfile:
            held.append(PREFIX + line)
            if len(held) == 2:
                self.wfile.write(b"".join(reversed(held)))
                held.clear()


@contextlib.contextmanager
def _threaded_server(handler: type[socketserver.BaseRequestHandler]) -> Iterator[int]:
    """A thread-per-connection server running ``handler`` on loopback; yields its port."""
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def test_detects_replies_out_of_order() -> None:
    with _threaded_server(_SwappingHandler) as port:
        result = run_c_load(LoadConfig(port=port, connections=1, duration=0.3, in_flight=2))
    assert result.errors == {"verify": 1}
    assert "reply mismatch near message 0" in result.error_samples[0]


def test_loose_mode_for_the_seed_and_strict_catches_it() -> None:
    with start_server(baseline_argv("seed_noprint")) as seed:
        loose = run_c_load(LoadConfig(port=seed.port, connections=2, duration=0.3, in_flight=4, verify="loose"))
        strict = run_c_load(LoadConfig(port=seed.port, connections=2, duration=0.3, in_flight=4))
    assert loose.ok, loose.error_samples
    assert "verify" in strict.errors  # read(100) splits replies mid-line


def test_without_a_compiler_the_python_engine_runs(
    c_server: ServerProcess, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("AIOTCP_CC", "/nonexistent")
    engine, note = choose_engine("auto", LoadConfig())
    assert engine == "python" and "AIOTCP_CC=/nonexistent" in note
    with pytest.raises(CompilerUnavailable):
        choose_engine("c", LoadConfig())
    assert "AIOTCP_CC" in lineup.unavailable("c-epoll")  # compare skips the C server row
    argv = ["--port", str(c_server.port), "-c", "2", "-d", "0.3", "--json"]
    assert bench_main(argv) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["engine"] == "python" and data["ok"]
    assert any("compiled engine not used" in w for w in data["warnings"])
    assert bench_main([*argv, "--engine", "c"]) == 2
    assert "compiled engine cannot run" in capsys.readouterr().err


def test_bench_json_says_the_c_engine_ran(c_server: ServerProcess, capsys: pytest.CaptureFixture[str]) -> None:
    assert bench_main(["--port", str(c_server.port), "-c", "2", "-d", "0.3", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["engine"] == "c" and data["ok"] and data["warnings"] == []
    assert set(data["latency_ms"]) >= {"p50", "p90", "p99", "p99.9", "max"}


@pytest.mark.parametrize("command", ["bench", "compare"])
def test_without_the_bench_extra_one_line_and_exit_2(command: str) -> None:
    code = (
        "import sys; sys.modules['hdrh'] = None; from aiotcp.cli import main; "
        f"sys.exit(main([{command!r}, '--port', '1'] if {command!r} == 'bench' else [{command!r}]))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "pip install 'aiotcp[bench]'" in lines[0]


def test_build_caches_by_source_hash(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIOTCP_CACHE_DIR", str(tmp_path))
    first = build("loadgen")
    assert Path(first).parent == tmp_path and os.access(first, os.X_OK)
    assert build("loadgen") == first  # reused, not rebuilt
    assert [p.name for p in tmp_path.iterdir()] == [Path(first).name]  # no temporary left
    usage = subprocess.run([first, "--bogus", "1"], capture_output=True, text=True, check=False)
    assert usage.returncode == 2 and "usage: aiotcp-loadgen" in usage.stderr


def _frame(body: bytes) -> bytes:
    return len(body).to_bytes(4, "big") + body


@pytest.mark.parametrize("name", ["c-epoll", "uvloop_protocol"])
@pytest.mark.parametrize("feed", ["whole", "in pieces", "with trailing bytes"])
def test_length_framing_of_the_ladder_servers_over_loopback(name: str, feed: str) -> None:
    """--framing length: a reply per frame, however the bytes arrive; a frame over the C
    server's limit (64 KiB) closes the connection."""
    bodies = [b"", b"a", b"x" * 60000]
    stream = b"".join(_frame(b) for b in bodies)
    want = b"".join(_frame("已收到: ".encode() + b) for b in bodies)
    with start_server(lineup.server_argv(name, [], "length")) as server, \
            socket.create_connection((server.host, server.port), timeout=10) as sock:  # fmt: skip
        if feed == "in pieces":
            for i in range(0, len(stream), 997):
                sock.sendall(stream[i : i + 997])
        else:
            sock.sendall(stream + (b"\x00\x00" if feed == "with trailing bytes" else b""))
        got = b""
        while len(got) < len(want):
            chunk = sock.recv(65536)
            assert chunk, f"closed after {len(got)} of {len(want)} bytes"
            got += chunk
        assert got == want
        if name == "c-epoll" and feed != "with trailing bytes":
            sock.sendall((65 * 1024).to_bytes(4, "big"))
            assert sock.recv(10) == b""


@pytest.mark.parametrize("serve_args", [[], ["--app", "aiotcp.bench.userapp:handle"]],
                         ids=["ack", "user-sync-handler"])  # fmt: skip
def test_connrate_client_cycles_against_aiotcp_without_an_error(serve_args: list[str]) -> None:
    with start_server(aiotcp_argv(serve_args)) as server:
        marks: list[str] = []
        result = run_c_connrate(LoadConfig(port=server.port, connections=4, duration=0.4),
                                ready=lambda: marks.append("ready"))  # fmt: skip
    assert result.ok, result.error_samples
    assert marks == ["ready"] and result.engine == "c"
    assert result.messages_acked > 0 and result.throughput > 0
    assert result.messages_sent >= result.messages_acked  # begun >= completed in the window
    assert 0 < result.latency_ms["p50"] <= result.latency_ms["p99"] and result.client_cpu[0] > 0


class _WrongPrefix(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        self.wfile.write(b"got: " + self.rfile.readline())


class _ErrBusy(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        self.wfile.write(b"ERR busy too many connections\n")


class _ClosesAtOnce(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        self.rfile.readline()


class _ExtraByte(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        self.wfile.write(PREFIX + self.rfile.readline() + b"!")


class _HalfReply(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        self.wfile.write(PREFIX + self.rfile.readline()[:10])
        self.rfile.read()  # keeps the connection open until the client gives up


@pytest.mark.parametrize(("handler", "kind"), [
    (_WrongPrefix, "verify"), (_ErrBusy, "ERR busy"), (_ClosesAtOnce, "closed"),
    (_ExtraByte, "verify"), (_HalfReply, "unanswered"),
])  # fmt: skip
def test_connrate_client_counts_a_wrong_server_as_errors(
    handler: type[socketserver.BaseRequestHandler], kind: str
) -> None:
    with _threaded_server(handler) as port:
        cfg = LoadConfig(port=port, connections=2, duration=0.3, drain_timeout=0.3)
        result = run_c_connrate(cfg)
    assert result.messages_acked == 0 and not result.ok
    assert set(result.errors) == {kind} and result.errors[kind] >= 2, result.errors
    assert result.error_samples[0].startswith(f"{kind}: ")


def test_connrate_client_counts_a_refused_connect() -> None:
    with socket.socket() as sock:  # a port that was free a moment ago: nothing listens there
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    result = run_c_connrate(LoadConfig(port=port, connections=1, duration=0.2))
    assert result.messages_acked == 0 and result.errors.get("connect", 0) >= 1, result.errors
    assert "refused" in result.error_samples[0]
