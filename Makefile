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

.PHONY: install demo train-demo eval-demo core-demo test test-all lint format bench bench-ddqn bench-wrappers \
	bench-classifier gpu-check attack clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet "$(TORCH_SPEC)"
	$(PY) -m pip install --quiet -e ".[dev]"
	$(PY) -m pip install --quiet --no-deps "$(TORCHATTACKS_SPEC)"
	touch $@

# The main job on a small embedded default: a short real Double-DQN run on Bowling (the SAP paper's recipe, 6,000
# agent steps), then a short SAP evaluation of the agent it leaves (the newest run under runs/).
demo: train-demo eval-demo

train-demo: install
	$(PY) scripts/train_ddqn.py --game Bowling --total-steps 6000 --learning-starts 1000 --buffer-size 6000 \
		--exploration-steps 4000 --eval-every 6000 --eval-episodes 1 --max-episode-steps 4000 --threads 1

eval-demo: install
	$(PY) scripts/eval_rl_sap.py --episodes 2 --max-episode-steps 60 --eps 0 2 --samples 4 --mc-samples 4 \
		--eot-samples 2 --pgd-steps 2 --threads 1

# The core alone on real Atari frames of the shared trained Pong agent (35 s).
core-demo: install
	$(PY) scripts/demo_core.py

attack: install
	$(PY) scripts/attack_policy.py

# Tests run in one worker per core (pytest-xdist; TEST_WORKERS=0 for one process).
TEST_WORKERS ?= auto

test: install
	$(PY) -m pytest -q -n $(TEST_WORKERS)

test-all: install
	$(PY) -m pytest -q -m "" -n $(TEST_WORKERS)

lint: install
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

format: install
	$(VENV)/bin/ruff check --fix . && $(VENV)/bin/ruff format .

bench: install
	$(PY) benchmarks/bench_core.py

bench-ddqn: install
	$(PY) benchmarks/bench_ddqn.py

bench-wrappers: install
	$(PY) benchmarks/bench_wrappers.py

bench-classifier: install
	$(PY) benchmarks/bench_classifier.py

# Every GPU goal measured in one run of at most 8 minutes: benchmarks/gpu/<date>-<device>.{md,json}, rewritten after
# each part. SMOKE=1: the same parts at toy sizes on the CPU (report under runs/gpu-check/), to check the script.
gpu-check: install
	$(PY) benchmarks/gpu_check.py $(if $(filter-out 0,$(SMOKE)),--smoke) $(GPU_CHECK_ARGS)

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache
