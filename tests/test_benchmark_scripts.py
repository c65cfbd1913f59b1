"""Every script in benchmarks/ runs: ``--help``, a bad flag, and its ``--smoke`` workload.

One row per script in SCRIPTS (a new script without a row fails
``test_every_script_has_a_row``; files that are not scripts are named, with the reason, in
``aiotcp.bench.scripts.NOT_SCRIPTS``). The smoke runs are started side by side before the
first test (they mostly wait: on servers starting, on sleeps, on loopback), each test then
waits for its own: the file takes about as long as the slowest script, not the sum.

To add a script: give it ``aiotcp.bench.scripts.parser``/``parse``/``write_result`` (see
benchmarks/README.md) and add a row ``"name.py": Smoke(keys=(top-level result keys,))``,
with ``needs=("redis",)`` if its smoke run needs that service (its URL is passed with the
flag in SERVICE_FLAGS; add a flag there for another service).
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from aiotcp.bench.figures import FIGURES, block
from aiotcp.bench.scripts import NOT_SCRIPTS, script_names
from support.process import child_env, selected_params
from support.services import service_url

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
#: A smoke run finishes in seconds; this only guards against a hang (a loaded machine).
SMOKE_HANG_GUARD = 180.0
#: What every result file's stamp holds (aiotcp.bench.stamp).
STAMP_KEYS = {"command", "date", "seconds", "commit", "machine", "other_cpu_pct"}
MACHINE_KEYS = {"cpu", "cores", "kernel", "python", "uvloop", "openssl", "aiotcp_core"}


@dataclass(frozen=True)
class Smoke:
    """How a script's smoke run is checked: the top-level keys of its result file, the
    services it needs (their URLs are passed as flags), extra flags."""

    keys: tuple[str, ...]
    needs: tuple[str, ...] = ()
    args: tuple[str, ...] = ()


SCRIPTS: dict[str, Smoke] = {
    "emfile_stall.py": Smoke(keys=("settings", "servers")),
    "fanout.py": Smoke(keys=("subscribers", "modes"), needs=("redis",)),
    "gateway.py": Smoke(keys=("loads", "kinds")),
    "ingest.py": Smoke(keys=("connections", "stores")),
    "instructions.py": Smoke(keys=("settings", "instructions_per_read")),
    "pipeline_flood.py": Smoke(keys=("flood", "concurrency_16")),
    "partition.py": Smoke(keys=("settings", "runs")),  # root: Redis in a namespace
    "resp.py": Smoke(keys=("medians", "ratio_aiotcp_to_redis")),
    "tls_memory.py": Smoke(keys=("settings", "memory", "throughput")),
}
#: The flag each service's URL is given with.
SERVICE_FLAGS = {"redis": "--broker"}


def run_script(name: str, *args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(BENCHMARKS / name), *args], capture_output=True, text=True,
        env=child_env(), timeout=timeout, check=False,
    )  # fmt: skip


@dataclass
class Started:
    """A smoke run in progress (or why it could not start) and where it writes."""

    out: Path
    proc: subprocess.Popen[str] | None = None
    not_started: str = ""


def start_smoke(name: str, directory: Path) -> Started:
    out = directory / name.replace(".py", ".json")  # the name its README figure reads
    flags = [*SCRIPTS[name].args]
    for service in SCRIPTS[name].needs:
        try:
            flags += [SERVICE_FLAGS[service], service_url(service)]
        except pytest.fail.Exception as e:  # the test fails with how to start it
            return Started(out, not_started=str(e))
    proc = subprocess.Popen(
        [sys.executable, str(BENCHMARKS / name), "--smoke", "--out", str(out), *flags],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=child_env(),
        cwd=directory,
    )  # fmt: skip
    return Started(out, proc)


@pytest.fixture(scope="module", autouse=True)  # started first: the other tests run meanwhile
def smoke_runs(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Started]]:
    """The smoke runs of every script selected in this session, started side by side."""
    selected = selected_params(request, "test_smoke", "script")
    runs = {name: start_smoke(name, tmp_path_factory.mktemp("smoke")) for name in selected}
    yield runs
    for run in runs.values():
        if run.proc is not None and run.proc.poll() is None:
            run.proc.kill()
            run.proc.communicate()


def test_every_script_has_a_row() -> None:
    on_disk = {p.name for p in BENCHMARKS.glob("*.py")}
    assert set(SCRIPTS) == on_disk - set(NOT_SCRIPTS)
    assert set(NOT_SCRIPTS) <= on_disk  # an exclusion for a file that is gone is stale
    assert script_names() == sorted(SCRIPTS)  # what `make figures` runs


@pytest.mark.parametrize("script", sorted(SCRIPTS))
def test_help_and_bad_flag(script: str) -> None:
    """``--help`` prints the options and exits 0; a bad flag is one line and exit 2."""
    shown = run_script(script, "--help")
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.startswith(f"usage: {script}") and "--smoke" in shown.stdout
    assert "--out" in shown.stdout
    bad = run_script(script, "--no-such-flag")
    assert bad.returncode == 2
    assert bad.stdout == ""
    assert bad.stderr.count("\n") == 1, bad.stderr
    assert bad.stderr.startswith(f"{script}: error: unrecognized arguments: --no-such-flag")


@pytest.mark.timeout(SMOKE_HANG_GUARD + 30)
@pytest.mark.parametrize("script", sorted(SCRIPTS))
def test_smoke(script: str, smoke_runs: dict[str, Started]) -> None:
    """The tiny workload finishes (exit 0) and writes a well-formed, stamped result."""
    run = smoke_runs[script]
    if run.proc is None:
        pytest.fail(run.not_started, pytrace=False)
    try:
        output, _ = run.proc.communicate(timeout=SMOKE_HANG_GUARD)
    except subprocess.TimeoutExpired:
        run.proc.kill()
        output, _ = run.proc.communicate()
        pytest.fail(f"{script} --smoke hung; its output:\n{output[-3000:]}", pytrace=False)
    assert run.proc.returncode == 0, output[-3000:]
    result = json.loads(run.out.read_text())
    assert set(SCRIPTS[script].keys) <= set(result), sorted(result)
    stamp = result["stamp"]
    assert set(stamp) == STAMP_KEYS
    assert set(stamp["machine"]) == MACHINE_KEYS
    assert stamp["machine"]["cores"] >= 1 and stamp["machine"]["python"]
    assert stamp["machine"]["aiotcp_core"] in ("compiled", "pure")
    assert len(stamp["commit"]["sha"]) == 40, stamp["commit"]
    assert isinstance(stamp["commit"]["dirty"], bool)
    assert stamp["other_cpu_pct"] >= 0
    # Its README figures render from what it wrote (a format change breaks them here).
    for name, figure in FIGURES.items():
        if figure.source == run.out.name:
            body = block(name, run.out.parent)
            assert body.rstrip().splitlines()[-1].startswith("*Stamp: commit "), body
