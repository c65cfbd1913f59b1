# Two commands do all set-up on a fresh clone: `make serve` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP_RUN := $(VENV)/.installed-run
STAMP_BENCH := $(VENV)/.installed-bench
STAMP_DEV := $(VENV)/.installed-dev
STAMP_CORE := $(VENV)/.built-core
# What the whole suite needs: every extra, and the programs the tests start.
DEV_EXTRAS := metrics,bench,postgres,mysql,redis,reload,gateway,dev

.PHONY: serve test install dev compiler test-programs typecheck bench compare clean

$(BIN)/python: | compiler
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

# The compiled core needs a C compiler (Cython comes with the build).
compiler:
	@command -v cc >/dev/null || { echo "installing gcc (Debian package) for the compiled core"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq gcc >/dev/null; }

# The compiled core, rebuilt in place after an edit to a source (only changed modules
# compile again); without a compiler the pure core runs.
$(STAMP_CORE): $(shell find src/aiotcp -name '*.py') setup.py $(STAMP_RUN)
	$(BIN)/python -m pip install -q setuptools wheel "Cython>=3.0"
	$(BIN)/python setup.py -q build_ext --inplace -j 2
	touch $@

# The server and its metrics endpoints only: no benchmark or test dependencies.
$(STAMP_RUN): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e ".[metrics]"
	touch $@

$(STAMP_BENCH): pyproject.toml $(STAMP_RUN)
	$(BIN)/python -m pip install -q -e ".[metrics,bench]"
	touch $@

$(STAMP_DEV): pyproject.toml $(STAMP_RUN)
	$(BIN)/python -m pip install -q -e ".[$(DEV_EXTRAS)]"
	touch $@

install: $(STAMP_RUN)

dev: $(STAMP_DEV) test-programs

# HAProxy (the PROXY protocol and scale-out tests run a real one), openssl, and
# systemd-socket-activate (the socket-activation test; in Debian's systemd package).
test-programs:
	@command -v haproxy >/dev/null && command -v openssl >/dev/null \
	  && command -v systemd-socket-activate >/dev/null || { \
	  echo "installing haproxy, openssl and systemd (Debian packages) for the test suite"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq haproxy openssl systemd >/dev/null; }

serve: $(STAMP_CORE)
	$(BIN)/aiotcp serve --host 127.0.0.1 --port 8888

# The whole suite on both cores: compiled (the default) and pure (AIOTCP_NO_EXTENSIONS).
test: $(STAMP_DEV) $(STAMP_CORE) test-programs
	$(BIN)/python -m mypy
	AIOTCP_EXPECT_CORE=compiled $(BIN)/python -m pytest -q
	AIOTCP_EXPECT_CORE=pure AIOTCP_NO_EXTENSIONS=1 $(BIN)/python -m pytest -q

bench: $(STAMP_BENCH)
	$(BIN)/aiotcp bench --port 8888

compare: $(STAMP_BENCH)
	$(BIN)/aiotcp compare --quick

# Every README figure, measured again (about an hour; a quiet machine) and the README's
# tables rewritten from the result files: see benchmarks/README.md.
.PHONY: figures
figures: $(STAMP_DEV) $(STAMP_CORE) test-programs
	benchmarks/run.sh --all

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info compare-report src/aiotcp/_speedups/*.so
