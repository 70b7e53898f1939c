"""Build a configured HTCondorLauncher the way Hydra does, so tests can inspect every JobReturn of a batch
(Hydra's sweeper would stop at the first failed one)."""

import contextlib
import logging
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from hydra._internal.callbacks import Callbacks
from hydra._internal.hydra import Hydra
from hydra._internal.utils import create_config_search_path
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from hydra.core.plugins import Plugins
from hydra.core.utils import JobReturn
from hydra.types import HydraContext, RunMode
from hydra_plugins.hydra_htcondor_launcher import _wait


@contextlib.contextmanager
def configured_launchers(
    sweep_dir: Path, task: Callable[[Any], Any], launcher_overrides: Sequence[str] = ()
) -> Iterator[Callable[[], Any]]:
    """Within: make HTCondorLaunchers set up as Hydra sets one up for a multirun (each call a new one, as a
    new process would have)."""
    search_path = create_config_search_path(None)
    hydra = Hydra.create_main_hydra2(task_name="pool_test", config_search_path=search_path)
    try:
        cfg = hydra.compose_config(
            config_name=None,
            overrides=[
                f"hydra.sweep.dir={sweep_dir}",
                "hydra/launcher=htcondor",
                "hydra.launcher.poll_interval=0.1",
                "hydra.launcher.request_memory=256MB",
                *launcher_overrides,
            ],
            run_mode=RunMode.MULTIRUN,
            with_log_configuration=False,
        )
        HydraConfig.instance().set_config(cfg)
        context = HydraContext(config_loader=hydra.config_loader, callbacks=Callbacks(cfg))
        yield lambda: Plugins.instance().instantiate_launcher(
            hydra_context=context, task_function=task, config=cfg
        )
    finally:
        GlobalHydra.instance().clear()


def launch(
    sweep_dir: Path,
    task: Callable[[Any], Any],
    jobs: Sequence[Sequence[str]],
    launcher_overrides: Sequence[str] = (),
) -> list[JobReturn]:
    with configured_launchers(sweep_dir, task, launcher_overrides) as new_launcher:
        return list(new_launcher().launch([list(j) for j in jobs], initial_job_idx=0))


@pytest.fixture
def status_tables() -> Iterator[list[str]]:
    """The launcher's job-status tables. Not caplog: the launcher re-configures logging (Hydra's
    configure_log), which drops handlers on the root logger but not on its own."""
    tables: list[str] = []
    handler = logging.Handler(logging.INFO)
    handler.emit = lambda record: tables.append(record.getMessage())  # type: ignore[method-assign]
    logger = logging.getLogger(_wait.__name__)
    old_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield tables
    logger.removeHandler(handler)
    logger.setLevel(old_level)


# The smallest third-party Hydra app: a script with no config files whose task returns 1.
TRIVIAL_APP = (
    "import hydra\n"
    "@hydra.main(version_base=None, config_path=None)\n"
    "def main(cfg):\n    return 1\n"
    "if __name__ == '__main__':\n    main()\n"
)


def run_script_app(
    folder: Path,
    source: str,
    *args: str,
    timeout: float = 300,
    env: dict[str, str] | None = None,
    python: str | Path = sys.executable,
) -> subprocess.CompletedProcess[str]:
    """Write ``source`` to ``folder/app.py`` and run ``python app.py -m hydra/launcher=htcondor ARGS`` there
    (with this interpreter, or another environment's ``python``), as a user of any Hydra app would."""
    app = folder / "app.py"
    app.write_text(source)
    return subprocess.run(
        [str(python), str(app), "-m", "hydra/launcher=htcondor", *args],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


APPS = Path(__file__).parent / "apps"


def copy_app(name: str, root: Path) -> Path:
    """A copy of the example app ``launchers/tests/apps/NAME`` under `root` (tests never write into the
    repository)."""
    return Path(shutil.copytree(APPS / name, root / name, ignore=shutil.ignore_patterns("__pycache__")))


def run_app(
    app: Path, command: Sequence[str], *args: str, env: dict[str, str] | None = None, timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    """``python COMMAND -m ARGS`` in the app's folder (COMMAND: a script, or ``-m``, a module), as a user
    would run it; `env` adds to the environment."""
    return subprocess.run(
        [sys.executable, *command, "-m", *args],
        cwd=app,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "HYDRA_FULL_ERROR": "1", **(env or {})},
    )
