# Two entry points for a fresh machine: `make train` and `make test` (see README.md).
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
POOL := scripts/condor-pool
# What mypy checks (config: [tool.mypy] in pyproject.toml).
TYPED := mnist_app launchers/hydra_plugins sweepers/hydra_plugins condor_pool container_runtime pack_env proctools
# pip on these machines warns once per missing local index entry; keep the log readable.
PIP_INSTALL := $(BIN)/python -m pip install --progress-bar off
# The second environment: Hydra's Optuna sweeper (optuna<3) with the launcher, declared in
# envs/optuna2/requirements.txt (why there: that file's header); its test runs it through a subprocess.
OPTUNA2_PYTHON ?= python3.11
OPTUNA2_VENV ?= .venv-optuna2

.PHONY: help venv venv-optuna2 browser train sweep test test-quick lint bench bench-launcher pool-install pool-start pool-stop pool-status clean

help:
	@echo "make train   - set up .venv and train the CNN for 4 epochs (bundled MNIST when offline)"
	@echo "make test    - set up .venv and the local HTCondor pool, run ruff and the whole test suite"
	@echo "make venv-optuna2 - the second environment: Hydra's Optuna sweeper (optuna<3) with the launcher"
	@echo "make test-quick - the tests that need neither the pool nor containers, in parallel (inner loop)"
	@echo "make sweep   - a two-job local sweep (model.lr=0.5,1.0)"
	@echo "make bench   - Lightning vs plain PyTorch training benchmark (benchmarks/README.md)"
	@echo "make bench-launcher - the HTCondor launcher's overhead on the local pool"
	@echo "make pool-start / pool-stop / pool-status - the local HTCondor test pool"

$(VENV)/.installed: pyproject.toml launchers/pyproject.toml sweepers/pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP_INSTALL) -e ./launchers -e ./sweepers -e '.[dev]' 2>&1 | grep -v '^WARNING: Location' || true
	# hydra-optuna-sweeper needs optuna<3 (its own environment, .venv-optuna2); left over from an older
	# .venv it would also register hydra/sweeper/sampler configs over optuna_stream's.
	$(BIN)/python -m pip uninstall -y -q hydra-optuna-sweeper 2>&1 | grep -v '^WARNING' || true
	$(BIN)/python -c "import mnist_app, torch, lightning, hydra, htcondor2, optuna" # fail here, not later
	touch $@

venv: $(VENV)/.installed

$(OPTUNA2_VENV)/.installed: envs/optuna2/requirements.txt launchers/pyproject.toml
	test -x $(OPTUNA2_VENV)/bin/python || $(OPTUNA2_PYTHON) -m venv $(OPTUNA2_VENV)
	$(OPTUNA2_VENV)/bin/python -m pip install --progress-bar off -r envs/optuna2/requirements.txt 2>&1 \
		| grep -v '^WARNING: Location' || true
	$(OPTUNA2_VENV)/bin/python -c "import hydra_plugins.hydra_optuna_sweeper, optuna, htcondor2" # fail here
	touch $@

venv-optuna2: $(OPTUNA2_VENV)/.installed

train: venv
	$(BIN)/python -m mnist_app trainer.max_epochs=4

sweep: venv
	$(BIN)/python -m mnist_app -m model.lr=0.5,1.0 trainer.max_epochs=1

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy $(TYPED)

pool-install:
	$(POOL) install

pool-start: pool-install
	$(POOL) start

pool-stop:
	$(POOL) stop

pool-status:
	$(POOL) status

# The report tests open report.html in a real headless browser: Debian's chromium.
browser:
	command -v chromium >/dev/null 2>&1 || { apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

# Tests run on PYTEST_WORKERS xdist workers: most of their time is spent waiting on the pool, so more
# workers than cores pays off (measured: README.md, top). --dist loadgroup keeps the tests of one shared
# resource (`shares` marker, conftest.py) on one worker.
PYTEST_WORKERS ?= 4
PYTEST_PARALLEL := -n $(PYTEST_WORKERS) --dist loadgroup --durations=15

test: venv venv-optuna2 pool-install browser
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy $(TYPED)
	$(BIN)/python -m pytest $(PYTEST_PARALLEL)

test-quick: venv
	$(BIN)/python -m pytest $(PYTEST_PARALLEL) -m "not condor and not container"

bench: venv
	$(BIN)/python benchmarks/bench_training.py

bench-launcher: venv pool-start
	eval "$$($(POOL) env)" && $(BIN)/python benchmarks/bench_launcher.py

clean:
	rm -rf $(VENV) $(OPTUNA2_VENV) outputs .pytest_cache .ruff_cache
