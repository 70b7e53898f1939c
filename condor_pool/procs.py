"""Finding and stopping the processes of one pool through /proc (never by process name)."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import time
from pathlib import Path

log = logging.getLogger(__name__)


def proc_start(pid: int) -> int | None:
    """Start time (clock ticks since boot) of pid; None if gone. Guards against pid reuse."""
    if pid <= 0:
        return None
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[19])


def is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except OSError:
        return False


def descendants(pid: int, marker: bytes, prefix: str | None) -> dict[int, int]:
    """Processes below pid (by ppid), carrying its _CONDOR_ANCESTOR_ marker, or running a binary of ours."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                stat = Path(f"/proc/{entry}/stat").read_text()
                parents[int(entry)] = int(stat.rsplit(")", 1)[1].split()[1])
    found: dict[int, int] = {}
    for p in parents:
        if p == pid or p == os.getpid():
            continue
        q, hops = p, 0
        while q > 1 and hops < 64:
            q, hops = parents.get(q, 0), hops + 1
            if q == pid:
                break
        hit = q == pid
        if not hit:
            with contextlib.suppress(OSError):
                hit = marker in Path(f"/proc/{p}/environ").read_bytes()
        if not hit and prefix:
            with contextlib.suppress(OSError):
                hit = os.readlink(f"/proc/{p}/exe").startswith(prefix + os.sep)
        if hit:
            s = proc_start(p)
            if s is not None:
                found[p] = s
    return found


def stop_pid(pid: int, *, quiet: bool, prefix: str | None, timeout: float) -> None:
    """SIGTERM the master (graceful: it stops daemons and jobs), SIGKILL survivors, reap orphans.

    `timeout` bounds the graceful shutdown; `prefix` (a relocated install's root) also catches strays by
    executable.
    """
    marker = f"_CONDOR_ANCESTOR_{pid}=".encode()
    family = descendants(pid, marker, prefix)
    start = proc_start(pid)
    if start is not None:
        family[pid] = start
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and proc_start(pid) is not None and not is_zombie(pid):
            time.sleep(0.1)
    # Anything from the snapshot (same pid and start time) or carrying the master's ancestry marker.
    for sig in (signal.SIGTERM, signal.SIGKILL):
        family.update(descendants(pid, marker, prefix))
        victims = {p: s for p, s in family.items() if proc_start(p) == s and not is_zombie(p)}
        if not victims:
            return
        if sig == signal.SIGKILL and pid in victims and not quiet:
            log.info("condor_master %d ignored SIGTERM; killing it", pid)
        for p in victims:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(p, sig)
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline and any(
                proc_start(p) == s and not is_zombie(p) for p, s in victims.items()):
            time.sleep(0.1)
