"""Processes through /proc, by pid and start time (never by name), and stopping them: SIGTERM, a grace
period, SIGKILL."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

# pid -> start time (clock ticks since boot): a process, not just a number the kernel may reuse.
Procs = dict[int, int]


def _stat(pid: int) -> list[str] | None:
    """The fields of /proc/PID/stat after the command name (state first); None if gone."""
    if pid <= 0:
        return None
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def all_pids() -> list[int]:
    """Every process on the host now."""
    return [int(entry) for entry in os.listdir("/proc") if entry.isdigit()]


def proc_start(pid: int) -> int | None:
    """Start time (clock ticks since boot) of pid; None if gone. Guards against pid reuse."""
    fields = _stat(pid)
    return int(fields[19]) if fields and len(fields) > 19 else None


def parent(pid: int) -> int | None:
    """The parent's pid; None if gone."""
    fields = _stat(pid)
    return int(fields[1]) if fields and len(fields) > 1 else None


def is_zombie(pid: int) -> bool:
    """Exited but not reaped yet (or being torn down): as good as gone."""
    fields = _stat(pid)
    return fields is not None and fields[:1] in (["Z"], ["X"])


def exe(pid: int) -> str | None:
    """The path of its executable (readlink /proc/PID/exe); None if gone or not ours to read."""
    try:
        return os.readlink(f"/proc/{pid}/exe")
    except OSError:
        return None


def read(pid: int, name: str) -> bytes:
    """/proc/PID/NAME (cmdline, environ, ...); empty if gone or not ours to read."""
    try:
        return Path(f"/proc/{pid}/{name}").read_bytes()
    except OSError:
        return b""


def children(pid: int, name: str | None = None) -> list[int]:
    """pid's child processes now; with `name`, those whose command name (/proc/PID/comm) is that."""
    kids = [p for p in all_pids() if parent(p) == pid]
    return kids if name is None else [p for p in kids if read(p, "comm").decode().strip() == name]


def subtree(pid: int) -> list[int]:
    """pid and every process below it now, parents before their children."""
    out = [pid]
    for kid in children(pid):
        out += subtree(kid)
    return out


def snapshot(pids: Iterable[int]) -> Procs:
    """Of `pids`, those running now (zombies excluded), with their start times."""
    found: Procs = {}
    for pid in pids:
        start = proc_start(pid)
        if start is not None and not is_zombie(pid):
            found[pid] = start
    return found


def running(procs: Mapping[int, int]) -> Procs:
    """Of `procs`, those still running: same pid and start time, not a zombie."""
    return {p: s for p, s in procs.items() if proc_start(p) == s and not is_zombie(p)}


def wait_gone(procs: Mapping[int, int], seconds: float, poll: float = 0.1) -> Procs:
    """Wait up to `seconds` until none of `procs` runs; those still running then."""
    deadline = time.monotonic() + seconds
    alive = running(procs)
    while alive and time.monotonic() < deadline:
        time.sleep(poll)
        alive = running(alive)
    return alive


def send(procs: Mapping[int, int], sig: signal.Signals) -> None:
    """`sig` to each of `procs` that is still that process (one that is gone or not ours is skipped)."""
    for pid in running(procs):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


def stop(
    find: Callable[[], Mapping[int, int]],
    *,
    term_wait: float,
    kill_wait: float,
    before_kill: Callable[[Procs], None] | None = None,
) -> Procs:
    """SIGTERM what `find()` returns and wait up to `term_wait` s; then SIGKILL what `find()` returns still
    running and wait up to `kill_wait` s. `find` is asked again before each signal, so processes started
    in between are caught; `before_kill` sees who gets SIGKILL. Returns those that survived even that."""
    left: Procs = {}
    for sig, wait in ((signal.SIGTERM, term_wait), (signal.SIGKILL, kill_wait)):
        victims = running(find())
        if not victims:
            return {}
        if sig == signal.SIGKILL and before_kill is not None:
            before_kill(victims)
        send(victims, sig)
        left = wait_gone(victims, wait)
    return left
