#!/usr/bin/env bash
# Reproduce benchmarks/results (and the README's Performance section) on this machine.
#
#   benchmarks/run.sh            full compare run: 13 servers x 5 workloads x 3 interleaved runs,
#                                plus the payload ladder, ~20 min on 2 cores
#   benchmarks/run.sh --quick    the 6 rows that carry the article's claims, short workloads, ~2 min
#   benchmarks/run.sh --all      every README figure (= make figures): the full compare run, then
#                                every script in benchmarks/ on its full workload (each writes
#                                benchmarks/results/<script>.json), then the README's tables are
#                                rewritten from the result files (python -m aiotcp.bench.figures).
#                                About an hour; needs the test services (PostgreSQL, MariaDB,
#                                Redis) and valgrind. Run it on a quiet machine.
#
# Writes benchmarks/results/{report.md,report.html,results.json,*.png}. Extra arguments go to
# `aiotcp compare` (e.g. --servers c-epoll,uvloop_protocol,aiotcp-ack --workloads c100-f16-s64
# --runs 5). Set OUT=dir to write the compare report elsewhere (not with --all).
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ "${1:-}" != "--all" ]]; then
    make .venv/.installed-bench >/dev/null   # the runtime plus the `bench` extra
    exec .venv/bin/aiotcp compare --out "${OUT:-benchmarks/results}" "$@"
fi
shift
make .venv/.installed-dev >/dev/null   # every extra: the scripts need stores, brokers, gRPC
failed=()
echo "== aiotcp compare --out benchmarks/results $*" >&2
.venv/bin/aiotcp compare --out benchmarks/results "$@" || failed+=("aiotcp compare")
for script in $(.venv/bin/python -m aiotcp.bench.scripts); do
    echo "== $script" >&2
    .venv/bin/python "$script" || failed+=("$script")
done
.venv/bin/python -m aiotcp.bench.figures
if (( ${#failed[@]} )); then
    echo "run.sh --all: failed: ${failed[*]} (their README figures keep the previous results)" >&2
    exit 1
fi
