# degan-bench developer and user entry points. Each target sets up .venv itself.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP_FLAGS ?= --disable-pip-version-check
PYTEST_ARGS ?=
TABLE_ARGS ?=
SWEEP_ARGS ?=

.PHONY: install demo test lint table reproduce-all

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install $(PIP_FLAGS) -q -c constraints.txt -e '.[dev]'
	touch $@

install: $(VENV)/.installed  ## create .venv and install degan-bench with its dev tools

test: install  ## run the test suite (CPU only, ~10 minutes on 2 cores)
	$(PY) -m pytest -q $(PYTEST_ARGS)

lint: install  ## ruff
	$(VENV)/bin/ruff check degan_bench tests
	$(VENV)/bin/ruff format --check degan_bench tests

table: install  ## rebuild every leaderboard in results/leaderboards/ from the run store (TABLE_ARGS="--runs DIR ...")
	$(VENV)/bin/degan-bench table --all $(TABLE_ARGS)

reproduce-all: install  ## train every paper-table cell with the paper recipes, then rebuild the leaderboards (SWEEP_ARGS="--gpus 0,1 ...")
	$(VENV)/bin/degan-bench sweep --all --preset paper $(SWEEP_ARGS)
