"""Following a sweep's clusters together: each one's job event log (not the schedd) is read by its
``ClusterWatcher``, which releases or removes held jobs; the ``Follower`` polls them all at once, cross-checks
lost jobs, removes what is left of a cluster at its deadline or on Ctrl-C, paces the manifest's saves and logs
one live job-status table for them all (``_sweep.SweepEngine`` drives it)."""

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
    """How the clusters of a sweep are followed (their watchers and the Follower): what the settings say
    (``of``), and the pacing a test may shorten."""

    max_releases: int  # releases of a held job before it is removed
    poll_interval: float  # seconds between reads of the event log
    status_interval: float  # seconds between live tables
    timeout_s: float  # each cluster's deadline, from when it is followed
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
        reconnect: Callable[[], Any] | None = None,
        sweep_id: str | None = None,
        whole_cluster: bool = True,
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
        self.reconnect = reconnect
        self.sweep_id = sweep_id
        # The records are every job of the cluster (a submitted batch), not some of them (jobs re-attached
        # one by one): only then may a removal of all of them name the cluster.
        self.whole_cluster = whole_cluster
        self.reports = reports  # the jobs' report files (shared filesystem); else reports are events
        self._events: Any = None
        self._log_id: tuple[int, int] | None = None  # (device, inode) of the file the reader opened
        self._unreadable_since: float | None = None

    # -- schedd actions ------------------------------------------------------------------------
    def _act(self, action: str, job_spec: str | list[str], reason: str | None = None) -> None:
        try:
            # The reason reaches the job's ad (RemoveReason) and its event log's abort event: condor_q,
            # condor_history and the pool's admins see why, not "Python-initiated action". As a (text,
            # code) pair: htcondor2 25.14's act() drops a plain str reason (the sweeper's pool pruning test
            # checks RemoveReason, so a change there fails loudly).
            why = None if reason is None else (reason, None)
            self.schedd.act(getattr(self.htcondor.JobAction, action), job_spec, reason=why)
        except Exception as exc:
            log.warning("HTCondor %s of %s failed: %s", action.lower(), job_spec, exc)

    def remove_unfinished(self, reason: str) -> list[int]:
        """Remove every job that has not ended; returns their job numbers."""
        return self.remove([rec for rec in self.records.values() if not rec.final], reason)

    def remove(self, recs: list[JobRecord], reason: str) -> list[int]:
        """Remove these jobs of the cluster (their abort events end them, REMOVED with `reason`); returns
        their job numbers."""
        if recs:
            if self.whole_cluster and len(recs) == len(self.records):
                self._act("Remove", f"ClusterId == {self.cluster}", reason)
            else:
                self._act("Remove", [f"{self.cluster}.{rec.proc}" for rec in recs], reason)
            for rec in recs:
                _jobstate.remove_requested(rec, reason)
        return [rec.num for rec in recs]

    @property
    def done(self) -> bool:
        return all(rec.final for rec in self.records.values())

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
            log.warning(
                "%s: HTCondor gave up on its run on %s (%s); it is back in the queue",
                job,
                rec.host,
                reason or "no reason given",
            )

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

    def close(self) -> None:
        """Let go of the event log (a sweep of many clusters would otherwise keep one file open each)."""
        self._events = None


# After removing a cluster's jobs at its deadline, their abort events are awaited this long.
DRAIN_S = 10.0


