"""Waiting for one cluster: read its job event log (not the schedd) until every job has ended, release or
remove held jobs, remove what is left at the deadline or on Ctrl-C, log the job-status table."""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from . import _jobstate, _reports, _schedd
from ._jobstate import JobRecord, JobState
from ._schedd import LOST
from ._status import MAX_ROWS, clock_time, status_table
from .config import OnInterrupt

if TYPE_CHECKING:
    from ._batch import Batch
    from ._settings import Settings

log = logging.getLogger(__name__)
# The event-log view is cross-checked with the schedd (queue, then history) every this many status intervals.
CROSSCHECK_EVERY = 2
# on_change (the manifest, rewritten whole) at most this often: a big sweep changes state at nearly every
# poll. What resuming relies on is in HTCondor and the result files; the manifest may lag by this much.
SAVE_GAP_S = 2.0
SAVE_SHARE = 100
# An event log that stays unreadable (missing, replaced, failing to open or parse) this long fails its batch:
# its jobs come back FAILED and are removed, instead of being waited for until the deadline. Long enough for
# a shared filesystem's hiccup.
EVENT_LOG_GRACE_S = 180.0


@dataclass(frozen=True)
class WatchPolicy:
    """How a watcher follows its cluster: what the batch's settings say (``of``), and the pacing a test
    may shorten."""

    max_releases: int  # releases of a held job before it is removed
    poll_interval: float  # seconds between reads of the event log
    status_interval: float  # seconds between live tables
    timeout_s: float  # the batch's deadline
    max_rows: int | None = MAX_ROWS  # of the live table
    change_gap_s: float = 5.0  # a table on a change at most this often
    save_gap_s: float = SAVE_GAP_S  # on_change at most this often
    crosscheck_every: int = CROSSCHECK_EVERY  # status intervals between lost-job cross-checks
    log_grace_s: float = EVENT_LOG_GRACE_S  # an unreadable event log fails its batch after this long

    @classmethod
    def of(cls, settings: Settings, *, max_releases: int) -> WatchPolicy:
        return cls(
            max_releases=max_releases,
            poll_interval=settings.poll_interval,
            status_interval=settings.status_interval,
            timeout_s=settings.timeout_s,
        )


