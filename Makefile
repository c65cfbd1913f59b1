# Two commands do all set-up on a fresh clone: `make serve` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP_RUN := $(VENV)/.installed-run
STAMP_DEV := $(VENV)/.installed-dev

.PHONY: serve test install dev typecheck lint bench compare clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(STAMP_RUN): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e ".[metrics,bench]"
	touch $@

$(STAMP_DEV): pyproject.toml $(STAMP_RUN)
	$(BIN)/python -m pip install -q -e ".[metrics,bench,dev]"
	touch $@

install: $(STAMP_RUN)

dev: $(STAMP_DEV)

serve: $(STAMP_RUN)
	$(BIN)/aiotcp serve --host 127.0.0.1 --port 8888

test: $(STAMP_DEV)
	$(BIN)/python -m mypy
	$(BIN)/python -m pytest -q

bench: $(STAMP_RUN)
	$(BIN)/aiotcp bench --port 8888

compare: $(STAMP_RUN)
	$(BIN)/aiotcp compare --quick

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info compare-report
