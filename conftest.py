"""Repository-wide pytest wiring: the local HTCondor pool fixture, private pools, the container engine and
worker image (`container_worker`, below), and the `condor`/`gpu`/`shares` markers.

Tests marked `condor` get the session fixture `condor_pool` automatically, set up before any of their other
fixtures, so `CONDOR_CONFIG` is in `os.environ` before a test (or its fixtures) talks to htcondor2.

Parallel runs (pytest-xdist, `make test`): the pool is started once for the whole run, by whichever worker
needs it first (a file lock in a folder the controller shares with its workers), reused by the others through
its CONDOR_CONFIG, and stopped once by the controller at the very end. Tests that use a machine-global
resource (the docker engine, apt, a fixed port) or an expensive session-scoped fixture declare it with
`@pytest.mark.shares("name")` (`container` tests share "docker"; the users of a module-scoped fixture are
grouped without a mark); with `--dist loadgroup` all tests of one name run on one worker, one after another.
A test that needs a pool of its own takes the `private_pool` fixture: the session pool's HTCondor, a port of
its worker's own.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from proctools import pids

REPO = Path(__file__).resolve().parent
POOL_SCRIPT = REPO / "scripts" / "condor-pool"
RUNTIME = REPO / "scripts" / "container-runtime"
IMAGE_TAG = "mnist-app-test-worker:latest"
# The test pool's partitionable slot when the session starts it (CONDOR_POOL_CPUS/CONDOR_POOL_MEMORY
# override): the jobs mostly wait, and parallel tests' jobs (the app's ask for 1 CPU and 4 GB each) must not
# queue behind each other on a 2-core machine with less memory than that.
TEST_POOL_SLOT = {"CONDOR_POOL_CPUS": "12", "CONDOR_POOL_MEMORY": str(12 * 4096)}
# The folder the controller shares with its xdist workers (pool.json, pool.lock, groups-*.json), and the
# CONDOR_CONFIG the run was started with, in config.stash.
_SHARED = pytest.StashKey[Path]()
_PRESET = pytest.StashKey["str | None"]()


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


@dataclasses.dataclass(frozen=True)
class CondorPool:
    """Where the pool used by this test session lives."""

    config: Path  # the CONDOR_CONFIG file (also in os.environ while the session runs)
    pool_dir: Path | None  # scripts/condor-pool folder; None for a pool named by a pre-set CONDOR_CONFIG


def _run_pool(*args: str, timeout: float, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([str(POOL_SCRIPT), *args], capture_output=True, text=True, timeout=timeout, env=env)


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
            env = {**os.environ, **{k: os.environ.get(k) or v for k, v in TEST_POOL_SLOT.items()}}
            start = _run_pool("start", timeout=300, env=env)
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
        _unavailable(
            f"collector {collector} (CONDOR_CONFIG={os.environ['CONDOR_CONFIG']}) did not answer: {exc}"
        )
    if not ads:
        _unavailable(f"collector {collector} knows no schedd (CONDOR_CONFIG={os.environ['CONDOR_CONFIG']})")


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive flock on `path`: one xdist worker at a time sets the session pool up."""
    with open(path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)  # bounded by the holder's own timeouts (install 900 s, start 300 s)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _write_json(path: Path, data: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data))
    tmp.rename(path)


def _session_pool(shared: Path) -> dict:
    """`scripts/condor-pool env --json` of the run's pool: the first caller of the run reuses or starts it
    (recording whether it started it, for pytest_unconfigure), later callers and workers read the record.
    A pool that could not be had is recorded too, so every worker gives up with the same reason at once."""
    record = shared / "pool.json"
    with _locked(shared / "pool.lock"):
        if not record.exists():
            try:
                info, started = _own_pool()
            except (pytest.skip.Exception, pytest.fail.Exception) as exc:
                _write_json(record, {"error": str(exc.msg)})
                raise
            _write_json(record, {"info": info, "started": started})
        data = json.loads(record.read_text())
    if "error" in data:
        # The message already says skip or, under CI, fail; repeat the same outcome.
        if _in_ci():
            pytest.fail(data["error"], pytrace=False)
        pytest.skip(data["error"])
    return data["info"]