class ClusterWatcher:
    """Feeds the cluster's events to its JobRecords (keyed by proc) and acts on the schedd where needed."""

    def __init__(
        self,
        htcondor: Any,
        schedd: Any,
        cluster: int,
        log_file: str,
        records: Mapping[int, JobRecord],
        policy: WatchPolicy,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        on_change: Callable[[], None] | None = None,
        reconnect: Callable[[], Any] | None = None,
        sweep_id: str | None = None,
        reports: _reports.ReportFiles | None = None,
    ) -> None:
        self.htcondor = htcondor
        self.schedd = schedd
        self.cluster = cluster
        self.log_file = log_file
        self.records = records
        self.policy = policy
        self.clock = clock
        self.wall_clock = wall_clock
        self.on_change = on_change
        self.reconnect = reconnect
        self.sweep_id = sweep_id
        self.reports = reports  # the jobs' report files (shared filesystem); else reports are events
        self._events: Any = None
        self._log_id: tuple[int, int] | None = None  # (device, inode) of the file the reader opened
        self._unreadable_since: float | None = None

    # -- schedd actions ------------------------------------------------------------------------
    def _act(self, action: str, job_spec: str | list[str]) -> None:
        try:
            self.schedd.act(getattr(self.htcondor.JobAction, action), job_spec)
        except Exception as exc:
            log.warning("HTCondor %s of %s failed: %s", action.lower(), job_spec, exc)

    def remove_unfinished(self, reason: str) -> list[int]:
        """Remove every job that has not ended; returns their job numbers."""
        pending = [rec for rec in self.records.values() if not rec.final]
        if pending:
            if len(pending) == len(self.records):
                self._act("Remove", f"ClusterId == {self.cluster}")
            else:
                self._act("Remove", [f"{self.cluster}.{rec.proc}" for rec in pending])
            for rec in pending:
                _jobstate.remove_requested(rec, reason)
        return [rec.num for rec in pending]

    def _on_hold(self, rec: JobRecord) -> None:
        """Release a held job up to max_releases times, then remove it."""
        job = f"{self.cluster}.{rec.proc}"
        if rec.releases < self.policy.max_releases:
            _jobstate.release_requested(rec)
            log.warning(
                "job #%d (HTCondor %s) held: %s -- releasing it (%d of %d)",
                rec.num,
                job,
                rec.hold_reason,
                rec.releases,
                self.policy.max_releases,
            )
            self._act("Release", job)
        else:
            log.error("job #%d (HTCondor %s) held: %s -- removing it", rec.num, job, rec.hold_reason)
            _jobstate.held_removal_requested(rec)
            self._act("Remove", job)

    def crosscheck(self) -> list[int]:
        """Fail the unfinished jobs that the schedd knows in neither its queue nor its history (a wiped
        queue, a condor_rm -forcex): their event log will never say more. Returns their job numbers; an
        unreachable schedd fails nothing."""
        pending = {rec.proc: rec for rec in self.records.values() if not rec.final}
        if not pending:
            return []
        try:
            known = _schedd.known_procs(self.schedd, self.cluster, pending, self.sweep_id)
        except Exception as exc:
            if self.reconnect is None:
                log.debug("HTCondor cluster %d: cross-check with the schedd failed: %s", self.cluster, exc)
                return []
            try:  # a restarted schedd has a new address: locate it again
                self.schedd = self.reconnect()
                known = _schedd.known_procs(self.schedd, self.cluster, pending, self.sweep_id)
            except Exception as again:
                log.debug("HTCondor cluster %d: cross-check with the schedd failed: %s", self.cluster, again)
                return []
        if not set(pending) - known:
            return []
        self.poll()  # an event written since the query may have ended a job the normal way
        lost = [pending[p] for p in sorted(set(pending) - known) if not pending[p].final]
        for rec in lost:
            _jobstate.lost(rec, LOST)
            log.error("job #%d (HTCondor %d.%d): %s; it failed", rec.num, self.cluster, rec.proc, LOST)
        return [rec.num for rec in lost]

    # -- reading the event log -----------------------------------------------------------------
    def _handle(self, event: Any) -> None:
        if event.cluster != self.cluster or event.proc not in self.records:
            return
        rec = self.records[event.proc]
        # The event's own time (the bindings' JobEvent.timestamp), not when this poll happened to read it.
        stamp = getattr(event, "timestamp", None)
        ts = float(stamp) if stamp is not None else self.wall_clock()
        name = event.type.name
        if not _jobstate.apply(rec, name, event, ts):
            return
        if name == "JOB_HELD":
            self._on_hold(rec)
        elif name in ("JOB_DISCONNECTED", "JOB_RECONNECTED", "JOB_RECONNECT_FAILED"):
            self._log_connection(rec, name, event)

    def _log_connection(self, rec: JobRecord, name: str, event: Any) -> None:
        """Say at once what HTCondor does about a job whose machine it lost touch with."""
        job = f"job #{rec.num} (HTCondor {self.cluster}.{rec.proc})"
        if name == "JOB_RECONNECTED":
            log.info("%s: reconnected to %s, running on", job, rec.host)
            return
        reason = event.get("DisconnectReason") or event.get("Reason") or event.get("NoReconnectReason")
        if rec.state is JobState.DISCONNECTED:
            until = rec.disconnected_until
            log.warning(
                "%s: disconnected from %s (%s); HTCondor waits %s for it, then requeues the job "
                "(hydra.launcher.job_lease_minutes)",
                job,
                rec.host,
                reason or "no reason given",
                "for the job's lease" if until is None else f"until {clock_time(until)}",
            )
        else:
            log.warning("%s: HTCondor gave up on its run on %s (%s); it is back in the queue", job, rec.host,
                        reason or "no reason given")

    def poll(self) -> None:
        """Handle every event written since the last call (never blocks). An event log that cannot be read
        is tried again at every poll (a warning the first time); unreadable for log_grace_s, it fails the
        batch."""
        problem = self._read_events()
        if self.reports is not None:
            self.reports.poll(self.records)
        if problem is None:
            self._unreadable_since = None
            return
        now = self.clock()
        if self._unreadable_since is None:
            self._unreadable_since = now
            log.warning(
                "HTCondor cluster %d: cannot read its event log %s: %s; trying again for up to %g s",
                self.cluster,
                self.log_file,
                problem,
                self.policy.log_grace_s,
            )
        elif now - self._unreadable_since >= self.policy.log_grace_s:
            self._fail_unreadable(problem)

    def _read_events(self) -> str | None:
        """Feed the events written since the last call; None, or why the log could not be read."""
        try:
            st = os.stat(self.log_file)
        except OSError as exc:
            return exc.strerror or str(exc)
        if self._events is not None and (st.st_dev, st.st_ino) != self._log_id:
            # Deleted and written anew by HTCondor: the reader follows the old file, the new one lacks the
            # events before.
            return "the file was replaced since the launcher opened it"
        try:
            if self._events is None:
                self._events = self.htcondor.JobEventLog(self.log_file)
                self._log_id = (st.st_dev, st.st_ino)
            events = iter(self._events.events(stop_after=0))
        except Exception as exc:
            return f"{type(exc).__name__}: {' '.join(str(exc).split())}"
        while True:
            try:
                event = next(events)
            except StopIteration:
                return None
            except Exception as exc:  # a damaged event: the reader stays where it was
                return f"{type(exc).__name__}: {' '.join(str(exc).split())}"
            self._handle(event)

    def _fail_unreadable(self, problem: str) -> None:
        """Fail and remove the unfinished jobs: the launcher cannot follow them, and left in the pool they
        would run unseen while their results are reported FAILED (a re-run re-attaches to live jobs: it
        would meet the same log). Results already written stay and are reused by a re-run."""
        grace = self.policy.log_grace_s
        reason = f"its event log {self.log_file} stayed unreadable for {grace:g} s: {problem}"
        nums = self.remove_unfinished(reason)
        for rec in self.records.values():
            _jobstate.given_up(rec)  # no abort event can be read from that log
        log.error("HTCondor cluster %d: %s; removed jobs %s", self.cluster, reason, nums)

    # -- waiting -------------------------------------------------------------------------------
    def table(self, elapsed: float) -> str:
        rows = self.policy.max_rows
        return status_table(self.cluster, self.records, elapsed, self.wall_clock(), max_rows=rows)

    def _snapshot(self) -> tuple[tuple[JobState, int], ...]:
        # A hold that was released between two polls changes no state, but still deserves a table.
        return tuple((rec.state, rec.holds) for rec in self.records.values())

    def wait(self) -> Mapping[int, JobRecord]:
        """Block until every job ended or the deadline passed (then the rest is removed)."""
        start = self.clock()
        deadline = start + self.policy.timeout_s
        last_seen: tuple[tuple[JobState, int], ...] | None = None
        last_log = -math.inf  # the first poll logs the table: the user sees the jobs at once
        last_check = start
        last_saved: tuple[tuple[JobState, int], ...] | None = None
        last_save = -math.inf
        save_gap = self.policy.save_gap_s
        while True:
            self.poll()
            now = self.clock()
            if now - last_check >= self.policy.crosscheck_every * self.policy.status_interval:
                self.crosscheck()
                last_check = now
            seen = self._snapshot()
            done = all(rec.final for rec in self.records.values())
            due = done or now - last_save >= save_gap
            if seen != last_saved and self.on_change is not None and due:
                tic = time.perf_counter()
                self.on_change()
                # A big sweep's manifest costs more to rewrite: space the saves so that they take at most
                # 1/SAVE_SHARE of the waiting time.
                save_gap = max(self.policy.save_gap_s, SAVE_SHARE * (time.perf_counter() - tic))
                last_saved, last_save = seen, now
            if done:
                log.info("%s", self.table(now - start))
                return self.records
            # On a change at most every change_gap_s (a wave of starts or ends makes one table, and a long
            # sweep's log stays readable), else every status_interval.
            gap = min(self.policy.change_gap_s, self.policy.status_interval)
            if (seen != last_seen and now - last_log >= gap) or now - last_log >= self.policy.status_interval:
                log.info("%s", self.table(now - start))
                last_seen, last_log = seen, now
            if now >= deadline:
                nums = self.remove_unfinished(f"deadline of {self.policy.timeout_s / 60:g} min passed")
                for rec in self.records.values():
                    if rec.num in nums:
                        _jobstate.timed_out(rec)
                log.error(
                    "HTCondor cluster %d: deadline (timeout_min=%g) passed, removed jobs %s",
                    self.cluster,
                    self.policy.timeout_s / 60,
                    nums,
                )
                self._drain(grace_s=10.0)
                for rec in self.records.values():
                    _jobstate.given_up(rec)
                return self.records
            time.sleep(self.policy.poll_interval)

    def _drain(self, grace_s: float) -> None:
        """After removing jobs, read their abort events for a short while so the log is complete."""
        end = self.clock() + grace_s
        while self.clock() < end and not all(rec.final for rec in self.records.values()):
            self.poll()
            time.sleep(self.policy.poll_interval)


