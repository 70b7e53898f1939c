"""Wiring for the launcher's tests: the time zone of tables and the second environment's python. (The
container engine and worker image of the tests marked `container`: the root conftest's `container_worker`.)
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def utc(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Local time is UTC for the test (wall-clock times in tables), whatever the machine's zone."""
    import time

    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


# The second environment (envs/optuna2/requirements.txt): Hydra's Optuna sweeper (optuna<3) with the launcher.
OPTUNA2_VENV = REPO / ".venv-optuna2"


@pytest.fixture
def optuna2_python(missing: Any) -> Path:
    """The python of `make venv-optuna2`'s environment (`make test` builds it, and rebuilds it when its
    declaration changes). Built by make, not here: tests never write into the repository. Missing: the test
    is skipped, or fails under CI."""
    if not (OPTUNA2_VENV / ".installed").is_file():
        missing(f"{OPTUNA2_VENV} not built: run `make venv-optuna2`")
    return OPTUNA2_VENV / "bin" / "python"