class Follower:
    """Follows the clusters of one sweep together: one poll reads every event log in flight, one table shows
    every job. A cluster's deadline (policy.timeout_s) counts from when it was added."""

    def __init__(
        self,
        policy: WatchPolicy,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        on_change: Callable[[], None] | None = None,
    ) -> None:
        self.policy = policy
        self.clock = clock
        self.wall_clock = wall_clock
        self.on_change = on_change
        self.watchers: list[ClusterWatcher] = []
        self._in_flight: list[ClusterWatcher] = []
        self._deadline: dict[int, float] = {}  # by id(watcher)
        self._draining: dict[int, float] = {}  # by id(watcher): when to stop awaiting the abort events
        self.start: float | None = None
        self.now = 0.0
        self._last_check = 0.0
        self._last_saved: tuple[tuple[JobState, int], ...] | None = None
        self._last_save = -math.inf
        self._save_gap = policy.save_gap_s
        self._last_seen: tuple[tuple[JobState, int], ...] | None = None
        self._last_log = -math.inf  # the first table is logged at once: the user sees the jobs

    def add(self, watcher: ClusterWatcher) -> None:
        now = self.clock()
        if self.start is None:
            self.start = self._last_check = now
        self.watchers.append(watcher)
        self._in_flight.append(watcher)
        self._deadline[id(watcher)] = now + self.policy.timeout_s

    def records(self) -> list[JobRecord]:
        return [rec for w in self.watchers for rec in w.records.values()]

    def _snapshot(self) -> tuple[tuple[JobState, int], ...]:
        # A hold that was released between two polls changes no state, but still deserves a table.
        return tuple((rec.state, rec.holds) for rec in self.records())

    def poll(self) -> None:
        """Read every cluster in flight once (never blocks), then act: cross-check, deadlines, save."""
        for watcher in self._in_flight:
            watcher.poll()
        now = self.now = self.clock()
        if now - self._last_check >= self.policy.crosscheck_every * self.policy.status_interval:
            for watcher in self._in_flight:
                watcher.crosscheck()
            self._last_check = now
        for watcher in self._in_flight:
            self._enforce_deadline(watcher, now)
        for watcher in [w for w in self._in_flight if w.done]:
            self._in_flight.remove(watcher)
            watcher.close()
        self._save(now)

    def _enforce_deadline(self, watcher: ClusterWatcher, now: float) -> None:
        key = id(watcher)
        if key in self._draining:
            if now >= self._draining[key]:  # the abort events did not all come: stop waiting for them
                for rec in watcher.records.values():
                    _jobstate.given_up(rec)
            return
        if now < self._deadline[key] or watcher.done:
            return
        nums = watcher.remove_unfinished(f"deadline of {self.policy.timeout_s / 60:g} min passed")
        for rec in watcher.records.values():
            if rec.num in nums:
                _jobstate.timed_out(rec)
        log.error(
            "HTCondor cluster %d: deadline (timeout_min=%g) passed, removed jobs %s",
            watcher.cluster,
            self.policy.timeout_s / 60,
            nums,
        )
        # Their abort events follow: read for a short while so that the log is complete.
        self._draining[key] = now + DRAIN_S

    def flush(self) -> None:
        """on_change now if a job's state changed since the last one."""
        self._save(self.now, force=True)

    def _save(self, now: float, force: bool = False) -> None:
        """on_change when a job's state changed: at most every save_gap (a big sweep changes at nearly every
        poll), and at once when nothing is left in flight."""
        if self.on_change is None:
            return
        seen = self._snapshot()
        due = force or not self._in_flight or now - self._last_save >= self._save_gap
        if seen != self._last_saved and due:
            tic = time.perf_counter()
            self.on_change()
            # A big sweep's manifest costs more to rewrite: space the saves so that they take at most
            # 1/SAVE_SHARE of the waiting time.
            self._save_gap = max(self.policy.save_gap_s, SAVE_SHARE * (time.perf_counter() - tic))
            self._last_saved, self._last_save = seen, now

    @property
    def in_flight(self) -> bool:
        return bool(self._in_flight)

    # -- the live table ------------------------------------------------------------------------
    def table(self) -> str:
        """One table of every job followed; the counts line names the cluster, or the clusters."""
        clusters = sorted({w.cluster for w in self.watchers})
        title: int | str = (
            clusters[0]
            if len(clusters) == 1
            else (f"HTCondor clusters {', '.join(str(c) for c in clusters)}")
        )
        records = {i: rec for i, rec in enumerate(self.records())}
        elapsed = self.now - (self.start if self.start is not None else self.now)
        return status_table(title, records, elapsed, self.wall_clock(), max_rows=self.policy.max_rows)

    def show(self, final: bool = False) -> None:
        """Log the table when due: on a change at most every change_gap_s (a wave of starts or ends makes one
        table, and a long sweep's log stays readable), else every status_interval; always when `final`."""
        if not self.watchers:  # every job's result was known without following it
            return
        seen = self._snapshot()
        since = self.now - self._last_log
        gap = min(self.policy.change_gap_s, self.policy.status_interval)
        if final or (seen != self._last_seen and since >= gap) or since >= self.policy.status_interval:
            log.info("%s", self.table())
            self._last_seen, self._last_log = seen, self.now

    def wait(self, until: Callable[[], bool], poll: Callable[[], object] | None = None) -> None:
        """Poll (`poll`, by default this follower's own) and log tables until until() is true."""
        while True:
            (poll or self.poll)()
            if until():
                self.show(final=True)
                return
            self.show()
            time.sleep(self.policy.poll_interval)

    def interrupted(self, on_interrupt: OnInterrupt, resume_hint: str, sweep_dir: str) -> None:
        """Ctrl-C while waiting: remove the unfinished jobs (on_interrupt=remove), or leave them running and
        say how to re-attach (keep)."""
        in_flight = [w for w in self.watchers if not w.done]
        if on_interrupt == OnInterrupt.keep:
            clusters = ", ".join(str(w.cluster) for w in in_flight)
            log.warning(
                "Interrupted: HTCondor cluster %s keeps running (on_interrupt=keep); %s",
                clusters,
                resume_hint or f"re-run the same command with hydra.sweep.dir={sweep_dir} to re-attach",
            )
            return
        for watcher in in_flight:
            removed = watcher.remove_unfinished("interrupted (Ctrl-C)")
            log.error(
                "Interrupted: removed HTCondor cluster %d (jobs %s still queued or running); finished jobs' "
                "results and logs stay in %s",
                watcher.cluster,
                removed,
                sweep_dir,
            )