def _watcher_of(
    batch: Batch, htcondor: Any, schedd: Any, *, max_releases: int, **extra: Any
) -> ClusterWatcher:
    """The watcher of a submitted batch, with the batch's own polling, table and deadline settings."""
    assert batch.cluster is not None
    policy = WatchPolicy.of(batch.settings, max_releases=max_releases)
    if not batch.settings.transfer_files:
        extra.setdefault("reports", _reports.ReportFiles(batch.layout))
    return ClusterWatcher(htcondor, schedd, batch.cluster, batch.log_file, batch.records, policy, **extra)


def remove_batch(batch: Batch, htcondor: Any, schedd: Any, reason: str) -> None:
    """Remove a batch's unfinished jobs without following it (Ctrl-C before its turn came)."""
    watcher = _watcher_of(batch, htcondor, schedd, max_releases=0)
    removed = watcher.remove_unfinished(reason)
    log.error("Interrupted: removed HTCondor cluster %d (jobs %s)", batch.cluster, removed)


def watch(
    batch: Batch,
    htcondor: Any,
    schedd: Any,
    on_change: Callable[[], None] | None = None,
    resume_hint: str = "",
    reconnect: Callable[[], Any] | None = None,
    sweep_id: str | None = None,
) -> None:
    """Wait for the submitted batch; its records end final. On Ctrl-C the unfinished jobs are removed from
    the pool (on_interrupt=remove) or left running (keep: `resume_hint` says how to re-attach), the user is
    told, and the interrupt propagates. `on_change` is called when a job's state changed, at most every
    SAVE_GAP_S seconds and once at the end (the manifest); `reconnect` locates the schedd again for the
    lost-job cross-check (a restarted one moved)."""
    watcher = _watcher_of(
        batch, htcondor, schedd, max_releases=batch.settings.max_releases, on_change=on_change,
        reconnect=reconnect, sweep_id=sweep_id,
    )
    try:
        watcher.wait()
    except KeyboardInterrupt:
        if batch.settings.on_interrupt == OnInterrupt.keep:
            log.warning(
                "Interrupted: HTCondor cluster %d keeps running (on_interrupt=keep); %s",
                batch.cluster,
                resume_hint or f"re-run the same command with hydra.sweep.dir={batch.sweep_dir} to re-attach",
            )
            raise
        removed = watcher.remove_unfinished("interrupted (Ctrl-C)")
        log.error(
            "Interrupted: removed HTCondor cluster %d (jobs %s still queued or running); finished jobs' "
            "results and logs stay in %s",
            batch.cluster,
            removed,
            batch.sweep_dir,
        )
        raise
