# degan-bench developer and user entry points. Each target sets up .venv itself.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP_FLAGS ?= --disable-pip-version-check
PYTEST_ARGS ?=

.PHONY: install test lint

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install $(PIP_FLAGS) -q -c constraints.txt -e '.[dev]'
	touch $@

install: $(VENV)/.installed  ## create .venv and install degan-bench with its dev tools

test: install  ## run the test suite (CPU only, ~10 minutes on 2 cores)
	$(PY) -m pytest -q $(PYTEST_ARGS)

lint: install  ## ruff
	$(VENV)/bin/ruff check degan_bench tests benchmarks
	$(VENV)/bin/ruff format --check degan_bench tests benchmarks

.PHONY: demo bench

demo: install  ## train the tiny smoke StyleGAN2 on the embedded shapes-100 set (CPU, a few minutes)
	$(VENV)/bin/degan-bench data prepare shapes-100
	$(VENV)/bin/degan-bench run stylegan2 shapes-100 --preset smoke --out runs/demo --resume auto
	@echo "demo run directory: runs/demo (reals.png, fakes_*.png, stats.jsonl, metrics.jsonl, checkpoints/)"

BENCH_DEVICE ?= auto
bench: install  ## training and evaluation throughput (see benchmarks/); BENCH_DEVICE=cuda on a GPU
	$(PY) benchmarks/bench_train.py stylegan2 obama-100 --device $(BENCH_DEVICE) --json runs/bench-train.json
	$(PY) benchmarks/bench_metrics.py --device $(BENCH_DEVICE)
