"""What HTCondor's job event logs in ``<sweep>/.htcondor/`` say about each job: where it ran, how often it
started, how often it was evicted, how long it waited, and a timeline of its states.

The launcher writes one event log per batch (``batch-FIRST-LAST.log``; the launcher's ``_layout`` names
every file of a sweep folder), whose procs are the batch's jobs in
order (proc ``p`` is job ``FIRST + p``). Read with ``htcondor2.JobEventLog``, which needs no pool.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hydra_plugins.hydra_htcondor_launcher._layout import SweepLayout

log = logging.getLogger(__name__)

# Timeline states, in the order the report's legend shows them.
WAITING, RUNNING, HELD, EVICTED, DONE, FAILED = "waiting", "running", "held", "evicted", "done", "failed"
# HTCondor lost touch with the job's machine and waits for it (the job's lease) before it requeues the job.
DISCONNECTED = "disconnected"


@dataclass
class CondorJob:
    """One sweep job as its batch's event log tells it."""

    num: int
    cluster: int | None = None
    proc: int | None = None
    host: str | None = None
    attempts: int = 0
    evictions: int = 0
    holds: int = 0
    submitted: float | None = None
    first_start: float | None = None
    ended: float | None = None
    exit_code: int | None = None
    signal: int | None = None
    end_reason: str | None = None  # hold or abort reason, when the job did not terminate by itself
    # (state, start, end) in epoch seconds; the last segment of an unfinished job ends at None.
    segments: list[tuple[str, float, float | None]] = field(default_factory=list)
    _state: str = WAITING
    _since: float | None = None
    _just_evicted: bool = False

    @property
    def queue_wait_s(self) -> float | None:
        if self.submitted is None or self.first_start is None:
            return None
        return self.first_start - self.submitted

    @property
    def finished(self) -> bool:
        return self.ended is not None

    @property
    def disconnected(self) -> bool:
        """Its log ends with HTCondor waiting for the job's lost machine."""
        return not self.finished and self._state == DISCONNECTED

    def _enter(self, state: str, when: float) -> None:
        if self._since is not None:
            self.segments.append((self._state, self._since, when))
        self._state, self._since = state, when

    def _finish(self, state: str, when: float) -> None:
        self._enter(state, when)
        self.segments.append((state, when, when))  # a marker: zero length
        self._since = None
        self.ended = when

    def close_open_segment(self) -> None:
        """An unfinished job: its current state lasts until now (drawn to the end of the timeline)."""
        if self._since is not None:
            self.segments.append((self._state, self._since, None))
            self._since = None


def batch_logs(sweep_dir: Path) -> list[tuple[int, Path]]:
    """(first job number, path) of each batch event log of the sweep, in job order."""
    return [(first, Path(path)) for first, _, path in SweepLayout(str(sweep_dir)).batch_logs()]


def _host(event: Any) -> str | None:
    slot = event.get("SlotName")
    if slot:
        return str(slot)
    sinful = str(event.get("ExecuteHost") or "").strip("<>")
    alias = re.search(r"alias=([^&>]+)", sinful)
    return alias.group(1) if alias else (sinful.split("?")[0] or None)


def read_event_logs(sweep_dir: Path) -> dict[int, CondorJob]:
    """Every job found in the sweep's event logs, by job number; empty when the sweep did not use HTCondor."""
    logs = batch_logs(sweep_dir)
    if not logs:
        return {}
    unset = "CONDOR_CONFIG" not in os.environ
    import htcondor2

    if unset:
        # Importing htcondor2 without a config sets CONDOR_CONFIG=/dev/null in this process; reading a log
        # needs no pool, and later code (or subprocesses) looking for a pool must not inherit that.
        os.environ.pop("CONDOR_CONFIG", None)

    jobs: dict[int, CondorJob] = {}
    for first, path in logs:
        cluster: int | None = None
        try:
            events = list(htcondor2.JobEventLog(str(path)).events(stop_after=0))
        except Exception as exc:  # a torn or foreign file: report without it, say why once
            log.warning("cannot read HTCondor event log %s: %s", path, exc)
            continue
        for event in events:
            if cluster is None:
                cluster = event.cluster
            if event.cluster != cluster or event.proc < 0:
                continue
            num = first + event.proc
            job = jobs.setdefault(num, CondorJob(num=num, cluster=event.cluster, proc=event.proc))
            _apply(job, event, htcondor2.JobEventType)
    for job in jobs.values():
        job.close_open_segment()
    return jobs


def _apply(job: CondorJob, event: Any, types: Any) -> None:
    when = float(event.timestamp)
    kind = event.type
    just_evicted = job._just_evicted
    if kind in (types.EXECUTE, types.JOB_HELD, types.JOB_RELEASED):  # the job went on after the eviction
        job._just_evicted = False
    if kind == types.SUBMIT:
        job.submitted = when
        job._enter(WAITING, when)
    elif kind == types.EXECUTE:
        job.attempts += 1
        job.host = _host(event) or job.host
        if job.first_start is None:
            job.first_start = when
        job._enter(RUNNING, when)
    elif kind == types.JOB_EVICTED:
        job.evictions += 1
        job._just_evicted = True
        job._enter(EVICTED, when)
        job._enter(WAITING, when)
    elif kind == types.JOB_HELD:
        job.holds += 1
        job.end_reason = str(event.get("HoldReason") or "held")
        job._enter(HELD, when)
    elif kind == types.JOB_RELEASED:
        job._enter(WAITING, when)
    elif kind == types.JOB_DISCONNECTED:
        job._enter(WAITING if event.get("NoReconnectReason") else DISCONNECTED, when)
    elif kind == types.JOB_RECONNECTED:
        job._enter(RUNNING, when)
    elif kind == types.JOB_RECONNECT_FAILED:  # requeued; HTCondor logs the eviction next
        job._enter(WAITING, when)
    elif kind == types.JOB_TERMINATED:
        if event.get("TerminatedNormally", True):
            job.exit_code = int(event.get("ReturnValue", 0))
        else:
            job.signal = int(event.get("TerminatedBySignal", 0))
        job._finish(DONE if job.exit_code == 0 else FAILED, when)
    elif kind == types.JOB_ABORTED:
        if just_evicted:  # condor_rm of a running job logs an eviction first: that was the removal
            job.evictions -= 1
        removed = f"removed ({event.get('Reason') or 'no reason given'})"
        # A hold is usually why a job was removed: keep both.
        job.end_reason = f"{removed} after being held: {job.end_reason}" if job.holds else removed
        job._finish(FAILED, when)
