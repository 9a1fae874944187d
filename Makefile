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

.PHONY: setup lock setup-gpu gpu-check gpu-bundle demo test test-all repro lint bench harvest harvest-patches schemas remote-local remote-s3 push pull release release-model tags verify-repro faults mutate install-hook serve review imatrix-sweep

# Create .venv from requirements.lock: every package of the [model,test] extras pinned with
# its hashes (torch is the local CPU wheel, 2.13.0+cpu; llama-cpp-python builds from its
# sdist, ~10 min on 2 cores). The project itself goes in editable, without deps, after; then
# llama.cpp's llama-imatrix and llama-quantize, compiled once from the same pinned sdist into
# .cache/llama-tools (~8 min on 2 cores; quantize's `-imat` entries run them).
# Also the release tags RELEASES lists (`dvc metrics diff v20 v21` needs them; a fresh work tree
# or clone may have none).
setup: $(VENV)/.installed tags
$(VENV)/.installed: requirements.lock pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --require-hashes -r requirements.lock
	$(PY) -m pip install -q --no-deps --no-build-isolation -e .
	$(PY) -m tuneforge.llama_tools
	touch $@

# Rewrite requirements.lock and requirements-gpu.lock from pyproject.toml (after changing a
# pin; then set params.yaml's toolchain to match: tests/test_lock.py checks all three).
# uv pip compile, pinned in its own venv under .cache. The GPU lock takes the CPU lock's
# versions for every shared package and PyPI's CUDA torch build instead of the local CPU one.
LOCK_TOOL := .cache/lock-tool
LOCK_FLAGS := --generate-hashes --no-config --python-version 3.11 --python-platform x86_64-manylinux_2_28 \
	--custom-compile-command "make lock" --quiet
lock:
	test -x $(LOCK_TOOL)/bin/uv || { python3 -m venv $(LOCK_TOOL) && $(LOCK_TOOL)/bin/pip install -q uv==0.13.9; }
	echo "pip==26.3" | $(LOCK_TOOL)/bin/uv pip compile - pyproject.toml --extra model --extra test \
	  --find-links /opt/wheels $(LOCK_FLAGS) -o requirements.lock
	sed -n 's/^\([A-Za-z0-9._-]*==[^ ;]*\).*/\1/p' requirements.lock | grep -v '^torch==' > $(LOCK_TOOL)/cpu-pins.txt
	echo "pip==26.3" | $(LOCK_TOOL)/bin/uv pip compile - pyproject.toml --extra model --extra test --extra gpu \
	  -c $(LOCK_TOOL)/cpu-pins.txt $(LOCK_FLAGS) -o requirements-gpu.lock

# CUDA machines: .venv-gpu from requirements-gpu.lock (CUDA 13 torch from PyPI, bitsandbytes,
# llama-cpp-python built with GGML_CUDA, which needs nvcc). PIP_CONFIG_FILE=/dev/null drops
# this machine's pip config, whose local wheel dir would offer the CPU torch; --no-cache-dir
# keeps pip from reusing a CPU build of llama-cpp-python from its wheel cache.
GPU_VENV := .venv-gpu
setup-gpu: $(GPU_VENV)/.installed
$(GPU_VENV)/.installed: requirements-gpu.lock pyproject.toml
	test -x $(GPU_VENV)/bin/python || python3 -m venv $(GPU_VENV)
	PIP_CONFIG_FILE=/dev/null CMAKE_ARGS="-DGGML_CUDA=on -DCMAKE_CUDA_ARCHITECTURES=native" \
	  $(GPU_VENV)/bin/python -m pip install -q --no-cache-dir --require-hashes -r requirements-gpu.lock
	$(GPU_VENV)/bin/python -m pip install -q --no-deps --no-build-isolation -e .
	touch $@

