# One-command entry points. `make study` and `make test` set everything up on a fresh machine.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
export PATH := $(abspath $(VENV))/bin:$(PATH)
export DVC_NO_ANALYTICS := 1
export MLFLOW_DISABLE_TELEMETRY := true
export TORCHINDUCTOR_CACHE_DIR ?= $(abspath .cache/inductor)
# torch 2.13.0's CPU build lies on disk on the reference machine; a looser spec would pull a
# multi-GB CUDA build. Override with `make TORCH_SPEC='torch>=2.4' ...` elsewhere.
TORCH_SPEC ?= torch==2.13.0
# The test files run on this many processes, each file whole on one (pytest-xdist's loadfile:
# a module's fixtures, such as the end-to-end study, are built once). 0 runs them in this one.
TEST_WORKERS ?= 2

.PHONY: setup study test ui verify planted-bugs bench-kernels bench-train bench-evaluate bench-scaling bench-dvc gpu-check lint

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	@command -v python3 >/dev/null || { echo "error: python3 (>= 3.11) is required"; exit 1; }
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH_SPEC)"
	$(PY) -m pip install -q -e ".[test,triton,ray]"
	@# Debian packages, as root: the Fashion-MNIST files, and Chromium for the browser tests
	@# (tests/test_report_page.py, tests/test_mlflow_ui.py skip, saying why, without it).
	@if command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
	  need=""; [ -d /usr/share/datasets/fashion-mnist ] || need="dataset-fashion-mnist"; \
	  command -v chromium >/dev/null || need="$$need chromium"; \
	  apt="apt-get -o DPkg::Lock::Timeout=300 -y -qq"; \
	  if [ -n "$$need" ]; then ($$apt install $$need >/dev/null 2>&1 || \
	    ($$apt update >/dev/null 2>&1 && $$apt install $$need >/dev/null 2>&1)) || \
	    echo "note: apt-get could not install$$need; the data stage will try the official" \
	         "Fashion-MNIST download and the browser tests are skipped"; fi; fi
	touch $@

study: setup
	@test -d .dvc || dvc init -q $$(git rev-parse --git-dir >/dev/null 2>&1 || echo --no-scm)
	dvc repro

test: setup
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile --durations=30

ui: setup
	mlflow ui --backend-store-uri sqlite:///$(abspath mlflow.db) --host 127.0.0.1 --port 5000 --workers 1

# Rerun a quick subset of the committed study and compare every metric within its errors.
verify: setup
	$(VENV)/bin/vaebench verify

# Plant each class of bug in a scratch copy and record which model check catches it.
planted-bugs: setup
	$(PY) tests/planted_bugs/harness.py --write reports/planted_bugs.json

bench-kernels: setup
	$(PY) -m pytest kernels/bench -q --benchmark-only
	$(PY) -m benchmarks.draw_streams

bench-train: setup
	$(PY) -m benchmarks.train_throughput
	$(PY) -m benchmarks.step_costs
	$(PY) -m benchmarks.data_path
	$(PY) -m benchmarks.is_nll

bench-evaluate: setup
	$(PY) -m benchmarks.evaluate_backends

# DVC's queue against dvc repro (presets/tiny.yaml), Ray's overhead per task, MLflow's time per
# logged metric on PostgreSQL and SQLite: reports/benchmarks/scaling.md. PostgreSQL is installed
# (as root) when missing.
bench-scaling: setup
	$(PY) -m benchmarks.scaling tracking
	$(PY) -m benchmarks.scaling ray
	$(PY) -m benchmarks.scaling queue

# DVC's own cost per stage: the lock per source file (before the code stage) and per stage.
bench-dvc: setup
	$(PY) -m benchmarks.dvc_overhead --old a554416^ --new HEAD

# On a CUDA machine with its own python3 (torch, triton, pytest): kernel tests on the GPU and
# the micro-benchmarks (reports/kernels/latent_bench_cuda.md). Installs nothing.
gpu-check:
	bash benchmarks/gpu_check.sh

lint: setup
	$(VENV)/bin/ruff check .
