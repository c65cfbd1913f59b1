"""compare on a tiny workload writes report.md/html/json with one row per server."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from aiotcp.bench.cli import compare_main
from aiotcp.bench.compare import parse_workload

SERVERS = ["seed", "uvloop_protocol", "aiotcp"]


def test_compare_tiny_run_writes_the_report(tmp_path: Path) -> None:
    out = tmp_path / "report"
    argv = [
        "--servers",
        ",".join(SERVERS),
        "--workloads",
        "c2-f2-s16-d0.3,c2-f1-s200-d0.3,hold20",
        "--out",
        str(out),
    ]
    assert compare_main(argv) == 0
    md = (out / "report.md").read_text()
    assert (out / "report.html").read_text().startswith("<!doctype html>")
    data = json.loads((out / "results.json").read_text())
    rows = data["rows"]
    assert {r["server"] for r in rows} == set(SERVERS)
    assert len(rows) == 3 * len(SERVERS)
    seed_big = next(r for r in rows if r["server"] == "seed" and r["workload"] == "c2-f1-s200-d0.3")
    assert seed_big["status"] == "n/a"  # 200 B messages exceed the seed's read(100)
    for r in rows:
        if r["status"] != "n/a":
            assert r["status"] == "ok", r
    holds = [r for r in rows if r["kind"] == "hold"]
    assert all(r["held"] == 20 for r in holds)
    assert (
        next(r for r in rows if r["server"] == "seed" and r["workload"] == "c2-f2-s16-d0.3")[
            "vs_seed"
        ]
        == 1.0
    )
    table = md.split("## p99")[0]  # the throughput table: one row per server
    for name in SERVERS:
        assert sum(line.startswith(f"| {name} |") for line in table.splitlines()) == 1


@pytest.mark.parametrize("bad", ["c10", "x1-f1-s1", "hold"])
def test_bad_workload_names_are_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        parse_workload(bad, 1.0)
    assert compare_main(["--workloads", bad]) == 2


def test_workload_names_parse() -> None:
    wl = parse_workload("c100-f16-s1024-d2.5", 3.0)
    assert (wl.kind, wl.connections, wl.in_flight, wl.size, wl.duration) == (
        "load",
        100,
        16,
        1024,
        2.5,
    )
    assert parse_workload("hold10000", 3.0).connections == 10000
