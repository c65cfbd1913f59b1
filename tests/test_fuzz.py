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
from pathlib import Path

import pytest

from support.process import child_env

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
#: Start-up (instrumenting aiotcp) plus SECONDS; only guards against a hang.
HANG_GUARD = 45.0


def test_every_harness_has_a_row() -> None:
    assert sorted(HARNESSES) == harnesses()
    for name, module in HARNESSES.items():
        assert any((CORPUS / name).iterdir()), f"fuzz/corpus/{name}/ has no seeds"
        text = (ROOT / "fuzz" / f"{name}.py").read_text()
        assert module.rsplit(".", 1)[0] in text, f"fuzz/{name}.py does not import {module}"


def _run(name: str, *flags: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fuzz.runner", name, *flags], check=False, cwd=ROOT,
        env=child_env(),
        capture_output=True, text=True, timeout=HANG_GUARD,
    )


@pytest.mark.parametrize("name", sorted(HARNESSES))
def test_the_harness_passes_its_seeds_and_a_short_fuzz(name: str) -> None:
    seeds = _run(name, "--seeds")
    assert seeds.returncode == 0, seeds.stdout + seeds.stderr
    started = time.time()
    run = _run(name, f"-max_total_time={SECONDS}")
    if run.returncode != 0:
        crashes = [p for p in (WORK / "crashes").glob(f"{name}-*")
                   if p.stat().st_mtime >= started - 1]
        found = "\n".join(f"{p} ({p.stat().st_size} bytes): {p.read_bytes()[:1000]!r}"
                          for p in crashes)
        pytest.fail(f"fuzz {name} crashed (exit {run.returncode}); input:\n{found}\n"
                    + "\n".join((run.stdout + run.stderr).splitlines()[-60:]))
    assert "\tDONE " in run.stderr, run.stderr[-2000:]