# The CUDA path (tests/test_gpu.py: QLoRA steps on the tiny model, bf16 LoRA, merge of a
# QLoRA adapter checked against a bf16 reference, llama.cpp GPU offload), under 8 minutes
# once .venv-gpu exists. Without an NVIDIA GPU it fails at once, with one line; a skipped test
# (no CUDA in torch, no bitsandbytes, base wheel unreachable) fails it too.
gpu-check:
	@nvidia-smi -L 2>/dev/null | grep -q '^GPU ' || { echo "make gpu-check: no CUDA GPU here (nvidia-smi lists none); run it on a machine with an NVIDIA GPU and driver >= 580" >&2; exit 1; }
	$(MAKE) setup-gpu
	mkdir -p .cache
	set -o pipefail; TUNEFORGE_REQUIRE_GPU=1 timeout 480 $(GPU_VENV)/bin/python -m pytest -m gpu tests/test_gpu.py \
	  -q -rs -p no:cacheprovider | tee .cache/gpu-check.log
	@! grep -q "skipped" .cache/gpu-check.log || { echo "make gpu-check: a GPU test skipped (.cache/gpu-check.log)" >&2; exit 1; }

# gpu-check's tests on a CUDA machine that has a CUDA torch but no package registry (this
# workplace's lent GPU machine): gpu-bundle packs the rest into .cache/gpu-bundle (~52 MiB:
# the pinned packages such an image lacks, bitsandbytes' CUDA 13 library, llama.cpp's sources
# to build with CUDA there, the base tokenizer); carry it and run there, from the repo root,
# `bash .cache/gpu-bundle/run.sh` (tools/gpu_check_device.sh). PY_IMAGE: that image's Python.
gpu-bundle: setup
	$(PY) -m tools.gpu_bundle --python $(or $(PY_IMAGE),3.12)

# The main job: the whole pipeline on the committed snapshots and the real base model; then
# each task's eval report (reports/<task>/eval/report.md, tuneforge.names) up to its hint ablation.
demo: setup
	@$(PY) -c 'from tuneforge import config; p = config.load(); \
	  print("make demo: dvc repro builds the shared base model, then for each task in params.yaml (" \
	        + ", ".join(p.tasks) + ") its data stages, LoRA fine-tune, GGUFs (" + ", ".join(p.quantize.types) \
	        + "), eval and registry; then prints each task'"'"'s model table.")'
	$(PY) -m tuneforge.recover
	dvc repro
	@for report in $$($(PY) -c 'from tuneforge import config, names; \
	  print(*(names.TaskPaths(t).eval_dir / "report.md" for t in config.load().tasks))'); do \
	  echo "== $$report"; sed -n '/^## Models/,/^Promoted:/p' "$$report"; done

# The test suite (what .ci/run calls); slow real-model tests are excluded. Two xdist workers,
# one per core; tests/conftest.py groups each module's tests on one worker.
test: setup
	$(PY) -m pytest -m "not slow and not gpu" -n 2 --dist loadgroup --no-loadscope-reorder

# Everything, including the slow real-model tests.
test-all: setup
	$(PY) -m pytest -m "not gpu"

# Rebuild only what changed.
# tuneforge.recover first: a killed dvc repro can leave DVC's rwlock or dvc.lock half-written
repro: setup
	$(PY) -m tuneforge.recover
	dvc repro

# Build HEAD from scratch in a clean clone; every artifact's hash must equal the committed dvc.lock (~15 min).
verify-repro: setup
	$(PY) -m tools.verify_repro

# Style and schema drift.
lint: setup
	$(PY) -m ruff check src stages tests tools
	$(PY) -m tuneforge.schema_gen --check

# Regenerate schemas/ from the pydantic models.
schemas: setup
	$(PY) -m tuneforge.schema_gen

# Benchmarks: each figure beside a baseline measured in the same run -> reports/bench.json and
# the README table (hours on 2 cores: a clean build of every task, 1M resampled entries, 2x20 train
# steps, two cold evals).
# Needs a committed, built tree. One section: make bench ONLY=decode. The per-task sections
# (all but build and fidelity) measure TASK (default changelog-actions): make bench ONLY=serve TASK=commit-messages
BENCH_SECTIONS := sha256,decode,serve,train,data,fidelity,build
ONLY ?= $(BENCH_SECTIONS)
bench: setup
	@for s in $$(echo "$(ONLY)" | tr , ' '); do case ",$(BENCH_SECTIONS)," in *,$$s,*) ;; \
	  *) echo "make bench: ONLY=$(ONLY): no section '$$s'; use a comma list of $(BENCH_SECTIONS)" >&2; exit 2;; esac; done
	$(PY) -m tools.bench --only $(ONLY) --task $(or $(TASK),changelog-actions)

