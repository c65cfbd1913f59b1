#!/usr/bin/env bash
# Reproduce the numbers in the README's Performance section on this machine.
#
#   benchmarks/run.sh            full run: 10 servers x 11 workloads, about 15 minutes on 2 cores
#   benchmarks/run.sh --quick    4 servers x 3 workloads, under 2 minutes
#
# Writes benchmarks/results/{report.md,report.html,results.json,*.png}. Extra arguments go to
# `aiotcp compare` (e.g. --servers uvloop_protocol,aiotcp --workloads c100-f16-s64).
set -euo pipefail
cd "$(dirname "$0")/.."
make install >/dev/null
exec .venv/bin/aiotcp compare --out benchmarks/results "$@"
