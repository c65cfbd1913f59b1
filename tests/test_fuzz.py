"""Every fuzz harness (fuzz/*.py) passes its seeds and a few seconds of atheris.

One row per harness in HARNESSES, naming the parser it fuzzes; a harness without its row
(or a row without its harness, or a harness without seeds) fails
``test_every_harness_has_a_row``. A crash prints its input and where atheris saved it
(``.fuzz-work/crashes/``); ``make fuzz`` runs each harness long.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from support.process import child_env, selected_params

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from fuzz.runner import CORPUS, WORK, harnesses

# harness -> the module of the parser it fuzzes
HARNESSES = {
    "line": "aiotcp.codecs.line",
    "length": "aiotcp.codecs.length",
    "varint": "aiotcp.codecs.length",
    "proxy": "aiotcp.frontdoor.proxyproto",
    "tls": "aiotcp.frontdoor.tlsengine",
    "pubsub": "aiotcp.apps.pubsub",
    "kv": "aiotcp.apps.kv",
    "resp": "aiotcp.resp.codec",
}
#: Seconds of coverage-guided fuzzing per harness in the suite (make fuzz: FUZZ_SECONDS).
SECONDS = 3
#: Start-up (instrumenting aiotcp, every harness at once on a loaded machine) plus
#: SECONDS; only guards against a hang.
HANG_GUARD = 120.0


def test_every_harness_has_a_row() -> None:
    assert sorted(HARNESSES) == harnesses()
    for name, module in HARNESSES.items():
        assert any((CORPUS / name).iterdir()), f"fuzz/corpus/{name}/ has no seeds"
        text = (ROOT / "fuzz" / f"{name}.py").read_text()
        assert module.rsplit(".", 1)[0] in text, f"fuzz/{name}.py does not import {module}"


def _start(name: str, *flags: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "fuzz.runner", name, *flags], cwd=ROOT, env=child_env(),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


@dataclass
class Started:
    """One harness's runs, started side by side with the others' before the first test:
    the file takes about as long as the slowest harness, not the sum."""

    started: float
    seeds: subprocess.Popen[str]
    fuzz: subprocess.Popen[str]


@pytest.fixture(scope="module")
def runs(request: pytest.FixtureRequest) -> Iterator[dict[str, Started]]:
    selected = selected_params(request, "test_the_harness_passes_its_seeds_and_a_short_fuzz", "name")
    out = {name: Started(time.time(), _start(name, "--seeds"),
                         _start(name, f"-max_total_time={SECONDS}")) for name in selected}
    yield out
    for run in out.values():
        for proc in (run.seeds, run.fuzz):
            if proc.poll() is None:
                proc.kill()
                proc.communicate()


def _finish(proc: subprocess.Popen[str]) -> tuple[int, str, str]:
    try:
        out, err = proc.communicate(timeout=HANG_GUARD)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        pytest.fail(f"a fuzz run hung; its output:\n{(out + err)[-3000:]}", pytrace=False)
    return proc.returncode, out, err


@pytest.mark.parametrize("name", sorted(HARNESSES))
def test_the_harness_passes_its_seeds_and_a_short_fuzz(name: str, runs: dict[str, Started]) -> None:
    run = runs[name]
    code, out, err = _finish(run.seeds)
    assert code == 0, out + err
    code, out, err = _finish(run.fuzz)
    if code != 0:
        crashes = [p for p in (WORK / "crashes").glob(f"{name}-*")
                   if p.stat().st_mtime >= run.started - 1]
        found = "\n".join(f"{p} ({p.stat().st_size} bytes): {p.read_bytes()[:1000]!r}"
                          for p in crashes)
        pytest.fail(f"fuzz {name} crashed (exit {code}); input:\n{found}\n"
                    + "\n".join((out + err).splitlines()[-60:]))
    assert "\tDONE " in err, err[-2000:]