# Every quantisation type with and without the importance matrix, on the built merged model:
# quantize and eval (with its fidelity checks) in a scratch root -> reports/<task>/by-hand/imatrix-<RUN>-{fidelity.json,ladder.csv}
# (the README's imatrix table). Needs a built tree; minutes per new GGUF. make imatrix-sweep RUN=s18
imatrix-sweep: setup
	$(PY) -m tools.imatrix_sweep --run $(or $(RUN),$(error make imatrix-sweep needs RUN=<name>)) $(if $(TASK),--task $(TASK)) $(if $(ROWS),--fidelity-rows $(ROWS))

# Faults suite (issue #7): 500+ bad inputs, planted secrets, seeded kill -9 points, leakage,
# gates and pins, a corrupted remote object; in scratch dirs -> reports/faults.json (~15 min).
faults: setup
	$(PY) -m tools.faults

# Mutation testing (mutmut, one worker; not in CI) of io, redact, text, receipts, metrics, sources
# with the test files named in setup.cfg -> reports/mutation.json; fails under a 0.8 score.
mutate: setup
	$(PY) tools/mutate.py

# Point the default DVC remote at a local directory (tracked in .dvc/config; the default).
remote-local: setup
	dvc remote add --force --default local $(REMOTE_DIR)
	dvc remote modify local verify true   # re-hash on pull: a corrupt remote object fails, never checked out
	@echo "default remote: local -> $(abspath $(REMOTE_DIR))"

# Use S3 instead (dvc-s3), for this clone only: make remote-s3 BUCKET=s3://bucket/path [ENDPOINT=url].
# Credentials come from the environment (AWS_ACCESS_KEY_ID/...) and are never written to a file.
remote-s3: setup
	@case "$(BUCKET)" in s3://?*) ;; *) echo "make remote-s3: BUCKET='$(BUCKET)' is not an s3:// URL; usage: make remote-s3 BUCKET=s3://bucket/path [ENDPOINT=url]" >&2; exit 2;; esac
	dvc remote add --local --force --default s3 $(BUCKET)
	dvc remote modify --local s3 verify true
	if [ -n "$(ENDPOINT)" ]; then dvc remote modify --local s3 endpointurl $(ENDPOINT); fi

# Send / fetch every cached artifact to / from the default remote.
push: setup
	dvc push
pull: setup
	dvc pull

# Tag the current commit as a version and record it in RELEASES (tags don't travel with every clone).
# Released on a side branch? Merge it into main afterwards (`git merge -s ours <branch>` keeps main's
# tree): CI clones main alone, and README sections read each release's reports from its commit.
release:
	@test -n "$(VERSION)" || { echo "make release: no VERSION; usage: make release VERSION=v1" >&2; exit 2; }
	@git check-ref-format "refs/tags/$(VERSION)" || { echo "make release: VERSION='$(VERSION)' is not a valid tag name; use e.g. VERSION=v7" >&2; exit 2; }
	@git diff --quiet HEAD || { echo "make release: commit first: the release must name a clean commit" >&2; exit 2; }
	git tag -a $(VERSION) -m "tuneforge $(VERSION)"
	echo "$(VERSION) $$(git rev-parse HEAD)" >> RELEASES
	git add RELEASES && git commit -q -m "RELEASES: $(VERSION) is $$(git rev-parse --short HEAD)"

# The release budget (issue 21 item 5): one epoch over changelog-actions' whole SFT export instead
# of the default build's step budget (hours on 2 cores, minutes on a GPU), checkpointed every 200
# steps. The profile is the task's train overrides, so no other stage's params change (commit-
# messages already reads its whole export: its max_steps is 0). An experiment run in this work
# tree; killed, the same command resumes from train's last checkpoint (.cache/train-checkpoints).
# Then `dvc exp branch`, commit, make release VERSION=..., dvc push: users fetch it with
# `git checkout <tag> && dvc pull`. Or, as the branch release-epoch does: commit the profile on a
# branch and run a plain `dvc repro` there (tests/test_release_profile.py checks the profile).
RELEASE_PROFILE := -S '+tasks.changelog-actions.overrides.train.max_steps=0' \
  -S '+tasks.changelog-actions.overrides.train.checkpoint_every=200'
