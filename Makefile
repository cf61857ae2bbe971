# `make test` sets up everything on a fresh machine, then runs the suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: test test-slow lint demo bench docs clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# Reinstall only when the package metadata changes. torch is pinned here (a CPU wheel lies on
# this machine's disk); pyproject keeps an open range for users.
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e ".[dev]"
	touch $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest -q

test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -m slow

lint: $(STAMP)
	$(BIN)/ruff check src tests scripts examples

bench: $(STAMP)
	$(BIN)/pip install -q -e ".[dev,bench]"
	$(BIN)/python scripts/benchmark_tokeniser.py
	$(BIN)/python scripts/benchmark_tokeniser_quality.py
	$(BIN)/python scripts/benchmark_data.py
	$(BIN)/python scripts/benchmark_training.py

# The manual in docs/ as a site in site/; API pages come from the docstrings. Any warning fails the build.
# NO_MKDOCS_2_WARNING silences mkdocs-material's banner about its own end of life, which is no build warning.
docs: $(STAMP)
	$(BIN)/pip install -q -e ".[docs]"
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

demo: $(STAMP)
	$(BIN)/physfm experiment --preset tiny --out runs/tiny

clean:
	rm -rf $(VENV) build site src/*.egg-info .pytest_cache