@pytest.fixture(scope="session")
def condor_pool(pytestconfig: pytest.Config) -> Iterator[CondorPool]:
    """The HTCondor pool for tests marked `condor`.

    A pre-set CONDOR_CONFIG names the pool to use as is. Otherwise the default scripts/condor-pool pool
    (CONDOR_POOL_DIR/CONDOR_POOL_PORT honoured) is reused if running, or installed and started (once per run,
    whatever the number of xdist workers), and then stopped when the run ends (pytest_unconfigure).
    """
    saved = {k: os.environ.get(k) for k in ("CONDOR_CONFIG", "PATH")}
    # As the run started: by now an earlier test of this worker may have imported htcondor2 without a pool,
    # which sets CONDOR_CONFIG=/dev/null in the process.
    preset = pytestconfig.stash[_PRESET]
    if preset:
        config = Path(preset)
        if not config.is_file():
            _unavailable(f"CONDOR_CONFIG={preset} is not a file")
        env = {"CONDOR_CONFIG": str(config)}
        pool_dir = None
        _check_reachable("?")
    else:
        info = _session_pool(pytestconfig.stash[_SHARED])
        config = Path(info["CONDOR_CONFIG"])
        env = {"CONDOR_CONFIG": str(config), "PATH": f"{info['bin']}:{os.environ.get('PATH', '')}"}
        pool_dir = Path(info["pool_dir"])
        os.environ.update(env)
        _check_reachable(info["address"])
    os.environ.update(env)
    pool = CondorPool(config=config, pool_dir=pool_dir)
    try:
        yield pool
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def pytest_configure(config: pytest.Config) -> None:
    # A shell's background job (`make test &`, nohup) starts with SIGINT ignored, and every child inherits
    # that: the tests that Ctrl-C a sweep would see it ignored. Their children must get Python's own handler.
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    workerinput = getattr(config, "workerinput", None)
    if workerinput is not None and "condor_pool_shared" in workerinput:  # an xdist worker
        config.stash[_SHARED] = Path(workerinput["condor_pool_shared"])
        config.stash[_PRESET] = workerinput["condor_config_preset"]
    else:  # the controller, or a run without xdist
        config.stash[_SHARED] = Path(tempfile.mkdtemp(prefix="pytest-condor-pool-"))
        config.stash[_PRESET] = os.environ.get("CONDOR_CONFIG")


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node) -> None:  # xdist's hook, in the controller, for each worker it starts
    node.workerinput["condor_pool_shared"] = str(node.config.stash[_SHARED])
    node.workerinput["condor_config_preset"] = node.config.stash[_PRESET]


def pytest_unconfigure(config: pytest.Config) -> None:
    """The controller stops the pool the run started, once, after every worker has finished."""
    if hasattr(config, "workerinput") or _SHARED not in config.stash:
        return
    shared = config.stash[_SHARED]
    try:
        data = json.loads((shared / "pool.json").read_text())
    except FileNotFoundError:
        data = {}
    if data.get("started"):
        stop = _run_pool("stop", timeout=120)
        if stop.returncode != 0:
            print(f"scripts/condor-pool stop failed: {_one_line(stop)}")
    shutil.rmtree(shared, ignore_errors=True)


