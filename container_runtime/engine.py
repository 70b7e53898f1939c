"""The engine: install Debian's docker.io, start dockerd by hand (no network of its own), stop it and
clean up after it, report on it. Each command returns the line(s) to print."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

from container_runtime.common import (
    DOCKER,
    DOCKERD,
    ENGINE_FLAGS,
    ENGINE_LEFTOVERS,
    NO_NETWORK_PROXY,
    PROG,
    SOCKET,
    RuntimeFailure,
    docker,
    run,
    run_dir,
    tool_env,
)
from proctools import pids
from proctools.pids import Procs


def install() -> str:
    missing = [p for p in (DOCKER, DOCKERD, "/usr/sbin/debootstrap") if not os.access(p, os.X_OK)]
    if not missing:
        return f"{PROG}: docker.io and debootstrap already installed"
    if os.geteuid() != 0:
        raise RuntimeFailure(f"install needs root (missing: {', '.join(missing)})")
    tic = time.perf_counter()
    cmd = ["apt-get", "install", "-y", "-q", "--no-install-recommends", "docker.io", "debootstrap"]
    first = run(cmd, timeout=600, what="apt-get install", check=False).returncode
    if first != 0:
        # Stale or missing package lists on a fresh machine.
        run(["apt-get", "update", "-q"], timeout=300, what="apt-get update")
        run(cmd, timeout=600, what="apt-get install docker.io debootstrap")
    return f"{PROG}: installed docker.io and debootstrap in {time.perf_counter() - tic:.1f} s"


def _pidfile() -> Path:
    return run_dir() / "dockerd.pid"


def our_pid() -> int | None:
    """The pid of the dockerd this tool started, if it is still that process."""
    try:
        pid = int(_pidfile().read_text().strip())
    except (OSError, ValueError):
        return None
    exe = pids.exe(pid)
    return pid if exe is not None and os.path.basename(exe).startswith("dockerd") else None


def engine_answers() -> bool:
    return (
        run(
            [DOCKER, "info", "--format", "{{.ServerVersion}}"], timeout=30, what="docker info", check=False
        ).returncode
        == 0
    )


def _holders() -> Path:
    return run_dir() / "holders"


def _live_holders() -> list[int]:
    live = []
    for entry in _holders().glob("*") if _holders().is_dir() else []:
        if entry.name.isdigit() and pids.proc_start(int(entry.name)) is not None:
            live.append(int(entry.name))
        else:
            entry.unlink(missing_ok=True)  # a holder that died without letting go
    return live


def start(holder: int | None = None) -> str:
    """Start the engine (or reuse ours); `holder` is a pid that keeps it running until `stop --holder`."""
    try:
        return _start()
    finally:
        if holder is not None and our_pid() is not None:
            _holders().mkdir(parents=True, exist_ok=True)
            (_holders() / str(holder)).touch()


def _start() -> str:
    if not os.access(DOCKERD, os.X_OK):
        raise RuntimeFailure(f"{DOCKERD} is missing: run `scripts/{PROG} install` first")
    pid = our_pid()
    if pid is not None and engine_answers():
        return f"{PROG}: engine already running (pid {pid})"
    if pid is None and os.path.exists(SOCKET) and engine_answers():
        raise RuntimeFailure(f"another container engine already serves {SOCKET}; stop it first")
    if os.geteuid() != 0:
        raise RuntimeFailure("start needs root")
    folder = run_dir()
    folder.mkdir(parents=True, exist_ok=True)
    created = folder / "created.json"
    if not created.exists():  # what existed before the engine's first start here, for `stop`
        created.write_text(json.dumps({str(p): p.exists() for p in ENGINE_LEFTOVERS}))
    tic = time.perf_counter()
    daemon_log = folder / "dockerd.log"
    cmd = [
        DOCKERD,
        "--data-root",
        str(folder / "data"),
        "--exec-root",
        str(folder / "exec"),
        "--pidfile",
        str(_pidfile()),
        "--host",
        f"unix://{SOCKET}",
        *ENGINE_FLAGS,
    ]
    env = {
        **tool_env(),
        **{k: NO_NETWORK_PROXY for k in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy")},
    }
    for key in ("NO_PROXY", "no_proxy"):
        env.pop(key, None)
    with open(daemon_log, "ab") as out:  # the daemon keeps its own copy of the descriptor
        proc = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=out, env=env, start_new_session=True
        )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = daemon_log.read_text(errors="replace").strip().splitlines()[-1:]
            raise RuntimeFailure(
                f"dockerd exited with {proc.returncode}: {' '.join(tail)} (log {daemon_log})"
            )
        if our_pid() == proc.pid and engine_answers():
            return (
                f"{PROG}: engine started in {time.perf_counter() - tic:.1f} s (pid {proc.pid}, "
                f"{' '.join(ENGINE_FLAGS)}, data in {folder})"
            )
        time.sleep(0.2)
    raise RuntimeFailure(
        f"dockerd (pid {proc.pid}) did not answer on {SOCKET} within 60 s (log {daemon_log})"
    )


def _procs_under(path: Path) -> Procs:
    """Processes (containerd and its shims) whose command line names the engine's folder."""
    needle = str(path).encode()
    return pids.snapshot(p for p in pids.all_pids() if p != os.getpid() and needle in pids.read(p, "cmdline"))


