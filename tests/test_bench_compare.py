"""compare: interleaved runs folded into medians, ratio columns, client CPU share, the report."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from aiotcp.bench import lineup, workloads
from aiotcp.bench.aggregate import add_ratios, combine
from aiotcp.bench.cli import compare_main
from aiotcp.bench.compare import _applicable, parse_workload

SERVERS = ["c-epoll", "uvloop_protocol", "aiotcp-sync"]


def test_compare_tiny_run_writes_ratios_and_client_cpu(tmp_path: Path) -> None:
    out = tmp_path / "report"
    argv = ["--servers", ",".join(SERVERS), "--workloads", "c2-f2-s16-d0.2",
            "--runs", "2", "--out", str(out)]  # fmt: skip
    assert compare_main(argv) == 0
    data = json.loads((out / "results.json").read_text())
    assert data["meta"]["engine"] == "c" and data["meta"]["runs"] == 2
    stamp = data["stamp"]  # where the figures came from (aiotcp.bench.stamp)
    assert len(stamp["commit"]["sha"]) == 40 and stamp["machine"]["cores"] >= 1
    assert stamp["machine"]["aiotcp_core"] in ("compiled", "pure") and stamp["other_cpu_pct"] >= 0
    rows = data["rows"]
    assert {(r["server"], r["workload"]) for r in rows} == {(s, "c2-f2-s16-d0.2") for s in SERVERS}
    for r in rows:
        assert r["status"] == "ok", r
        assert r["runs"] == 2
    loads = {r["server"]: r for r in rows if r["kind"] == "load"}
    for r in loads.values():
        assert len(r["throughput_runs"]) == 2
        assert r["throughput_min"] <= r["throughput"] <= r["throughput_max"]
        assert r["engine"] == "c" and r["client_cpu_pct"] > 0
        assert r["server_cpu_pct"] > 0 and r["other_cpu_pct"] >= 0
    assert loads["c-epoll"]["vs_c_epoll"] == 1.0 and loads["uvloop_protocol"]["vs_uvloop_protocol"] == 1.0
    assert "vs_c_epoll" in loads["aiotcp-sync"] and "vs_seed" not in loads["aiotcp-sync"]
    md = (out / "report.md").read_text()
    assert md.splitlines()[2].startswith("*Stamp: commit ")
    assert "vs uvloop Protocol" in md and "vs C epoll" in md and "client CPU %" in md
    assert "compiled C epoll engine" in md
    assert (out / "report.html").read_text().startswith("<!doctype html>")
    table = md.split("## p99")[0]  # the throughput table: one row per server
    for name in SERVERS:
        assert sum(line.startswith(f"| {name} |") for line in table.splitlines()) == 1


def test_compare_payload_ladder_in_both_framings(tmp_path: Path) -> None:
    """The ladder's rungs run after the main workloads, on the ladder servers only, every
    reply verified byte for byte (60 KB lines, length frames), in a table of their own."""
    out = tmp_path / "report"
    rungs = ["c2-f1-s60000-d0.2", "c2-f2-s60000-length-d0.2"]
    argv = ["--servers", "uvloop_protocol,threads", "--workloads", "c2-f1-s16-d0.2",
            "--ladder", ",".join(rungs), "--ladder-servers", ",".join(SERVERS[:2]) + ",aiotcp-ack",
            "--runs", "1", "--out", str(out)]  # fmt: skip
    assert compare_main(argv) == 0
    data = json.loads((out / "results.json").read_text())
    assert data["meta"]["ladder"] == rungs
    ladder = {(r["server"], r["workload"]): r for r in data["rows"] if r["workload"] in rungs}
    assert set(ladder) == {(s, w) for s in ("c-epoll", "uvloop_protocol", "aiotcp-ack") for w in rungs}
    for r in ladder.values():
        assert r["status"] == "ok" and r["errors"] == {} and r["throughput"] > 0, r
    assert ladder[("aiotcp-ack", rungs[1])]["framing"] == "length"
    assert ladder[("uvloop_protocol", rungs[0])]["vs_uvloop_protocol"] == 1.0
    md = (out / "report.md").read_text()
    table = md.split("## Payload ladder")[1].split("## ")[0]
    assert "| c-epoll | uvloop_protocol | aiotcp-ack |" in table
    assert "| 60 KB | line |" in table and "| 60 KB (2 conns, 2 in flight) | length |" in table
    assert "threads" not in table


def test_compare_with_the_python_engine_says_so(tmp_path: Path) -> None:
    out = tmp_path / "report"
    argv = ["--servers", "uvloop_protocol", "--workloads", "c2-f1-s16-d0.2", "--runs", "1",
            "--engine", "python", "--out", str(out)]  # fmt: skip
    assert compare_main(argv) == 0
    (row,) = json.loads((out / "results.json").read_text())["rows"]
    assert row["status"] == "ok" and row["engine"] == "python" and row["client_cpu_pct"] > 0
    assert "the Python engine" in (out / "report.md").read_text()


def test_compare_hold_measures_memory_per_connection(tmp_path: Path) -> None:
    out = tmp_path / "report"
    argv = ["--servers", "c-epoll", "--workloads", "hold20", "--runs", "1", "--out", str(out)]
    assert compare_main(argv) == 0
    (row,) = json.loads((out / "results.json").read_text())["rows"]
    assert row["status"] == "ok" and row["held"] == 20 and row["kib_per_conn"] >= 0
    assert "KiB per held conn (20)" in (out / "report.md").read_text()


def _run(tp: float, cpu: float = 50.0, errors: dict[str, int] | None = None) -> dict[str, Any]:
    lat = {"p50": tp / 1e6, "p99": tp / 1e5}
    return {"throughput": tp, "latency_ms": lat, "client_cpu": [cpu], "client_bound": cpu > 90,
            "engine": "c", "server_cpu_pct": 99.0, "connected": 2, "errors": errors or {},
            "error_samples": ["x"] if errors else [], "peak_rss_kib": 10, "status": "ok"}  # fmt: skip


def test_combine_takes_medians_and_spread() -> None:
    base = {"server": "a", "workload": "w", "kind": "load"}
    row = combine(base, [_run(300.0), _run(100.0, 95.0), _run(200.0)])
    assert (row["throughput"], row["throughput_min"], row["throughput_max"]) == (200.0, 100.0, 300.0)
    assert row["latency_ms"]["p99"] == 0.002 and row["client_cpu_pct_max"] == 95.0
    assert row["client_bound"] and row["status"] == "ok"
    bad = combine(base, [_run(1.0, errors={"verify": 1}), _run(2.0, errors={"verify": 2})])
    assert bad["status"] == "errors" and bad["errors"] == {"verify": 3}
    failed = combine(base, [_run(1.0), {"status": "error", "note": "did not start"}])
    assert failed["status"] == "error" and failed["note"] == "did not start"


def test_ratios_divide_medians_on_the_same_workload() -> None:
    rows = [{"server": s, "workload": "w", "throughput": tp}
            for s, tp in (("uvloop_protocol", 100.0), ("c-epoll", 200.0), ("x", 50.0))]  # fmt: skip
    add_ratios(rows)
    x = rows[2]
    assert (x["vs_uvloop_protocol"], x["vs_c_epoll"]) == (0.5, 0.25) and "vs_seed" not in x


def test_seed_is_not_applicable_to_messages_over_its_read() -> None:
    assert _applicable("seed", parse_workload("c1-f1-s200", 1.0)).startswith("n/a")
    assert _applicable("aiotcp-ack", parse_workload("c1-f1-s200", 1.0)) == ""


@pytest.mark.parametrize("server", sorted(lineup.SERVERS))
def test_length_framing_applies_to_the_servers_that_serve_it(server: str) -> None:
    why = _applicable(server, parse_workload("c1-f1-s64-length", 1.0))
    assert (why == "") == (server in lineup.LENGTH_FRAMED)
    assert set(lineup.LADDER) <= lineup.LENGTH_FRAMED


@pytest.mark.parametrize("argv", [["--workloads", "c10"], ["--workloads", "x1-f1-s1"],
                                  ["--workloads", "hold"], ["--servers", "nginx"], ["--runs", "0"],
                                  ["--ladder", "hold10"], ["--ladder", "c1-f1-s0-length"],
                                  ["--ladder-servers", "nginx"], ["--workloads", "connect0"],
                                  ["--workloads", "connect5-d0"], ["--workloads", "connect5-s64"],
                                  ["--ladder", "connect5"]])  # fmt: skip
def test_bad_arguments_are_refused(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert compare_main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "aiotcp compare:" in err


def test_workload_names_parse() -> None:
    wl = parse_workload("c100-f16-s1024-d2.5", 3.0)
    assert (wl.kind, wl.connections, wl.in_flight, wl.size, wl.duration) == ("load", 100, 16, 1024, 2.5)
    assert parse_workload("hold10000", 3.0).connections == 10000
    wl = parse_workload("c100-f1-s16384-length-d1", 3.0)
    assert (wl.size, wl.framing, wl.duration) == (16384, "length", 1.0)
    assert parse_workload("c100-f1-s64", 3.0).framing == "line"
    assert len(workloads.LADDER) == 8 and {parse_workload(w, 1.0).framing for w in workloads.LADDER} == {"line", "length"}
    with pytest.raises(ValueError):
        parse_workload("c10", 1.0)
    wl = parse_workload("connect50-d2.5", 3.0)
    assert (wl.kind, wl.connections, wl.size, wl.duration) == ("connect", 50, 64, 2.5)
    assert wl.base == "connect50"
    assert parse_workload("connect8", 3.0).duration == 3.0 and "connect50" in workloads.FULL
    for bad in ("connect", "connect-5", "connect5-d1.2.3", "c1-f1-s1-d1.2.3"):
        with pytest.raises(ValueError, match="use c<conns>"):
            parse_workload(bad, 1.0)


def test_connection_rate_row_has_its_ratio_and_unit(tmp_path: Path) -> None:
    out = tmp_path / "report"
    argv = ["--servers", "uvloop_protocol,aiotcp-ack", "--workloads", "connect3-d0.3",
            "--runs", "1", "--out", str(out)]  # fmt: skip
    assert compare_main(argv) == 0
    rows = {r["server"]: r for r in json.loads((out / "results.json").read_text())["rows"]}
    for r in rows.values():
        assert r["kind"] == "connect" and r["status"] == "ok" and r["errors"] == {}, r
        assert r["throughput"] > 0 and r["client_cpu_pct"] > 0 and r["server_cpu_pct"] > 0
    assert rows["uvloop_protocol"]["vs_uvloop_protocol"] == 1.0
    assert "vs_uvloop_protocol" in rows["aiotcp-ack"]
    md = (out / "report.md").read_text()
    assert "| server | connect3-d0.3 (new conns/s) |" in md
    assert "connect3-d0.3 vs uvloop Protocol" in md and "connect<N> = the connection rate" in md
    assert rows["aiotcp-ack"]["server_us_per_conn_min"] > 0
    assert "## Server CPU per new connection, µs" in md


def test_connection_rate_needs_the_compiled_client() -> None:
    wl = parse_workload("connect5", 1.0)
    assert _applicable("aiotcp-ack", wl, "c") == ""
    assert "compiled C" in _applicable("aiotcp-ack", wl, "python")


@pytest.mark.parametrize("name", [s for s in lineup.ORDER if lineup.SERVERS[s].kind == "aiotcp"])
def test_every_aiotcp_row_serves_the_ack_reply_on_the_core_it_names(name: str) -> None:
    from aiotcp.bench.loadgen import LoadConfig, run_load_sync
    from aiotcp.bench.serverproc import start_server
    from aiotcp.core import CORE

    with start_server(lineup.server_argv(name, [])) as server:
        result = run_load_sync(LoadConfig(port=server.port, connections=2, duration=0.2,
                                          in_flight=2))
        log = server.stderr_text()
    assert result.ok and result.messages_acked > 0, result.error_samples
    core = "pure" if lineup.SERVERS[name].pure else CORE
    assert f", {core} core" in log, log
