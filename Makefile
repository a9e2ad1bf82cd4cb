# Set-up and common jobs. `make demo` and `make test` create .venv on first use.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# torch is installed first and pinned: on a CPU-only machine with the CPU wheel at hand this keeps pip from
# fetching a CUDA build; on a GPU machine the same pin takes the CUDA wheel from the package index.
TORCH_SPEC ?= torch==2.13.0
# torchattacks is the peer our attacks are checked and timed against; its metadata wants torchvision, which
# the attacks we compare do not use, so it is installed without its dependencies (scipy comes with [dev]).
TORCHATTACKS_SPEC ?= torchattacks==3.5.1

.PHONY: install demo test test-all lint format bench clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet "$(TORCH_SPEC)"
	$(PY) -m pip install --quiet -e ".[dev]"
	$(PY) -m pip install --quiet --no-deps "$(TORCHATTACKS_SPEC)"
	touch $@

demo: install
	$(PY) scripts/demo_core.py

test: install
	$(PY) -m pytest -q

test-all: install
	$(PY) -m pytest -q -m ""

lint: install
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

format: install
	$(VENV)/bin/ruff check --fix . && $(VENV)/bin/ruff format .

bench: install
	$(PY) benchmarks/bench_core.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache
