"""Repository-wide pytest wiring: the local HTCondor pool fixture and the `condor`/`gpu` markers.

Tests marked `condor` get the session fixture `condor_pool` automatically, set up before any of their other
fixtures, so `CONDOR_CONFIG` is in `os.environ` before a test (or its fixtures) talks to htcondor2.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent
POOL_SCRIPT = REPO / "scripts" / "condor-pool"


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


@dataclasses.dataclass(frozen=True)
class CondorPool:
    """Where the pool used by this test session lives."""

    config: Path  # the CONDOR_CONFIG file (also in os.environ while the session runs)
    pool_dir: Path | None  # scripts/condor-pool folder; None for a pool named by a pre-set CONDOR_CONFIG


def _run_pool(*args: str, timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run([str(POOL_SCRIPT), *args], capture_output=True, text=True, timeout=timeout)


def _one_line(proc: subprocess.CompletedProcess) -> str:
    lines = [ln for ln in (proc.stderr + proc.stdout).splitlines() if ln.strip()]
    errors = [ln for ln in lines if "error:" in ln]
    return (errors or lines or [f"exit code {proc.returncode}"])[-1]


def _missing(msg: str) -> None:
    """A prerequisite of a test is missing: skip locally; under CI fail the run (never a silent skip)."""
    if _in_ci():
        pytest.fail(msg + " (CI=true: not skipping)", pytrace=False)
    pytest.skip(msg)


def _unavailable(reason: str) -> None:
    _missing(f"local HTCondor pool unavailable: {reason}")


@pytest.fixture
def missing() -> Callable[[str], None]:
    """For a test whose prerequisite (an interpreter, a mount) is missing: skips it, or fails under CI."""
    return _missing


@pytest.fixture
def tmpfs() -> Iterator[Callable[[Path, str], Path]]:
    """``tmpfs(folder, size)`` mounts a fresh tmpfs of ``size`` (e.g. "2m") at ``folder`` (root only): a
    filesystem a test can fill. Each is unmounted at teardown, latest first, whatever the test did."""
    mounted: list[Path] = []

    def mount(folder: Path, size: str) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        cmd = ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            _missing(f"cannot mount a tmpfs at {folder}: {proc.stderr.strip() or proc.returncode}")
        mounted.append(folder)
        return folder

    yield mount
    for folder in reversed(mounted):
        # Lazily if busy (a daemon may still hold a log open): the mount must never outlive the test.
        if subprocess.run(["umount", str(folder)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(folder)], check=True)


def _own_pool() -> tuple[dict, bool]:
    """Reuse the running scripts/condor-pool pool, or install and start it; returns (env --json, started)."""
    try:
        status = _run_pool("status", timeout=60)
        started = False
        if status.returncode != 0:
            install = _run_pool("install", timeout=900)
            if install.returncode != 0:
                _unavailable(f"scripts/condor-pool install failed: {_one_line(install)}")
            start = _run_pool("start", timeout=300)
            if start.returncode != 0:
                _unavailable(f"scripts/condor-pool start failed: {_one_line(start)}")
            # A concurrent session may have won the race; then it owns the pool, not us.
            started = "started in" in start.stdout
        env = _run_pool("env", "--json", timeout=60)
        if env.returncode != 0:
            _unavailable(f"scripts/condor-pool env failed: {_one_line(env)}")
        return json.loads(env.stdout), started
    except (OSError, subprocess.TimeoutExpired) as exc:
        _unavailable(f"scripts/condor-pool: {exc}")
        raise  # unreachable: _unavailable raises


def _check_reachable(address_hint: str) -> None:
    """Ask the collector for the schedd; a pool that does not answer is unavailable."""
    import htcondor2

    htcondor2.reload_config()  # CONDOR_CONFIG may have changed since htcondor2 was first imported
    collector = str(htcondor2.param.get("COLLECTOR_HOST", address_hint))
    try:
        ads = htcondor2.Collector().query(htcondor2.AdTypes.Schedd, projection=["Name"])
    except Exception as exc:  # the bindings raise HTCondorException and friends
        _unavailable(f"collector {collector} (CONDOR_CONFIG={os.environ['CONDOR_CONFIG']}) "
                     f"did not answer: {exc}")
    if not ads:
        _unavailable(f"collector {collector} knows no schedd (CONDOR_CONFIG={os.environ['CONDOR_CONFIG']})")


@pytest.fixture(scope="session")
def condor_pool() -> Iterator[CondorPool]:
    """The HTCondor pool for tests marked `condor`.

    A pre-set CONDOR_CONFIG names the pool to use as is. Otherwise the default scripts/condor-pool pool
    (CONDOR_POOL_DIR/CONDOR_POOL_PORT honoured) is reused if running, or installed and started, and then
    stopped at session end.
    """
    saved = {k: os.environ.get(k) for k in ("CONDOR_CONFIG", "PATH")}
    preset = os.environ.get("CONDOR_CONFIG")
    started = False
    if preset:
        config = Path(preset)
        if not config.is_file():
            _unavailable(f"CONDOR_CONFIG={preset} is not a file")
        env = {"CONDOR_CONFIG": str(config)}
        pool_dir = None
        _check_reachable("?")
    else:
        info, started = _own_pool()
        config = Path(info["CONDOR_CONFIG"])
        env = {"CONDOR_CONFIG": str(config), "PATH": f"{info['bin']}:{os.environ.get('PATH', '')}"}
        pool_dir = Path(info["pool_dir"])
        os.environ.update(env)
        try:
            _check_reachable(info["address"])
        except BaseException:
            if started:
                _run_pool("stop", timeout=120)
            raise
    os.environ.update(env)
    pool = CondorPool(config=config, pool_dir=pool_dir)
    try:
        yield pool
    finally:
        if started:
            stop = _run_pool("stop", timeout=120)
            if stop.returncode != 0:
                print(f"scripts/condor-pool stop failed: {_one_line(stop)}")
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture
def private_pool_env(condor_pool: CondorPool) -> Callable[[int | str], dict[str, str]]:
    """port -> the environment for scripts/condor-pool running a pool of the test's own on that port (its
    CONDOR_POOL_DIR is the test's) with the session pool's HTCondor: its bin/sbin on PATH make `install` take
    its "HTCondor on PATH" branch (no download). Skips for a pool named by a pre-set CONDOR_CONFIG."""
    if condor_pool.pool_dir is None:
        pytest.skip("needs a pool installed by scripts/condor-pool")
    info = json.loads((condor_pool.pool_dir / "install.json").read_text())

    def env(port: int | str) -> dict[str, str]:
        return {"CONDOR_POOL_PORT": str(port), "PATH": f"{info['sbin']}:{info['bin']}:{os.environ['PATH']}"}

    return env


def _cuda_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if item.get_closest_marker("condor") is not None:
            # Like @pytest.mark.usefixtures("condor_pool"), but first in line: a marker added here would
            # come too late (fixture closures are computed at collection), and other session/module
            # fixtures of the test may already need CONDOR_CONFIG.
            names = getattr(item, "fixturenames", None)
            if names is not None and "condor_pool" not in names:
                names.insert(0, "condor_pool")
    gpu_items = [item for item in items if item.get_closest_marker("gpu") is not None]
    if gpu_items and not _cuda_available():  # torch is only imported when a gpu test was collected
        skip = pytest.mark.skip(reason="needs a CUDA GPU (torch.cuda.is_available() is False)")
        for item in gpu_items:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _fresh_hydra_version_base() -> Iterator[None]:
    """Start every test with Hydra's version base unset, as in a fresh process.

    ``@hydra.main(version_base="1.3")`` sets a process-wide singleton when ``mnist_app.__main__`` is merely
    imported (and so do the compose API's ``initialize*``); it turns off ``hydra.job.chdir`` for every later
    in-process run, which would make Hydra's launcher suites depend on which tests were collected first.
    """
    from hydra.core.singleton import Singleton
    from hydra.version import VersionBase

    saved = Singleton._instances.pop(VersionBase, None)
    yield
    Singleton._instances.pop(VersionBase, None)
    if saved is not None:
        Singleton._instances[VersionBase] = saved
