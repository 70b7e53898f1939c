"""Shared fixtures of the app's tests (the root conftest.py, owned by the pool tests, runs the markers: a test
marked `gpu` is skipped there when no CUDA GPU is usable)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from mnist_app.config import config_dir

REPO_ROOT = Path(__file__).resolve().parents[1]

# Small and offline: bundled data, no progress bar, CSV logs only; used by every test that trains.
FAST = ("data.source=bundled", "trainer.enable_progress_bar=false", "logger=csv")


@pytest.fixture(scope="session")
def fast() -> list[str]:
    """:data:`FAST`, the overrides of every test that trains (a fixture: test modules cannot import it)."""
    return list(FAST)


@pytest.fixture
def compose_cfg() -> Iterator[Callable[..., DictConfig]]:
    """``compose_cfg(*overrides, config_dir=...)`` -> the composed app config (Hydra's compose API)."""

    def _compose(*overrides: str, conf: Path | None = None) -> DictConfig:
        with initialize_config_dir(config_dir=str(conf or config_dir()), version_base="1.3"):
            return compose(config_name="config", overrides=list(overrides))

    yield _compose


@pytest.fixture
def app_env(tmp_path: Path) -> dict[str, str]:
    """Environment for CLI subprocesses: the repo importable even before `pip install -e .`, no GPU."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p)
    env.pop("MNIST_DATA_ROOT", None)
    env["HYDRA_FULL_ERROR"] = "0"
    return env


@pytest.fixture
def run_app(tmp_path: Path, app_env: dict[str, str]) -> Callable[..., subprocess.CompletedProcess[str]]:
    """Run ``python -m mnist_app ARGS`` in tmp_path and return the completed process (text output)."""

    def _run(*args: str, timeout: float = 600, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "mnist_app", *args],
            cwd=cwd or tmp_path,
            env=app_env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    return _run