def stop(holder: int | None = None) -> str:
    """Stop the engine; with `holder`, only that holder lets go, and the engine stops when none is left."""
    folder = run_dir()
    if holder is not None:
        (_holders() / str(holder)).unlink(missing_ok=True)
        others = [p for p in _live_holders() if p != holder]
        if others:
            return f"{PROG}: engine kept running for holder(s) {', '.join(map(str, others))}"
    pid = our_pid()
    if pid is None and not folder.exists():
        return f"{PROG}: engine not running"
    tic = time.perf_counter()
    if pid is not None:
        dockerd = pids.snapshot([pid])
        pids.stop(lambda: dockerd, term_wait=30, kill_wait=5)  # dockerd stops its containers and containerd
    pids.stop(lambda: _procs_under(folder), term_wait=5, kill_wait=5)
    # Overlay and shm mounts the engine left behind would keep the folder from being removed.
    mounts = [
        ln.split()[1]
        for ln in Path("/proc/mounts").read_text().splitlines()
        if ln.split()[1].startswith(str(folder) + "/")
    ]
    for mnt in sorted(mounts, key=len, reverse=True):
        with contextlib.suppress(RuntimeFailure):
            run(["umount", "-l", mnt], timeout=60, what="umount", check=False)
    created: dict[str, bool] = {}
    with contextlib.suppress(OSError, ValueError):
        created = json.loads((folder / "created.json").read_text())
    for leftover in ENGINE_LEFTOVERS:
        if created.get(str(leftover)) is False:
            with contextlib.suppress(OSError):  # a folder only if it is empty
                leftover.rmdir() if leftover.is_dir() else leftover.unlink()
    shutil.rmtree(folder, ignore_errors=True)
    if os.path.exists(SOCKET) and not engine_answers():
        with contextlib.suppress(OSError):
            os.unlink(SOCKET)
    return f"{PROG}: engine stopped in {time.perf_counter() - tic:.1f} s" + (
        f" (pid {pid})" if pid else " (it was not running; cleaned up)"
    )


def status() -> tuple[int, str]:
    """(exit code: 0 running, 1 not running; the text to print)."""
    pid = our_pid()
    if pid is not None and engine_answers():
        version = docker("info", "--format", "{{.ServerVersion}}")
        images = docker("images", "--format", "{{.Repository}}:{{.Tag}} {{.Size}}")
        lines = [f"{PROG}: engine running (pid {pid}, docker {version}, data in {run_dir()})"]
        lines += [f"  image {line}" for line in images.splitlines()]
        return 0, "\n".join(lines)
    return 1, f"{PROG}: engine not running"
