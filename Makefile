# The README's commands. Each target creates the virtual environment (.venv) on first use.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed
TRAIN_ARGS ?=
SWEEP_ARGS ?=
STUDY_ARGS ?=
STUDY ?= embedded

.DEFAULT_GOAL := help
.PHONY: help install train test test-slow lint format bench gpu-check sweep study notebooks

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "} {printf "  make %-14s %s\n", $$1, $$2}'

$(INSTALLED): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(INSTALLED)

install: $(INSTALLED) ## create .venv and install the package with its exact pins

train: $(INSTALLED) ## train + test LFM (ResNet-18) on the generated synthetic data (2 CPU cores: about 5 min)
	$(PY) src/train.py experiment=lfm_resnet18_synthetic $(TRAIN_ARGS)

sweep: $(INSTALLED) ## demo sweep offline: LFM mask ratio x depth, 2 x 2 short runs, then the results table (2 CPU cores: a few minutes)
	$(PY) src/sweep.py conf/sweep/demo.yaml $(SWEEP_ARGS)

study: $(INSTALLED) ## the comparison study + report: 7 methods x 3 seeds, in-domain, cross-domain, under attack (STUDY=embedded: about 58 min on 2 CPU cores; STUDY=full: real data, GPU)
	$(PY) src/study.py $(STUDY) $(STUDY_ARGS)

test: $(INSTALLED) ## lint, the test suite (fast tests; no network), then the notebooks
	$(MAKE) --no-print-directory lint
	$(PY) -m pytest -m "not slow" -q
	$(MAKE) --no-print-directory notebooks

notebooks: $(INSTALLED) ## execute every notebook on the demo outputs (made once under outputs/notebook_demo/; 2 CPU cores: 1 min, about 2 min the first time)
	$(PY) -m lfm.analysis.demo
	$(PY) -m pytest --nbmake --nbmake-timeout=600 -q notebooks/

lint: $(INSTALLED) ## ruff: lint and format check (the rules are in pyproject.toml)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

format: $(INSTALLED) ## ruff: fix what it can, then format
	$(PY) -m ruff check --fix .
	$(PY) -m ruff format .

test-slow: $(INSTALLED) ## the slower end-to-end tests
	$(PY) -m pytest -m slow -q

bench: $(INSTALLED) ## speed benchmarks (each prints a table)
	$(PY) benchmarks/bench_evaluate_ranking.py
	$(PY) benchmarks/bench_rerank.py
	$(PY) benchmarks/bench_masking.py
	$(PY) benchmarks/bench_training_loop.py
	$(PY) benchmarks/bench_pipeline.py
	$(PY) benchmarks/bench_startup.py

gpu-check: $(INSTALLED) ## on a GPU machine: LFM op on CUDA, compile graph breaks, throughput table (H100: < 5 min)
	$(PY) benchmarks/gpu_check.py --json outputs/gpu_check.json
