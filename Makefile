# Two commands do all set-up on a fresh clone: `make serve` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP_RUN := $(VENV)/.installed-run
STAMP_BENCH := $(VENV)/.installed-bench
STAMP_DEV := $(VENV)/.installed-dev
STAMP_CORE := $(VENV)/.built-core
# What the whole suite needs: every extra, and the programs the tests start.
DEV_EXTRAS := metrics,bench,postgres,mysql,redis,reload,gateway,fuzz,dev
# The other supported Pythons: the suite runs on each with the compiled core (the
# default Python runs it on both cores). Each has its own venv, .venv-X.Y.
OTHER_PYTHONS := 3.12 3.13
OTHER_STAMPS := $(foreach v,$(OTHER_PYTHONS),$(VENV)-$(v)/.built-core)
# Python X.Y's interpreter: pyenv's newest X.Y, else pythonX.Y on PATH (not pyenv's
# shim, which runs only the versions pyenv has selected).
PYENV_ROOT ?= $(HOME)/.pyenv
python_for = $(firstword $(lastword $(sort $(wildcard $(PYENV_ROOT)/versions/$(1).*/bin/python$(1)))) \
  $(filter-out %/shims/python$(1),$(shell command -v python$(1))))
HOT_SOURCES := $(shell find src/aiotcp -name '*.py') setup.py

# The stamps of the other Pythons' venvs are kept (not intermediate files).
.SECONDARY:

.PHONY: serve test install dev compiler test-programs typecheck bench compare fuzz clean

$(BIN)/python: | compiler
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

# The compiled core needs a C compiler (Cython comes with the build).
compiler:
	@command -v cc >/dev/null || { echo "installing gcc (Debian package) for the compiled core"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq gcc >/dev/null; }

# The compiled core, rebuilt in place after an edit to a source (only changed modules
# compile again); without a compiler the pure core runs.
$(STAMP_CORE): $(HOT_SOURCES) $(STAMP_RUN)
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

# Another Python's venv: every extra, then its compiled core (extensions are built per
# Python ABI, side by side in src/aiotcp/_speedups).
$(VENV)-%/.installed-dev: pyproject.toml | compiler
	@py="$(call python_for,$*)"; test -n "$$py" || { \
	  echo "make test: Python $* is not installed (pyenv install $*), and the suite runs on it"; exit 1; }; \
	  test -x $(VENV)-$*/bin/python || $$py -m venv $(VENV)-$*
	$(VENV)-$*/bin/python -m pip install -q --upgrade pip
	$(VENV)-$*/bin/python -m pip install -q -e ".[$(DEV_EXTRAS)]" setuptools wheel "Cython>=3.0"
	touch $@

$(VENV)-%/.built-core: $(HOT_SOURCES) $(VENV)-%/.installed-dev
	$(VENV)-$*/bin/python setup.py -q build_ext --inplace -j 2
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

# The whole suite on both cores, compiled (the default) and pure (AIOTCP_NO_EXTENSIONS),
# then on every other supported Python with its compiled core.
test: $(STAMP_DEV) $(STAMP_CORE) $(OTHER_STAMPS) test-programs
	$(BIN)/python -m mypy
	AIOTCP_EXPECT_CORE=compiled $(BIN)/python -m pytest -q
	AIOTCP_EXPECT_CORE=pure AIOTCP_NO_EXTENSIONS=1 $(BIN)/python -m pytest -q
	@for v in $(OTHER_PYTHONS); do echo "== the suite on Python $$v, compiled core"; \
	  AIOTCP_EXPECT_CORE=compiled $(VENV)-$$v/bin/python -m pytest -q || exit 1; done

# Every fuzz harness (fuzz/*.py) for FUZZ_SECONDS each, one after another; the suite runs
# each for 3 s. Inputs found go to .fuzz-work/corpus/, a crash to .fuzz-work/crashes/.
FUZZ_SECONDS ?= 120
fuzz: $(STAMP_DEV) $(STAMP_CORE)
	@for h in $$($(BIN)/python -c 'from fuzz.runner import harnesses; print(*harnesses())'); do \
	  echo "== fuzz $$h for $(FUZZ_SECONDS) s"; \
	  $(BIN)/python -m fuzz.runner $$h -max_total_time=$(FUZZ_SECONDS) || exit 1; done

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
	rm -rf $(VENV) $(VENV)-* build *.egg-info src/*.egg-info compare-report src/aiotcp/_speedups/*.so .fuzz-work
