# degan-bench developer and user entry points. Each target sets up .venv itself.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP_FLAGS ?= --disable-pip-version-check
PYTEST_ARGS ?=

.PHONY: install demo test lint

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
