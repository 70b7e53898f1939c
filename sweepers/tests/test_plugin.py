"""The plugin as Hydra sees it: discovered, light to import at start-up, its config groups registered."""

from __future__ import annotations

import importlib
import subprocess
import sys

from hydra.core.config_store import ConfigStore
from hydra.core.plugins import Plugins
from hydra.plugins.sweeper import Sweeper
from hydra_plugins.hydra_optuna_stream_sweeper.optuna_stream_sweeper import OptunaStreamSweeper


def test_hydra_discovers_the_sweeper():
    # By name: Hydra's plugin scan executes the module again (another class object).
    found = {f"{c.__module__}.{c.__qualname__}" for c in Plugins.instance().discover(Sweeper)}
    assert f"{OptunaStreamSweeper.__module__}.{OptunaStreamSweeper.__qualname__}" in found


def test_the_modules_hydra_imports_at_start_up_do_not_load_optuna():
    # Hydra imports every public module of a plugin package at every start (the jobs' too).
    code = (
        "import sys\n"
        "import hydra_plugins.hydra_optuna_stream_sweeper.config\n"
        "import hydra_plugins.hydra_optuna_stream_sweeper.optuna_stream_sweeper\n"
        "import hydra_plugins.hydra_optuna_stream_sweeper.study\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'optuna'))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert done.stdout.strip() == "[]"


def test_config_groups():
    # Registered when the module is first imported (Hydra's plugin discovery, or here: a test that runs
    # alone in a worker has not discovered plugins yet).
    importlib.import_module("hydra_plugins.hydra_optuna_stream_sweeper.config")
    repo = ConfigStore.instance().repo["hydra"]
    assert "optuna_stream.yaml" in repo["sweeper"]
    assert {f"{n}.yaml" for n in ("tpe", "random", "cmaes", "nsgaii", "gp", "qmc", "grid")} <= set(
        repo["sweeper"]["sampler"]
    )
    assert {f"{n}.yaml" for n in ("none", "asha", "median", "hyperband")} == set(repo["sweeper"]["pruner"])