@dataclasses.dataclass(frozen=True)
class PrivatePool:
    """A throw-away scripts/condor-pool pool of one test: its own folder and port, installed, not started."""

    dir: Path
    env: dict[str, str]  # CONDOR_POOL_PORT and PATH for scripts/condor-pool (the session pool's HTCondor)

    @property
    def port(self) -> int:
        return int(self.env["CONDOR_POOL_PORT"])

    def run(self, *args: str, timeout: float = 120, **env: str) -> subprocess.CompletedProcess:
        """`scripts/condor-pool ARGS` on this pool (`env` adds or overrides variables)."""
        full = {**os.environ, "CONDOR_POOL_DIR": str(self.dir), **self.env, **env}
        full.pop("CONDOR_CONFIG", None)  # the session pool's, which `install`/`start` must not follow
        return _run_pool(*args, timeout=timeout, env=full)

    def config(self) -> Path:
        """Its CONDOR_CONFIG (exists once installed)."""
        return Path(json.loads(self.run("env", "--json").stdout)["CONDOR_CONFIG"])

    def daemon(self, name: str) -> int | None:
        """The pid of its running daemon `name` (e.g. condor_schedd, a child of its master), or None."""
        master = json.loads((self.dir / "run" / "master.json").read_text())["pid"]
        found = pids.children(master, name)
        return found[0] if found else None


def private_pool_port() -> int:
    """CONDOR_POOL_PORT (default 9618) + 50 + the xdist worker's number: a port of this worker alone, so
    parallel workers' private pools never meet (one private pool per test at a time)."""
    base = int(os.environ.get("CONDOR_POOL_PORT") or 9618)
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    return base + 50 + int(worker.removeprefix("gw") or 0)


@pytest.fixture
def private_pool(tmp_path_factory: pytest.TempPathFactory, condor_pool: CondorPool) -> Iterator[PrivatePool]:
    """A second pool for tests that stop, restart or break one: installed from the session pool's HTCondor
    (its bin/sbin on PATH make `install` take its "HTCondor on PATH" branch: no second download), on
    `private_pool_port()`; stopped afterwards. Start it with `private_pool.run("start")`."""
    env = {"CONDOR_POOL_PORT": str(private_pool_port())}
    if condor_pool.pool_dir is not None:
        info = json.loads((condor_pool.pool_dir / "install.json").read_text())
        env["PATH"] = f"{info['sbin']}:{info['bin']}:{os.environ['PATH']}"
    pool = PrivatePool(dir=tmp_path_factory.mktemp("private-pool"), env=env)
    out = pool.run("install", timeout=900)
    assert out.returncode == 0, f"private pool install: {out.stderr[-2000:]}"
    try:
        yield pool
    finally:
        pool.run("stop")


def _cuda_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


# Marker -> the machine-global resource its tests share (in addition to explicit `shares` marks).
IMPLIED_SHARES = {"container": "docker"}


