# Two commands do all set-up on a fresh clone: `make serve` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP_RUN := $(VENV)/.installed-run
STAMP_BENCH := $(VENV)/.installed-bench
STAMP_DEV := $(VENV)/.installed-dev
# What the whole suite needs: every extra, and the programs the tests start.
DEV_EXTRAS := metrics,bench,postgres,mysql,redis,gateway,dev

.PHONY: serve test install dev test-programs typecheck bench compare clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

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

# HAProxy (the PROXY protocol and scale-out tests run a real one) and openssl.
test-programs:
	@command -v haproxy >/dev/null && command -v openssl >/dev/null || { \
	  echo "installing haproxy and openssl (Debian packages) for the test suite"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq haproxy openssl >/dev/null; }

serve: $(STAMP_RUN)
	$(BIN)/aiotcp serve --host 127.0.0.1 --port 8888

test: $(STAMP_DEV) test-programs
	$(BIN)/python -m mypy
	$(BIN)/python -m pytest -q

bench: $(STAMP_BENCH)
	$(BIN)/aiotcp bench --port 8888

compare: $(STAMP_BENCH)
	$(BIN)/aiotcp compare --quick

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info compare-report
