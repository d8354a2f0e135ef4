# Two commands do everything on a fresh machine:
#   make repro   build .venv and run the whole DVC pipeline on the default data
#   make test    build .venv, type-check src/ (mypy), build the docs strictly and run the test suite
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# Stage commands in dvc.yaml call `python`: put the project's interpreter first.
export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: install repro test test-all typecheck docs lint bench clean

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

test: install typecheck docs
	python -m pytest -m "not slow"

test-all: install typecheck docs
	python -m pytest

# mypy over the library, as [tool.mypy] in pyproject.toml configures it.
typecheck: install
	python -m mypy

# The documentation site (mkdocs.yml, docs/), into site/: --strict makes a broken link,
# a page left out of the navigation or a docstring mkdocstrings cannot read an error.
# The build reads nothing from the network. Material's notice about MkDocs 2 is noise here.
docs: install
	NO_MKDOCS_2_WARNING=1 mkdocs build --strict

lint: install
	ruff check src stages tests benchmarks

bench: install
	python benchmarks/bench_data.py

clean:
	rm -rf $(VENV) site
