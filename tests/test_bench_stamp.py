"""The stamp: which commit, which machine, and the run's own CPU told apart from the rest."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from pathlib import Path

from aiotcp.bench import stamp
from aiotcp.core import CORE

#: A child that uses this much CPU (its own clock, not the wall's), then waits on stdin.
BURN = "import sys, time\nwhile time.process_time() < {s}: pass\nprint('done', flush=True)\n{rest}"


def git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True)


def test_commit_names_head_and_says_when_the_tree_is_dirty(tmp_path: Path) -> None:
    git(tmp_path, "init", "-q")
    (tmp_path / "f").write_text("1")
    git(tmp_path, "add", "f")
    git(tmp_path, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "x")
    head = subprocess.run(["git", "-C", str(tmp_path), "rev-parse", "HEAD"], check=True,
                          capture_output=True, text=True).stdout.strip()  # fmt: skip
    assert stamp.commit(tmp_path) == {"sha": head, "dirty": False}
    results = tmp_path / "benchmarks" / "results"
    results.mkdir(parents=True)
    (results / "r.json").write_text("1")
    git(tmp_path, "add", "benchmarks")
    git(tmp_path, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "y")
    head = subprocess.run(["git", "-C", str(tmp_path), "rev-parse", "HEAD"], check=True,
                          capture_output=True, text=True).stdout.strip()  # fmt: skip
    (results / "r.json").write_text("2")  # a result rewritten by the run: still clean
    assert stamp.commit(tmp_path) == {"sha": head, "dirty": False}
    (tmp_path / "f").write_text("2")
    assert stamp.commit(tmp_path) == {"sha": head, "dirty": True}
    assert stamp.commit(Path("/proc")) == {"sha": None, "dirty": False}  # not a checkout


def test_machine_says_what_ran() -> None:
    m = stamp.machine()
    assert m["aiotcp_core"] == CORE and m["python"] == platform.python_version()
    assert m["cores"] == len(os.sched_getaffinity(0)) and m["kernel"] == platform.release()
    assert m["openssl"].startswith("OpenSSL") and m["cpu"]


def test_own_cpu_counts_children_alive_and_reaped() -> None:
    before = stamp.own_cpu_seconds()
    reaped = subprocess.run([sys.executable, "-c", BURN.format(s=0.3, rest="")], check=True,
                            capture_output=True)  # fmt: skip
    assert reaped.stdout == b"done\n"
    after_reaped = stamp.own_cpu_seconds()
    assert after_reaped - before >= 0.25  # /proc counts whole clock ticks
    alive = subprocess.Popen([sys.executable, "-c", BURN.format(s=0.3, rest="sys.stdin.read()")],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE)  # fmt: skip
    try:
        assert alive.stdout is not None and alive.stdout.readline() == b"done\n"
        assert stamp.own_cpu_seconds() - after_reaped >= 0.25  # a live child's CPU counts too
    finally:
        alive.communicate(b"")


def test_a_recorder_stamps_the_run() -> None:
    s = stamp.Recorder("the command").stamp()
    assert s["command"] == "the command" and s["other_cpu_pct"] >= 0
    assert s["machine"] == stamp.machine() and len(s["commit"]["sha"]) == 40


def test_the_stamp_line_says_where_a_figure_came_from() -> None:
    line = stamp.stamp_line(stamp.Recorder().stamp())
    assert line.startswith("*Stamp: commit ") and f"{CORE} core" in line
    assert "2026-11-25" in stamp.stamp_line(None, "2026-11-25 18:07:26 +0000")
    assert "predates stamps" in stamp.stamp_line(None)