def shared_resources(item: pytest.Item) -> set[str]:
    """What a test shares with others: the resources it declares with `@pytest.mark.shares(...)` or through a
    marker that implies one, and each module-scoped fixture it uses (computed once per module and worker: its
    users on one worker compute it once per run)."""
    names = {str(arg) for mark in item.iter_markers("shares") for arg in mark.args}
    names |= {res for marker, res in IMPLIED_SHARES.items() if item.get_closest_marker(marker)}
    # pytest has no public accessor for a test's fixture definitions; fail loudly if this one goes away.
    info = getattr(item, "_fixtureinfo", None) if isinstance(item, pytest.Function) else None
    if isinstance(item, pytest.Function) and not hasattr(info, "name2fixturedefs"):
        raise RuntimeError("pytest changed: Function._fixtureinfo.name2fixturedefs is gone (conftest.py)")
    for name, defs in info.name2fixturedefs.items() if info is not None else ():
        if defs and defs[-1].scope == "module" and item.module is not None:
            names.add(f"{item.module.__name__}.{name}")
    return names


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log):  # xdist's hook, in the controller
    """--dist loadgroup that works with pytest 9: xdist 3.8 marks a group by appending "@group" to the nodeid
    a worker reports, which pytest 9 no longer lets a plugin change, so its LoadGroupScheduling sees no
    group. The workers write the groups into the shared folder instead (pytest_collection_modifyitems)."""
    if config.getvalue("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadGroupScheduling

    shared = config.stash[_SHARED]

    class SharedResourceScheduling(LoadGroupScheduling):
        groups: dict[str, str] | None = None

        def _split_scope(self, nodeid: str) -> str:
            if self.groups is None:  # read once the workers' collections are in (schedule() runs then)
                self.groups = {}
                for path in sorted(shared.glob("groups-*.json")):
                    self.groups.update(json.loads(path.read_text()))
            return self.groups.get(nodeid) or super()._split_scope(nodeid)

    return SharedResourceScheduling(config, log)


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook, which reads the xdist_group marks
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    workerinput = getattr(config, "workerinput", None)
    groups = {}
    for item in items:
        resources = sorted(shared_resources(item)) if config.pluginmanager.hasplugin("xdist") else []
        for resource in resources:
            item.add_marker(pytest.mark.xdist_group(resource))
        if resources:
            groups[item.nodeid] = "_".join(resources)  # the name xdist gives a test of several groups
        if item.get_closest_marker("condor") is not None:
            # Like @pytest.mark.usefixtures("condor_pool"), but first in line: a marker added here would
            # come too late (fixture closures are computed at collection), and other session/module
            # fixtures of the test may already need CONDOR_CONFIG.
            names = getattr(item, "fixturenames", None)
            if names is not None and "condor_pool" not in names:
                names.insert(0, "condor_pool")
    if workerinput is not None and config.getvalue("loadgroup"):
        _write_json(config.stash[_SHARED] / f"groups-{workerinput['workerid']}.json", groups)
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


def _procs_per_job(sweep_id: str, collector: str | None = None) -> dict[int, int]:
    """How many procs the schedd ever had per Hydra job number of the sweep (queue and history); the session
    pool's schedd, or the one of the pool whose collector is `collector`. Asked of the schedd directly, not
    through the launcher under test."""
    import htcondor2

    if collector is None:
        schedd = htcondor2.Schedd()
    else:
        schedd = htcondor2.Schedd(htcondor2.Collector(collector).locate(htcondor2.DaemonType.Schedd))
    constraint = f'HydraSweepId == "{sweep_id}"'
    proj = ["ClusterId", "ProcId", "HydraJobNum"]
    ids = {
        (int(ad["ClusterId"]), int(ad["ProcId"])): int(ad["HydraJobNum"])
        for ad in [*schedd.query(constraint, projection=proj), *schedd.history(constraint, proj, match=-1)]
    }
    counts: dict[int, int] = {}
    for num in ids.values():
        counts[num] = counts.get(num, 0) + 1
    return counts


@pytest.fixture
def procs_per_job() -> Callable[..., dict[int, int]]:
    """_procs_per_job: one HTCondor job per Hydra job number is what re-attaching promises (launcher and
    sweeper tests)."""
    return _procs_per_job


# --- the container engine and worker image (tests marked `container`, launcher and sweeper alike) ---
# `container_worker` (session) needs the pool of `condor_pool`. It installs and starts the engine with
# scripts/container-runtime (no bridge, no firewall or sysctl changes), builds or loads the worker test image
# `mnist-app-test-worker:latest` (cached outside the repository, see containers/README.md), turns on the
# pool's container jobs with `scripts/condor-pool docker on` (a config.d fragment and a reconfig), then undoes
# all of that at session end and checks that the host is as the engine found it (`host-state`, taken after
# `install` and before `start`). Locally a runtime that cannot start skips the tests; under CI=true it fails
# them, as for the pool.


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


def _no_containers(reason: str) -> None:
    _missing(f"container runtime unavailable: {reason}")


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
    return _run_pool("docker", *args, timeout=180, env={**os.environ, "CONDOR_POOL_DIR": str(pool_dir)})


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
            _no_containers(f"scripts/container-runtime {args[0]} failed: {_last_line(proc)}")

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
                _no_containers(f"scripts/condor-pool docker on failed: {_last_line(on)}")
        elif not _docker_slots(htcondor2):
            _no_containers(
                "the pool named by CONDOR_CONFIG has no slot that can run container jobs "
                "(HasContainer, DockerVersion)"
            )
    except (OSError, subprocess.TimeoutExpired) as exc:
        _runtime("stop", f"--holder={holder}", timeout=300)
        _no_containers(f"set-up: {exc}")
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