release-model: setup
	dvc exp run $(RELEASE_PROFILE)

# Recreate any tag listed in RELEASES that this clone lacks (a commit the clone lacks is named, not fatal).
tags:
	@while read -r version commit; do \
	  [ -z "$$version" ] && continue; \
	  git rev-parse -q --verify "refs/tags/$$version" >/dev/null && continue; \
	  if git cat-file -e "$$commit^{commit}" 2>/dev/null; then git tag "$$version" "$$commit" && echo "tagged $$version $$commit"; \
	  else echo "tags: $$version: commit $$commit is not in this clone (shallow?), not tagged"; fi; \
	done < RELEASES

# Refresh the committed release-note snapshot from SRC (default /usr/share/doc): the file
# params.yaml names as HARVEST_TASK's snapshot (tasks.<task>.snapshot).
HARVEST_TASK ?= changelog-actions
harvest: setup
	@test -d "$(SRC)" || { echo "make harvest: SRC=$(SRC) is not a directory; pass the directory of changelogs to walk, e.g. make harvest SRC=/usr/share/doc" >&2; exit 2; }
	@out=$$($(PY) -c 'from tuneforge import config; p = config.load(); t = "$(HARVEST_TASK)"; \
	  print(p.tasks[t].snapshot if t in p.tasks else "")') && test -n "$$out" || { \
	  echo "make harvest: HARVEST_TASK=$(HARVEST_TASK) is not a task in params.yaml's tasks" >&2; exit 2; }; \
	  echo "$(PY) -m tuneforge.harvest --src $(SRC) --out $$out"; $(PY) -m tuneforge.harvest --src "$(SRC)" --out "$$out"

# Refresh data/snapshot/debian-patches.tar.gz: installed packages' debian/patches via apt (private
# state in .cache/harvest-patches). REPO=path: that repo's commits -> data/snapshot/<dir>-commits.tar.gz.
REPO ?=
harvest-patches: setup
	@if [ -n "$(REPO)" ]; then \
	  test -d "$(REPO)" || { echo "make harvest-patches: REPO=$(REPO) is not a directory; pass a local git repository, e.g. make harvest-patches REPO=../myproject" >&2; exit 2; }; \
	  echo "$(PY) -m tuneforge.harvest_patches --repo $(REPO)"; $(PY) -m tuneforge.harvest_patches --repo "$(REPO)"; \
	else \
	  echo "$(PY) -m tuneforge.harvest_patches"; $(PY) -m tuneforge.harvest_patches; \
	fi

# An OpenAI-compatible server (llama-cpp-python's own llama_cpp.server) over each task's promoted
# GGUF, on loopback: `make serve [PORT=8000]`; each task is a model name (tuneforge/serve.py says
# what the server adds to a request: the task's view, system prompt, output grammar, greedy).
serve: setup
	$(PY) -m tuneforge.serve --port $(or $(PORT),8000)

# Hand labels (tuneforge/review.py): `make review TASK=T [N=50]` writes the review queue to
# reports/<task>/review/ (queue.jsonl and Label Studio's import JSON); `make review TASK=T
# IMPORT=labeled.jsonl LABELER=name CONTRACT=v6` checks the labeled rows and appends them to the
# task's hand-label file (all or nothing).
review: setup
	$(if $(IMPORT),$(PY) -m tuneforge.review import "$(IMPORT)" --labeler "$(LABELER)" --contract "$(CONTRACT)" $(if $(filter 1,$(DRY)),--dry-run),	  $(PY) -m tuneforge.review export --n $(or $(N),50)) $(if $(TASK),--task $(TASK))

# Install a prepare-commit-msg hook in the git repository REPO (a path, relative to this directory or
# absolute): a plain `git commit` there starts from the commit-messages model's message for the
# staged diff (tuneforge.hook: predict with the task's promoted model, run here). A hook there that
# is not tuneforge's is refused unless FORCE=1 (then kept beside it); installing again replaces ours.
install-hook: setup
	@test -n "$(REPO)" || { echo "make install-hook: no REPO; usage: make install-hook REPO=path/to/repo [FORCE=1]" >&2; exit 2; }
	$(PY) -m tuneforge.hook install --repo "$(REPO)" $(if $(filter 1,$(FORCE)),--force)
