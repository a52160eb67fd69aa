# The README's commands. Each target creates the virtual environment (.venv) on first use.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed
TRAIN_ARGS ?=
SWEEP_ARGS ?=
STUDY ?= embedded
# the embedded study runs two 1-thread jobs at once (its numbers depend on the thread count, not on the machine's cores)
STUDY_ARGS_embedded := --jobs 2 --threads-per-job 1
STUDY_ARGS ?= $(STUDY_ARGS_$(STUDY))

.DEFAULT_GOAL := help
.PHONY: help install train test test-slow lint format bench gpu-check sweep study notebooks

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "} {printf "  make %-14s %s\n", $$1, $$2}'

# The exact tested set: pyproject.toml declares ranges, constraints.txt pins every package (a change re-installs)
$(INSTALLED): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade -c constraints.txt pip
	$(PY) -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(INSTALLED)

install: $(INSTALLED) ## create .venv and install the package with the exact tested set (constraints.txt)

# A second environment from the package's version ranges (not constraints.txt): another Python and the
# floors of the ranges (COMPAT_PINS), the newest releases of the rest, then the fast tests. PIP_CONSTRAINT=/dev/null
# lifts a machine-wide pip constraint file (this machine caps torch at 2.14.1) for the pins named here.
COMPAT_PYTHON ?= $(shell for p in python3.12 $$HOME/.pyenv/versions/3.12*/bin/python3.12 /usr/local/bin/python3.12 /usr/bin/python3.12; do "$$p" -c 'import sys; print(sys.executable)' 2>/dev/null && break; done)
COMPAT_PINS ?= torch==2.4.1 torchvision==0.19.1 numpy==1.26.4 matplotlib==3.8.4
COMPAT_VENV ?= .venv-compat
COMPAT_TESTS ?= -m "not slow"
.PHONY: check-compat
check-compat: ## a second environment: Python 3.12, torch 2.4.1, numpy 1.26 + the package's ranges (not the pins), fast tests (downloads about 3 GB from PyPI; 2 CPU cores: about 17 min)
	@py="$(COMPAT_PYTHON)"; test -n "$$py" || { echo "check-compat: no python3.12 found; set COMPAT_PYTHON=/path/to/python" >&2; exit 2; }; \
	start=$$(date +%s); set -x; rm -rf $(COMPAT_VENV) && "$$py" -m venv $(COMPAT_VENV) \
	&& $(COMPAT_VENV)/bin/python -m pip install --quiet --upgrade pip \
	&& PIP_CONSTRAINT=/dev/null $(COMPAT_VENV)/bin/python -m pip install --quiet $(COMPAT_PINS) -e '.[dev]' \
	&& $(COMPAT_VENV)/bin/python -m pip check || exit 1; set +x; installed=$$(date +%s); \
	$(COMPAT_VENV)/bin/python -c "import platform, lightning, matplotlib, numpy, torch, torchvision; print('check-compat: Python', platform.python_version(), '| torch', torch.__version__, '| torchvision', torchvision.__version__, '| lightning', lightning.__version__, '| numpy', numpy.__version__, '| matplotlib', matplotlib.__version__)"; \
	$(COMPAT_VENV)/bin/python -m pytest $(COMPAT_TESTS) -q -p no:cacheprovider; status=$$?; \
	echo "check-compat: install $$((installed - start)) s, tests $$(($$(date +%s) - installed)) s, pytest exit status $$status"; exit $$status

train: $(INSTALLED) ## train + test LFM (ResNet-18) on the generated synthetic data (timing and result: README.md)
	$(PY) src/train.py experiment=lfm_resnet18_synthetic $(TRAIN_ARGS)

sweep: $(INSTALLED) ## demo sweep offline: LFM mask ratio x depth, 2 x 2 short runs, then the results table (docs/sweeps.md)
	$(PY) src/sweep.py conf/sweep/demo.yaml $(SWEEP_ARGS)

study: $(INSTALLED) ## the comparison study + report: tuning, then LFM against the baseline and the other regularizers, in-domain, cross-domain, under attack (STUDY=embedded: 2 CPU cores, docs/study.md; STUDY=full: real data, GPU)
	$(PY) src/study.py $(STUDY) $(STUDY_ARGS)

test: $(INSTALLED) ## lint, the test suite (fast tests; no network), then the notebooks
	$(MAKE) --no-print-directory lint
	$(PY) -m pytest -m "not slow" -q
	$(MAKE) --no-print-directory notebooks

notebooks: $(INSTALLED) ## execute every notebook on the demo outputs (made once under outputs/notebook_demo/; docs/notebooks.md)
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
	$(PY) benchmarks/bench_market_scale.py

gpu-check: $(INSTALLED) ## on a GPU machine: LFM op on CUDA, compile graph breaks, throughput, data pipelines, one epoch of the paper recipe + 60-epoch projection (designed for < 10 min on an H100; not yet measured on a GPU)
	$(PY) benchmarks/gpu_check.py --json outputs/gpu_check.json
