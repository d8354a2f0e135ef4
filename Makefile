# Two commands do everything on a fresh machine:
#   make repro   build .venv and run the whole DVC pipeline on the default data
#   make test    build .venv, type-check src/ (mypy) and run the test suite
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# Stage commands in dvc.yaml call `python`: put the project's interpreter first.
export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: install repro test test-all typecheck lint bench clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet "$$(grep '^pip==' constraints.txt || echo pip)"
	# torch first, exactly as pinned: any other spec pulls several GB of CUDA packages.
	$(BIN)/python -m pip install --quiet "$$(grep '^torch==' constraints.txt)"
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

repro: install
	dvc repro

test: install typecheck
	python -m pytest -m "not slow"

test-all: install typecheck
	python -m pytest

# mypy over the library, as [tool.mypy] in pyproject.toml configures it.
typecheck: install
	python -m mypy

lint: install
	ruff check src stages tests benchmarks

bench: install
	python benchmarks/bench_data.py

clean:
	rm -rf $(VENV)
