"""The README's figures are what the renderer makes from the committed result files."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from aiotcp.bench import figures
from aiotcp.bench.figures import FIGURES, FigureError, render

README = Path(__file__).resolve().parents[1] / "README.md"


def test_the_readme_figures_are_made_from_the_result_files() -> None:
    text = README.read_text()
    assert render(text) == text, (
        "a README figure differs from what benchmarks/results makes: run "
        "`python -m aiotcp.bench.figures` (never edit inside the figures: markers)"
    )


def test_every_figure_has_one_block_in_the_readme() -> None:
    names = re.findall(r"<!-- figures:([\w-]+) -->", README.read_text())
    assert sorted(names) == sorted(FIGURES)


def test_a_hand_edit_inside_a_block_is_caught(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                              ) -> None:
    text = README.read_text()
    start = text.index("<!-- figures:tls -->")
    edited = text[:start] + text[start:].replace(" msg/s |", " msg/s (typed) |", 1)
    assert edited != text and render(edited) == text  # the renderer puts the truth back
    copy = tmp_path / "README.md"
    copy.write_text(edited)
    assert figures.main(["--check", "--readme", str(copy)]) == 1
    assert capsys.readouterr().err.count("\n") == 1
    assert copy.read_text() == edited  # --check changes nothing
    assert figures.main(["--readme", str(copy)]) == 0 and copy.read_text() == text


def test_each_table_carries_the_stamp_of_its_result_file(tmp_path: Path) -> None:
    results = tmp_path / "results"
    results.mkdir()
    data = json.loads((figures.RESULTS / "tls_memory.json").read_text())
    data["stamp"] = {
        "command": "x", "date": "2026-12-31T00:00:00Z", "seconds": 1.0,
        "commit": {"sha": "0123456789abcdef" * 2 + "01234567", "dirty": True},
        "machine": {"cpu": "Some CPU", "cores": 2, "kernel": "6.1", "python": "3.11.7",
                    "uvloop": "0.19.0", "openssl": "OpenSSL 3.0.1", "aiotcp_core": "compiled"},
        "other_cpu_pct": 12.4,
    }  # fmt: skip
    (results / "tls_memory.json").write_text(json.dumps(data))
    body = figures.block("tls", results)
    assert body.rstrip().splitlines()[-1] == (
        "*Stamp: commit 0123456789 (dirty), 2026-12-31; Some CPU, 2 cores, Linux 6.1, "
        "Python 3.11.7, uvloop 0.19.0, OpenSSL 3.0.1, compiled core; other processes took "
        "12% of a core during the run.*"
    )
    assert figures.block("fanout", results).startswith("Not measured yet:")


@pytest.mark.parametrize("text", [
    "<!-- figures:tls -->\nx\n",  # never closed
    "<!-- figures:nosuch -->\nx\n<!-- /figures:nosuch -->\n",  # no such figure
])  # fmt: skip
def test_bad_markers_are_refused(text: str) -> None:
    with pytest.raises(FigureError):
        render(text)
