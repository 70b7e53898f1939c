"""Finding and stopping the processes of one pool through /proc (never by process name)."""

from __future__ import annotations

import logging
import os
import signal

from proctools import pids
from proctools.pids import Procs

log = logging.getLogger(__name__)


def descendants(pid: int, marker: bytes, prefix: str | None) -> Procs:
    """Processes below pid (by ppid), carrying its _CONDOR_ANCESTOR_ marker, or running a binary of ours."""
    parents: dict[int, int] = {}
    for p in pids.all_pids():
        ppid = pids.parent(p)
        if ppid is not None:
            parents[p] = ppid
    found: list[int] = []
    for p in parents:
        if p == pid or p == os.getpid():
            continue
        q, hops = p, 0
        while q > 1 and hops < 64:
            q, hops = parents.get(q, 0), hops + 1
            if q == pid:
                break
        hit = q == pid or marker in pids.read(p, "environ")
        if not hit and prefix:
            hit = (pids.exe(p) or "").startswith(prefix + os.sep)
        if hit:
            found.append(p)
    return pids.snapshot(found)


def stop_pid(pid: int, *, quiet: bool, prefix: str | None, timeout: float) -> None:
    """SIGTERM the master (graceful: it stops daemons and jobs), SIGKILL survivors, reap orphans.

    `timeout` bounds the graceful shutdown; `prefix` (a relocated install's root) also catches strays by
    executable.
    """
    marker = f"_CONDOR_ANCESTOR_{pid}=".encode()
    family = descendants(pid, marker, prefix)
    master = pids.snapshot([pid])
    family.update(master)
    pids.send(master, signal.SIGTERM)
    pids.wait_gone(master, timeout)

    def find() -> Procs:
        # Anything from the snapshot (same pid and start time) or carrying the master's ancestry marker.
        family.update(descendants(pid, marker, prefix))
        return family

    def before_kill(victims: Procs) -> None:
        if pid in victims and not quiet:
            log.info("condor_master %d ignored SIGTERM; killing it", pid)

    pids.stop(find, term_wait=3, kill_wait=3, before_kill=before_kill)
