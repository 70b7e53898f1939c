"""Shared fixtures of the app's tests (the root conftest.py, owned by the pool tests, runs the markers: a test
marked `gpu` is skipped there when no CUDA GPU is usable)."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from _app_helpers import (
    FAST,
    POOL_SEARCH_EPOCHS,
    POOL_SEARCH_LR,
    POOL_SEARCH_TRIALS,
    PRUNE_BELOW,
    QUICK,
    only_sweep_dir,
)
from _app_helpers import app_env as app_env_for
from _app_helpers import run_app as run_app_in
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from mnist_app.config import config_dir


@pytest.fixture(scope="session")
def fast() -> list[str]:
    """:data:`_app_helpers.FAST`, the overrides of every test that trains."""
    return list(FAST)


@pytest.fixture(scope="session")
def pool_optuna_sweep(condor_pool, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sweep folder of one Optuna search on the pool with pruning on (``hparams_search=optuna`` on
    ``launcher=htcondor_cpu``): 4 trials of ``model.lr=choice(POOL_SEARCH_LR)``, 2 in flight, a
    ThresholdPruner on the val/acc that mnist_app reports each epoch (so the diverging trials are pruned
    and their slots refilled), run once for the tests that only read it: mark them
    ``@pytest.mark.shares("pool_optuna_sweep")`` so that parallel runs keep them on one worker."""
    cwd = tmp_path_factory.mktemp("pool_optuna_sweep")
    proc = run_app_in(
        cwd,
        "-m",
        "hparams_search=optuna",
        "launcher=htcondor_cpu",
        # One searched parameter, on the command line (the preset's params dropped).
        "hydra.sweeper.params=null",
        f"model.lr=choice({','.join(str(v) for v in POOL_SEARCH_LR)})",
        f"hydra.sweeper.n_trials={POOL_SEARCH_TRIALS}",
        "hydra.sweeper.n_jobs=2",
        "hydra.sweeper.pruner._target_=optuna.pruners.ThresholdPruner",
        f"+hydra.sweeper.pruner.lower={PRUNE_BELOW}",
        *QUICK,
        f"trainer.max_epochs={POOL_SEARCH_EPOCHS}",
        env=app_env_for(),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return only_sweep_dir(cwd)


@pytest.fixture
def compose_cfg() -> Iterator[Callable[..., DictConfig]]:
    """``compose_cfg(*overrides, config_dir=...)`` -> the composed app config (Hydra's compose API)."""

    def _compose(*overrides: str, conf: Path | None = None) -> DictConfig:
        with initialize_config_dir(config_dir=str(conf or config_dir()), version_base="1.3"):
            return compose(config_name="config", overrides=list(overrides))

    yield _compose


@pytest.fixture
def app_env() -> dict[str, str]:
    """Environment for CLI subprocesses (see ``_app_helpers.app_env``), Hydra's short error reports."""
    return app_env_for(HYDRA_FULL_ERROR="0")


@pytest.fixture
def run_app(tmp_path: Path, app_env: dict[str, str]) -> Callable[..., subprocess.CompletedProcess[str]]:
    """Run ``python -m mnist_app ARGS`` in tmp_path (or ``cwd``) and return the completed process."""

    def _run(*args: str, timeout: float = 600, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
        return run_app_in(cwd or tmp_path, *args, timeout=timeout, env=app_env)

    return _run
