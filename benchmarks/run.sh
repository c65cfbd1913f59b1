#!/usr/bin/env bash
# Reproduce benchmarks/results (and the README's Performance section) on this machine.
#
#   benchmarks/run.sh            full run: 13 servers x 5 workloads x 3 interleaved runs, ~15 min on 2 cores
#   benchmarks/run.sh --quick    the 6 rows that carry the article's claims, 3 short workloads, < 2 min
#
# Writes benchmarks/results/{report.md,report.html,results.json,*.png}. Extra arguments go to
# `aiotcp compare` (e.g. --servers c-epoll,uvloop_protocol,aiotcp-ack --workloads c100-f16-s64
# --runs 5). Set OUT=dir to write elsewhere.
set -euo pipefail
cd "$(dirname "$0")/.."
make .venv/.installed-bench >/dev/null   # the runtime plus the `bench` extra
exec .venv/bin/aiotcp compare --out "${OUT:-benchmarks/results}" "$@"
