"""The load generator verifies replies against real servers and catches wrong ones."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator

import pytest

from aiotcp.bench.cli import bench_main
from aiotcp.bench.loadgen import LoadConfig, run_load, run_load_sync
from aiotcp.bench.multiproc import run_load_processes
from aiotcp.bench.results import LoadResult
from aiotcp.bench.serverproc import ServerProcess, aiotcp_argv, baseline_argv, start_server


@pytest.fixture(scope="module")
def protocol_server() -> Iterator[ServerProcess]:
    with start_server(baseline_argv("asyncio_protocol")) as server:
        yield server


@pytest.fixture(scope="module")
def seed_server() -> Iterator[ServerProcess]:
    with start_server(baseline_argv("seed_noprint")) as server:
        yield server


def test_closed_loop_verifies_every_reply(protocol_server: ServerProcess) -> None:
    cfg = LoadConfig(port=protocol_server.port, connections=4, duration=0.5, in_flight=8)
    result = run_load_sync(cfg)
    assert result.ok, result.error_samples
    assert result.connected == 4 and result.messages_acked > 0
    assert result.latency_ms["p50"] > 0 and result.latency_ms["max"] >= result.latency_ms["p99"]


def test_open_loop_sends_on_schedule(protocol_server: ServerProcess) -> None:
    cfg = LoadConfig(port=protocol_server.port, connections=2, duration=0.5, rate=200.0)
    result = run_load_sync(cfg)
    assert result.ok, result.error_samples
    # 200 msg/s for 0.5 s is about 100 messages; bounded, not a speed assertion
    assert 50 <= result.messages_sent <= 110


def test_processes_merge_histograms(protocol_server: ServerProcess) -> None:
    cfg = LoadConfig(port=protocol_server.port, connections=3, duration=0.5, processes=2)
    result = run_load_processes(cfg)
    assert result.ok, result.error_samples
    assert len(result.client_cpu) == 2 and result.connected == 3


def test_seed_needs_loose_verify(seed_server: ServerProcess) -> None:
    loose = LoadConfig(
        port=seed_server.port, connections=2, duration=0.4, in_flight=4, verify="loose"
    )
    assert run_load_sync(loose).ok
    # with 4 in flight the seed's read(100) splits replies mid-line: strict verify must object
    strict = LoadConfig(port=seed_server.port, connections=2, duration=0.4, in_flight=4)
    result = run_load_sync(strict)
    assert not result.ok and "verify" in result.errors


async def _broken_server(kind: str) -> asyncio.Server:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held: list[bytes] = []
        while line := await reader.readline():
            body = line.rstrip(b"\n")
            if kind == "content":
                writer.write("已收到: ".encode() + body.upper() + b"\n")
            else:  # swap each pair of replies
                held.append(body)
                if len(held) == 2:
                    writer.write(b"".join("已收到: ".encode() + b + b"\n" for b in reversed(held)))
                    held.clear()
            await writer.drain()
        writer.close()

    return await asyncio.start_server(handle, "127.0.0.1", 0)


@pytest.mark.parametrize("kind", ["content", "order"])
def test_detects_a_wrong_reply(kind: str) -> None:
    async def main() -> LoadResult:
        server = await _broken_server(kind)
        port = server.sockets[0].getsockname()[1]
        try:
            return await run_load(LoadConfig(port=port, connections=1, duration=0.3, in_flight=2))
        finally:
            server.close()

    result = asyncio.run(main())
    assert not result.ok
    assert result.errors.get("verify") == 1
    assert "mismatch" in result.error_samples[0]


def test_json_output_shape(
    protocol_server: ServerProcess, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["--port", str(protocol_server.port), "-c", "2", "-d", "0.3", "-f", "2", "--json"]
    assert bench_main(argv) == 0
    out = capsys.readouterr().out
    data = json.loads(out)  # exactly one JSON object, nothing else
    assert out.count("\n") == 1
    for key in (
        "throughput",
        "latency_ms",
        "errors",
        "client_cpu",
        "messages_acked",
        "ok",
        "client_bound",
    ):
        assert key in data
    assert set(data["latency_ms"]) >= {"p50", "p90", "p99", "p99.9", "max"}
    assert data["ok"] is True and data["errors"] == {}


def test_bench_exit_status_reports_errors(capsys: pytest.CaptureFixture[str]) -> None:
    with start_server(baseline_argv("seed_noprint")) as seed:
        argv = ["--port", str(seed.port), "-c", "1", "-d", "0.3", "-f", "4", "--json"]
        assert bench_main(argv) == 1
    assert json.loads(capsys.readouterr().out)["errors"]


@pytest.mark.parametrize("binary", [False, True], ids=["text", "binary"])
@pytest.mark.parametrize("framing", ["line", "length", "varint"])
def test_against_aiotcp(framing: str, binary: bool) -> None:
    """Every built-in framing, each with the server on str and on bytes (--binary)."""
    serve = ["--framing", framing] + (["--binary"] if binary else [])
    with start_server(aiotcp_argv(serve)) as server:
        cfg = LoadConfig(
            port=server.port, connections=3, duration=0.4, in_flight=4, framing=framing
        )  # type: ignore[arg-type]
        result = run_load_sync(cfg)
    assert result.ok, result.error_samples
