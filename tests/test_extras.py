"""A setting whose library is not installed: one line naming the install command, exit 2."""

from __future__ import annotations

import subprocess
import sys

BLOCK = (
    "import sys\n"
    "sys.modules['{module}'] = None  # as if the extra were not installed\n"
    "from aiotcp.cli import main\n"
    "raise SystemExit(main(sys.argv[1:]))\n"
)


def run_without(module: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", BLOCK.format(module=module), *args],
        capture_output=True, text=True, timeout=60,
    )


def test_metrics_port_without_aiohttp_exits_2_naming_the_extra() -> None:
    r = run_without("aiohttp", "serve", "--port", "0", "--metrics-port", "9")
    assert r.returncode == 2, r.stderr
    assert "pip install 'aiotcp[metrics]'" in r.stderr
    assert "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_metrics_port_without_prometheus_client_exits_2() -> None:
    r = run_without("prometheus_client", "serve", "--port", "0", "--metrics-port", "9")
    assert r.returncode == 2 and "aiotcp[metrics]" in r.stderr and "Traceback" not in r.stderr
