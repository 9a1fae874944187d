# Thin verbs over the pipeline. Everything runs inside .venv (made by `setup`).
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
export DVC_NO_ANALYTICS := 1
SRC ?= /usr/share/doc

.PHONY: setup demo test test-all repro lint bench harvest schemas clean-outputs

# Create .venv with every pinned dependency (torch pinned to the local CPU wheel).
setup: $(VENV)/.installed
$(VENV)/.installed: pyproject.toml constraints.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e '.[model,test]'
	touch $@

# The main job: the whole pipeline on the committed snapshot and the real base model.
demo: setup
	dvc repro
	@dvc metrics show 2>/dev/null || true

# The test suite (what .ci/run calls); slow real-model tests are excluded.
test: setup
	$(PY) -m pytest -m "not slow and not gpu"

# Everything, including the slow real-model tests.
test-all: setup
	$(PY) -m pytest -m "not gpu"

# Rebuild only what changed.
repro: setup
	dvc repro

# Style and schema drift.
lint: setup
	$(PY) -m ruff check src stages tests
	$(PY) -m tuneforge.schema_gen --check

# Regenerate schemas/ from the pydantic models.
schemas: setup
	$(PY) -m tuneforge.schema_gen

# Benchmarks: ratios against baselines measured in the same run.
bench: setup
	$(PY) -m tuneforge.bench

# Refresh the committed release-note snapshot from SRC (default /usr/share/doc).
harvest: setup
	$(PY) -m tuneforge.harvest --src $(SRC) --out data/snapshot/release-notes.tar.gz
