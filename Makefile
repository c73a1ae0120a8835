# degan-bench developer and user entry points. Each target sets up .venv itself.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP_FLAGS ?= --disable-pip-version-check
PYTEST_ARGS ?=
TABLE_ARGS ?=
SWEEP_ARGS ?=
DEADLINE_MINUTES ?=
BENCH_DEVICE ?= auto
BENCH_ARGS ?=

.PHONY: install demo test lint bench bench-gpu table reproduce-all

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install $(PIP_FLAGS) -q -c constraints.txt -e '.[dev]'
	touch $@

install: $(VENV)/.installed  ## create .venv and install degan-bench with its dev tools

demo: install  ## train the tiny smoke StyleGAN2 on the embedded shapes-100 set (CPU, a few minutes)
	$(VENV)/bin/degan-bench data prepare shapes-100
	$(VENV)/bin/degan-bench run stylegan2 shapes-100 --preset smoke --out runs/demo --resume auto
	@echo "demo run directory: runs/demo (reals.png, fakes_*.png, stats.jsonl, metrics.jsonl, checkpoints/)"

test: install  ## run the test suite (CPU only)
	$(PY) -m pytest -q $(PYTEST_ARGS)

lint: install  ## ruff
	$(VENV)/bin/ruff check degan_bench tests benchmarks
	$(VENV)/bin/ruff format --check degan_bench tests benchmarks

bench: install  ## training and evaluation throughput (see benchmarks/); BENCH_DEVICE=cuda on a GPU
	$(PY) benchmarks/bench_train.py stylegan2 obama-100 --device $(BENCH_DEVICE) --json runs/bench-train.json
	$(PY) benchmarks/bench_train.py diffaugment cifar10-10pct --device $(BENCH_DEVICE) --json runs/bench-train-biggan.json
	$(PY) benchmarks/bench_train.py diffaugment cifar10-10pct --backbone stylegan2 --device $(BENCH_DEVICE) --json runs/bench-train-stylegan2-cifar.json
	$(PY) benchmarks/bench_metrics.py --device $(BENCH_DEVICE)
	$(PY) benchmarks/bench_train.py stylegan2 shapes-100 --preset smoke --device cpu --threads auto,1,2,default --minibatches 20 --warmup 2 --json runs/bench-cpu-threads.json

bench-gpu: install  ## one time-boxed GPU call (<= 8 min on one H100): paper models, speed switches, fid50k_full; JSON to results/bench/ (BENCH_ARGS="--official PATH --budget-minutes M")
	$(VENV)/bin/degan-bench bench --suite gpu --out results/bench $(BENCH_ARGS)

table: install  ## rebuild every leaderboard in results/leaderboards/ from the run store (TABLE_ARGS="--runs DIR ...")
	$(VENV)/bin/degan-bench table --all $(TABLE_ARGS)

# Re-entrant: complete runs are skipped, stopped ones resumed, runs leased by another writer on the same
# store left alone; DEADLINE_MINUTES=N stops in time with a checkpoint (exit 75: run it again to go on).
reproduce-all: install  ## train every paper-table cell (paper recipes), then rebuild the leaderboards (DEADLINE_MINUTES=N, SWEEP_ARGS="--gpus 0,1 ...")
	$(VENV)/bin/degan-bench sweep --all --preset paper $(if $(DEADLINE_MINUTES),--deadline-minutes $(DEADLINE_MINUTES)) $(SWEEP_ARGS)
