"""The root conftest's grouping for parallel runs (pytest-xdist, --dist loadgroup): tests that declare a
shared resource, and the users of a module-scoped fixture, each run on one worker; the rest spread out."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

SUITE = """
import os
import time
from pathlib import Path

import pytest

OUT = Path(os.environ["GROUPING_OUT"])


def record(kind: str, n: int) -> None:
    (OUT / f"{kind}-{n}").write_text(os.environ["PYTEST_XDIST_WORKER"])
    time.sleep(0.3)  # long enough that an idle worker takes the next test


@pytest.fixture(scope="module")
def computed_once():
    with (OUT / "runs-of-the-fixture").open("a") as f:
        f.write(os.environ["PYTEST_XDIST_WORKER"] + "\\n")


@pytest.mark.shares("engine")
@pytest.mark.parametrize("n", range(4))
def test_engine(n):
    record("engine", n)


@pytest.mark.parametrize("n", range(4))
def test_reads_the_fixture(n, computed_once):
    record("fixture", n)


@pytest.mark.parametrize("n", range(8))
def test_free(n):
    record("free", n)
"""


def test_shared_resources_and_module_fixtures_stay_on_one_worker(tmp_path):
    project = tmp_path / "project"
    project.mkdir()
    shutil.copy(REPO / "conftest.py", project / "conftest.py")
    (project / "test_suite.py").write_text(SUITE)
    (project / "pytest.ini").write_text(
        "[pytest]\naddopts = --strict-markers\nmarkers =\n    shares(resource): a shared resource\n"
    )
    out = tmp_path / "out"
    out.mkdir()
    env = {**os.environ, "GROUPING_OUT": str(out)}
    env.pop("PYTEST_ADDOPTS", None)
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-n", "2", "--dist", "loadgroup", "-p", "no:cacheprovider", "-q"],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    def workers(kind: str) -> set[str]:
        return {p.read_text() for p in out.glob(f"{kind}-*")}

    assert len(list(out.glob("engine-*"))) == 4 and len(workers("engine")) == 1
    assert len(list(out.glob("fixture-*"))) == 4 and len(workers("fixture")) == 1
    assert len((out / "runs-of-the-fixture").read_text().split()) == 1  # the module fixture ran once
    assert workers("free") == {"gw0", "gw1"}  # the rest did run in parallel
