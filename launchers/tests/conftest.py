"""Wiring for the launcher's tests: the container engine and worker image for tests marked `container`.

`container_worker` (session) needs the pool of the root conftest's `condor_pool`. It installs and starts the
engine with scripts/container-runtime (no bridge, no firewall or sysctl changes), builds or loads the worker
test image `mnist-app-test-worker:latest` (cached outside the repository, see containers/README.md), turns
on the pool's container jobs with `scripts/condor-pool docker on` (a config.d fragment and a reconfig), then
undoes all of that at session end and checks that the host is as the engine found it (`host-state`, taken
after `install` and before `start`). Locally a runtime that cannot start skips the tests; under CI=true it
fails them, as for the pool.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
RUNTIME = REPO / "scripts" / "container-runtime"
POOL = REPO / "scripts" / "condor-pool"
IMAGE_TAG = "mnist-app-test-worker:latest"


@dataclasses.dataclass(frozen=True)
class ContainerWorker:
    """The worker test image, as the launcher names it, and the host as the engine found it."""

    image: str  # container_image for the launcher: docker://mnist-app-test-worker:latest
    tag: str
    # `host_state()` after `install`, before this session started the engine; None if it was running.
    host_before: dict[str, Any] | None

    @staticmethod
    def host_state() -> dict[str, Any]:
        """`scripts/container-runtime host-state` now: {"network": {...}, "engine": {...}}."""
        proc = _runtime("host-state", timeout=60)
        if proc.returncode != 0:
            raise RuntimeError(f"scripts/container-runtime host-state failed: {_last_line(proc)}")
        state: dict[str, Any] = json.loads(proc.stdout)
        return state

    def changes(self, now: dict[str, Any], part: str | None = None) -> dict[str, tuple[Any, Any]]:
        """What differs from `host_before` in `now`, or in its `part`: {"network.links": (before, now)}."""
        assert self.host_before is not None
        diff = {}
        for section in [part] if part else sorted(self.host_before.keys() | now.keys()):
            old, new = self.host_before.get(section, {}), now.get(section, {})
            for key in sorted(old.keys() | new.keys()):
                if old.get(key) != new.get(key):
                    diff[f"{section}.{key}"] = (old.get(key), new.get(key))
        return diff


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def _unavailable(reason: str) -> None:
    msg = f"container runtime unavailable: {reason}"
    if _in_ci():
        pytest.fail(msg + " (CI=true: not skipping)", pytrace=False)
    pytest.skip(msg)


def _runtime(*args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(RUNTIME), *args], capture_output=True, text=True, timeout=timeout
    )


def _last_line(proc: subprocess.CompletedProcess[str]) -> str:
    lines = [ln for ln in (proc.stderr + proc.stdout).splitlines() if ln.strip()]
    return lines[-1] if lines else f"exit code {proc.returncode}"


def _docker_slots(htcondor: Any) -> list[Any]:
    """Slots that can run container jobs now (what `scripts/condor-pool docker on` waits for)."""
    ads = htcondor.Collector().query(
        htcondor.AdTypes.Startd, projection=["Name", "HasContainer", "DockerVersion"]
    )
    return [ad for ad in ads if ad.get("HasContainer") is True and ad.get("DockerVersion")]


def _pool_docker(pool_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`scripts/condor-pool docker ...` on the session's pool (its config.d fragment and a reconfig)."""
    env = {**os.environ, "CONDOR_POOL_DIR": str(pool_dir)}
    return subprocess.run([str(POOL), "docker", *args], capture_output=True, text=True, timeout=180, env=env)


@pytest.fixture(scope="session")
def container_worker(condor_pool: Any) -> Iterator[ContainerWorker]:
    """Engine running, worker image present, pool able to run container jobs; all undone afterwards."""
    import htcondor2

    holder = str(os.getpid())
    engine_was_running = _runtime("status", timeout=60).returncode == 0
    before: dict[str, Any] | None = None

    def step(*args: str, timeout: float) -> None:
        proc = _runtime(*args, timeout=timeout)
        if proc.returncode != 0:
            _unavailable(f"scripts/container-runtime {args[0]} failed: {_last_line(proc)}")

    try:
        step("install", timeout=900)
        # The host as the engine finds it: after the packages are installed (/etc/docker and iptables'
        # tables are theirs, not the engine's), before the engine starts.
        before = ContainerWorker.host_state() if not engine_was_running else None
        step("start", f"--holder={holder}", timeout=120)
        step("image", f"--python={sys.executable}", timeout=1800)
        # Only a scripts/condor-pool pool is reconfigured; a pool named by a pre-set CONDOR_CONFIG must
        # advertise HasContainer by itself.
        pool_dir = condor_pool.pool_dir
        if pool_dir is not None:
            on = _pool_docker(pool_dir, "on")
            if on.returncode != 0:
                _unavailable(f"scripts/condor-pool docker on failed: {_last_line(on)}")
        elif not _docker_slots(htcondor2):
            _unavailable(
                "the pool named by CONDOR_CONFIG has no slot that can run container jobs "
                "(HasContainer, DockerVersion)"
            )
    except (OSError, subprocess.TimeoutExpired) as exc:
        _runtime("stop", f"--holder={holder}", timeout=300)
        _unavailable(f"set-up: {exc}")
    except BaseException:  # a skip or failure above: let go of the engine first
        _runtime("stop", f"--holder={holder}", timeout=300)
        raise
    worker = ContainerWorker(image=f"docker://{IMAGE_TAG}", tag=IMAGE_TAG, host_before=before)
    try:
        yield worker
    finally:
        stop = _runtime("stop", f"--holder={holder}", timeout=300)
        stopped = "engine stopped" in stop.stdout
        if pool_dir is not None and stopped:  # no other session's engine is left for the pool to use
            off = _pool_docker(pool_dir, "off")
            if off.returncode != 0:
                pytest.fail(f"scripts/condor-pool docker off failed: {_last_line(off)}", pytrace=False)
        if stop.returncode != 0:
            pytest.fail(f"scripts/container-runtime stop failed: {_last_line(stop)}", pytrace=False)
        if before is not None and stopped:
            changed = worker.changes(ContainerWorker.host_state())
            if changed:
                pytest.fail(f"the container engine left the host changed: {changed}", pytrace=False)


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
