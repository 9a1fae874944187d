# Thin verbs over the pipeline. Everything runs inside .venv (made by `setup`).
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
export DVC_NO_ANALYTICS := 1
SRC ?= /usr/share/doc

# The embedded default remote: a directory beside the repo, shared by clones on this machine.
REMOTE_DIR ?= ../tuneforge-dvc-remote
VERSION ?=

.PHONY: setup demo test test-all repro lint bench harvest schemas remote-local remote-s3 push pull release tags verify-repro faults

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
	@sed -n '1,/^## Hint ablation/p' reports/eval/report.md

# The test suite (what .ci/run calls); slow real-model tests are excluded.
test: setup
	$(PY) -m pytest -m "not slow and not gpu"

# Everything, including the slow real-model tests.
test-all: setup
	$(PY) -m pytest -m "not gpu"

# Rebuild only what changed.
repro: setup
	dvc repro

# Build HEAD from scratch in a clean clone; every artifact's hash must equal the committed dvc.lock (~15 min).
verify-repro: setup
	$(PY) -m tuneforge.verify_repro

# Style and schema drift.
lint: setup
	$(PY) -m ruff check src stages tests
	$(PY) -m tuneforge.schema_gen --check

# Regenerate schemas/ from the pydantic models.
schemas: setup
	$(PY) -m tuneforge.schema_gen

# Benchmarks: each figure beside a baseline measured in the same run -> reports/bench.json and
# the README table (~45 min on 2 cores: a clean build, 1M resampled entries, 2x20 train steps).
# Needs a committed, built tree. One section: make bench ONLY=decode
ONLY ?= sha256,decode,train,data,build
bench: setup
	$(PY) -m tuneforge.bench --only $(ONLY)

# Faults suite (issue #7): 500+ bad inputs, planted secrets, seeded kill -9 points, leakage,
# gates and pins, a corrupted remote object; in scratch dirs -> reports/faults.json (~15 min).
faults: setup
	$(PY) -m tuneforge.faults

# Point the default DVC remote at a local directory (tracked in .dvc/config; the default).
remote-local: setup
	dvc remote add --force --default local $(REMOTE_DIR)
	dvc remote modify local verify true   # re-hash on pull: a corrupt remote object fails, never checked out
	@echo "default remote: local -> $(abspath $(REMOTE_DIR))"

# Use S3 instead (dvc-s3), for this clone only: make remote-s3 BUCKET=s3://bucket/path [ENDPOINT=url].
# Credentials come from the environment (AWS_ACCESS_KEY_ID/...) and are never written to a file.
remote-s3: setup
	test -n "$(BUCKET)" || { echo "usage: make remote-s3 BUCKET=s3://bucket/path [ENDPOINT=url]"; exit 2; }
	dvc remote add --local --force --default s3 $(BUCKET)
	dvc remote modify --local s3 verify true
	if [ -n "$(ENDPOINT)" ]; then dvc remote modify --local s3 endpointurl $(ENDPOINT); fi

# Send / fetch every cached artifact to / from the default remote.
push: setup
	dvc push
pull: setup
	dvc pull

# Tag the current commit as a version and record it in RELEASES (tags don't travel with every clone).
release:
	test -n "$(VERSION)" || { echo "usage: make release VERSION=v1"; exit 2; }
	git diff --quiet HEAD || { echo "commit first: the release must name a clean commit"; exit 2; }
	git tag -a $(VERSION) -m "tuneforge $(VERSION)"
	echo "$(VERSION) $$(git rev-parse HEAD)" >> RELEASES
	git add RELEASES && git commit -q -m "RELEASES: $(VERSION) is $$(git rev-parse --short HEAD)"

# Recreate any tag listed in RELEASES that this clone lacks.
tags:
	@while read -r version commit; do \
	  [ -z "$$version" ] && continue; \
	  git rev-parse -q --verify "refs/tags/$$version" >/dev/null || { git tag "$$version" "$$commit" && echo "tagged $$version $$commit"; }; \
	done < RELEASES

# Refresh the committed release-note snapshot from SRC (default /usr/share/doc).
harvest: setup
	$(PY) -m tuneforge.harvest --src $(SRC) --out data/snapshot/release-notes.tar.gz
