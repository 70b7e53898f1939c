"""The sweep reader behind the public ``view`` module (which see): the manifest's jobs, each submission's
events replayed through ``_jobstate.apply``, the timeline. Imported only when a sweep is read.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from . import _jobstate
from ._jobstate import JobRecord, JobState
from ._layout import JobPaths, SweepLayout
from ._manifest import Manifest, ManifestError, record_of


@dataclass
class Segment:
    """A stretch of time a submission spent in one state (epoch seconds). A final state is a segment of
    length 0 at the time the job ended; the current state of an unfinished job has no end (None)."""

    state: JobState
    start: float
    end: float | None = None
    # The slot a run was on (running or disconnected: the EXECUTE event's SlotName, as JobRecord.host
    # shows it); None in other states.
    slot: str | None = None


@dataclass
class Attempt:
    """One submission of a job: one HTCondor cluster.proc, followed through its event log."""

    cluster: int
    proc: int
    log: str | None  # its event log
    record: JobRecord
    submitted: float | None = None  # its SUBMIT event
    timeline: list[Segment] = field(default_factory=list)
    evicted_at: list[float] = field(default_factory=list)  # its evictions (not a removal's)
    events: int = 0  # events of its log taken into account

    @property
    def id(self) -> str:
        return f"{self.cluster}.{self.proc}"

    @property
    def started(self) -> float | None:
        """Its first run's start."""
        return next((seg.start for seg in self.timeline if seg.state is JobState.RUNNING), None)

    @property
    def ended(self) -> float | None:
        if not self.record.final or not self.timeline:
            return None
        return self.timeline[-1].start

    def running_s(self, now: float) -> float:
        """Time on a slot (running, or disconnected from it), unfinished runs up to `now`."""
        return sum(
            (now if seg.end is None else seg.end) - seg.start
            for seg in self.timeline
            if seg.state in _jobstate.ON_SLOT
        )


@dataclass
class JobView:
    """One job of the sweep (a Hydra job number) over all its submissions."""

    num: int
    overrides: list[str]
    # Every submission, oldest first ([] for a job never submitted).
    attempts: list[Attempt]
    # What the launcher knows of the job now: its latest submission's record (the manifest's where the
    # event log says nothing more); the status table's row.
    record: JobRecord
    paths: JobPaths
    # The return value as the launcher noted it when it collected the job (None: not collected).
    returned: str | None = None
    # Why this view may be incomplete (an event log missing or unreadable), one line each.
    notes: list[str] = field(default_factory=list)

    @property
    def state(self) -> JobState:
        return self.record.state

    @property
    def ids(self) -> list[str]:
        """HTCondor ids (cluster.proc) of every submission, oldest first."""
        return [attempt.id for attempt in self.attempts]

    @property
    def latest(self) -> Attempt | None:
        return self.attempts[-1] if self.attempts else None

    @property
    def host(self) -> str | None:
        return self.record.host

    @property
    def starts(self) -> int:
        """Runs started, over every submission."""
        return sum(attempt.record.starts for attempt in self.attempts)

    @property
    def evictions(self) -> int:
        return sum(len(attempt.evicted_at) for attempt in self.attempts)

    @property
    def submitted(self) -> float | None:
        """When the latest submission was queued."""
        return self.latest.submitted if self.latest else None

    @property
    def started(self) -> float | None:
        """When the latest submission first ran."""
        return self.latest.started if self.latest else None

    @property
    def ended(self) -> float | None:
        return self.latest.ended if self.latest else None

    @property
    def queue_wait_s(self) -> float | None:
        """How long the latest submission waited before its first run."""
        if self.submitted is None or self.started is None:
            return None
        return self.started - self.submitted

    def running_s(self, now: float | None = None) -> float:
        now = time.time() if now is None else now
        return sum(attempt.running_s(now) for attempt in self.attempts)

    @property
    def timeline(self) -> list[Segment]:
        """Every submission's segments, oldest first."""
        return [seg for attempt in self.attempts for seg in attempt.timeline]

    @property
    def evicted_at(self) -> list[float]:
        return [t for attempt in self.attempts for t in attempt.evicted_at]


@dataclass
class SweepView:
    """A sweep folder as read now."""

    sweep_dir: str
    htcondor_dir: str
    jobs: dict[int, JobView]  # by job number, in order
    sweep_id: str | None = None  # None: no readable manifest
    updated: float | None = None  # when the manifest was last saved
    # Sweep-wide: why the manifest could not be read (the jobs then come from the batch event logs).
    notes: list[str] = field(default_factory=list)

    @property
    def records(self) -> dict[int, JobRecord]:
        return {num: job.record for num, job in self.jobs.items()}

    def all_notes(self) -> list[str]:
        """The sweep's notes, then each distinct note of its jobs once (many jobs share one log)."""
        seen = dict.fromkeys(self.notes)
        for job in self.jobs.values():
            seen.update(dict.fromkeys(job.notes))
        return list(seen)


def read_sweep(sweep_dir: str) -> SweepView:
    """The sweep in `sweep_dir`: its manifest's jobs, brought up to date from their event logs. Never asks a
    schedd. A folder without a readable manifest gives the jobs its batch event logs name (see view_of)."""
    sweep_dir = os.path.abspath(sweep_dir)
    try:
        manifest = Manifest.load(sweep_dir)
    except ManifestError as exc:
        return _from_logs(SweepLayout(sweep_dir), str(exc))
    return view_of(relocated(manifest, sweep_dir))


def relocated(manifest: Manifest, sweep_dir: str) -> Manifest:
    """The manifest of a sweep folder read at `sweep_dir` (a copy, or a folder moved since), its paths under
    the folder it was written in moved there (in memory: the file is not rewritten)."""
    old = manifest.sweep_dir.rstrip(os.sep)
    new = os.path.abspath(sweep_dir).rstrip(os.sep)
    if old == new:
        return manifest

    def moved(path: Any) -> Any:
        if isinstance(path, str) and (path == old or path.startswith(old + os.sep)):
            return new + path[len(old) :]
        return path

    jobs = {}
    for key, entry in manifest.jobs.items():
        entry = {name: moved(value) if name in _PATHS else value for name, value in entry.items()}
        if "earlier" in entry:
            entry["earlier"] = [{**sub, "log": moved(sub.get("log"))} for sub in entry["earlier"]]
        jobs[key] = entry
    return dataclasses.replace(manifest, sweep_dir=new, htcondor_dir=moved(manifest.htcondor_dir), jobs=jobs)


# The file paths of a manifest's job entry.
_PATHS = frozenset({"log", "result", "stdout", "stderr"})


def view_of(manifest: Manifest) -> SweepView:
    """The sweep a loaded manifest describes, each job's submissions replayed from their event logs."""
    layout = SweepLayout(manifest.sweep_dir, manifest.htcondor_dir)
    jobs: dict[int, JobView] = {}
    wanted: dict[str, dict[tuple[int, int], Attempt]] = {}  # log -> (cluster, proc) -> attempt
    manifest_view: dict[int, JobRecord] = {}  # id(attempt) -> the manifest's record of it
    current: dict[int, Attempt] = {}  # job number -> the submission the manifest's entry describes
    for key in sorted(manifest.jobs, key=int):
        num, entry = int(key), manifest.jobs[key]
        overrides = [str(o) for o in entry.get("overrides", [])]
        shown = _shown(overrides)
        known = record_of(num, entry, shown)
        attempts = []
        for old in entry.get("earlier", []):  # submissions before the latest (Manifest.planned keeps them)
            if old.get("cluster") is not None and old.get("proc") is not None:
                attempts.append(_attempt(num, shown, old, record_of(num, old, shown), manifest_view))
        if entry.get("cluster") is not None and known.proc >= 0:
            current[num] = _attempt(num, shown, entry, known, manifest_view)
            attempts.append(current[num])
        for attempt in attempts:
            if attempt.log:
                wanted.setdefault(attempt.log, {})[(attempt.cluster, attempt.proc)] = attempt
        jobs[num] = JobView(
            num=num,
            overrides=overrides,
            attempts=attempts,
            record=known,
            paths=layout.job(num),
            returned=None if entry.get("returned") is None else str(entry["returned"]),
        )
    for log_file, targets in wanted.items():
        events, problem = _read_log(log_file)
        for cluster, proc, name, event, ts in events:
            target = targets.get((cluster, proc))
            if target is not None:
                _take(target, name, event, ts)
        for attempt in targets.values():
            notes = jobs[attempt.record.num].notes
            if problem is not None and problem not in notes:  # a job's submissions may share a log
                notes.append(problem)
            elif problem is None and attempt.events == 0:
                no_news = f"no events of HTCondor job {attempt.id} in {log_file}: showing the manifest's view"
                notes.append(no_news)
    for job in jobs.values():
        for attempt in job.attempts:
            if attempt.events == 0:  # its log said nothing: what the manifest knows of it
                attempt.record = manifest_view[id(attempt)]
        # The log is written before the launcher reads it, so it knows at least as much; but a job the
        # launcher gave up on (lost: HTCondor no longer knew it) ended without an event. A job planned again
        # but not submitted yet has no current submission: the manifest's "unsubmitted" stands.
        latest = current.get(job.num)
        if latest is not None and not (job.record.final and not latest.record.final):
            job.record = latest.record
    return SweepView(
        sweep_dir=manifest.sweep_dir,
        htcondor_dir=manifest.htcondor_dir,
        jobs=jobs,
        sweep_id=manifest.sweep_id,
        updated=manifest.updated,
    )


def _shown(overrides: Iterable[str]) -> str:
    """The overrides as the status table shows them (Hydra's own ones left out)."""
    return " ".join(o for o in overrides if not o.startswith("hydra."))


def _attempt(
    num: int, shown: str, entry: dict[str, Any], known: JobRecord, manifest_view: dict[int, JobRecord]
) -> Attempt:
    """A submission the manifest names, with a fresh record for its events to be replayed into (seeded
    with what only the launcher knows: the job's lease, its releases, why it removed the job); the
    manifest's own record of it goes into `manifest_view`."""
    cluster, proc = int(entry["cluster"]), int(entry["proc"])
    fresh = JobRecord(
        proc=proc,
        num=num,
        overrides=shown,
        cluster=cluster,
        lease_s=known.lease_s,
        releases=known.releases,
        abort_reason=known.abort_reason if known.final else None,
    )
    attempt = Attempt(cluster=cluster, proc=proc, log=entry.get("log") or None, record=fresh)
    manifest_view[id(attempt)] = known
    return attempt


def _take(attempt: Attempt, name: str, event: Any, ts: float) -> None:
    """One event of the attempt's log, through the launcher's state machine; the timeline follows."""
    rec = attempt.record
    before, evictions = rec.state, rec.evictions
    if not _jobstate.apply(rec, name, event, ts):
        return
    attempt.events += 1
    if attempt.submitted is None:
        attempt.submitted = ts
    timeline = attempt.timeline
    slot = rec.host if rec.state in _jobstate.ON_SLOT else None
    if not timeline:
        timeline.append(Segment(rec.state, ts, slot=slot))
    elif rec.state is not before:
        timeline[-1].end = ts
        timeline.append(Segment(rec.state, ts, slot=slot))
    if rec.evictions > evictions:
        attempt.evicted_at.append(ts)
    del attempt.evicted_at[rec.evictions :]  # a removal's eviction is taken back by its abort
    if rec.final:
        timeline[-1].end = ts


# (cluster, proc, event type name, event, epoch seconds) of each job event of a log, in order.
_Event = tuple[int, int, str, Any, float]


def _read_log(path: str) -> tuple[list[_Event], str | None]:
    """Every job event of an HTCondor event log (all its clusters), and what went wrong reading it (None):
    a missing file, or one that cannot be read to its end (the events before the damage are kept)."""
    if not os.path.exists(path):
        return [], f"event log {path} missing: showing the manifest's view"
    htcondor2 = _htcondor()
    events: list[_Event] = []
    # An event's timestamp is parsed from its EventTime text (strptime: most of a big log's reading time);
    # the events of one second share it.
    stamps: dict[str, float] = {}
    try:
        reader = htcondor2.JobEventLog(path)
        for event in reader.events(stop_after=0):
            if event.proc >= 0:
                when = event.get("EventTime")
                ts = stamps.get(when)
                if ts is None:
                    ts = stamps[when] = float(event.timestamp)
                events.append((event.cluster, event.proc, event.type.name, event, ts))
        stop = _unread(reader, path)
    except Exception as exc:  # a foreign file
        why = " ".join(str(exc).split()) or type(exc).__name__
        return events, f"event log {path} unreadable after {len(events)} events ({why}): the rest is unknown"
    if stop is not None:
        return events, (
            f"event log {path} damaged at byte {stop} (after {len(events)} events): the rest is unknown"
        )
    return events, None


def _unread(reader: Any, path: str) -> int | None:
    """Where HTCondor's reader stopped short of a whole event it could not parse (it stops there quietly),
    or None: it read every whole event (a last one still being written does not count)."""
    # JobEventLog's pickle state is (attributes, the byte offset read up to): pickling is how a reader
    # resumes, so the offset is part of its contract (launchers/tests/test_view.py checks it).
    offset = int(reader.__getstate__()[1])
    with open(path, "rb") as f:
        f.seek(offset)
        rest = f.read()
    return offset if rest.startswith(b"...\n") or b"\n...\n" in rest else None


def _htcondor() -> Any:
    # Importing htcondor2 without a config sets CONDOR_CONFIG=/dev/null in this process's environment;
    # reading a log needs no pool, and later code (or subprocesses) looking for a pool must not inherit that.
    unset = "CONDOR_CONFIG" not in os.environ
    import htcondor2

    if unset:
        os.environ.pop("CONDOR_CONFIG", None)
    return htcondor2


def _from_logs(layout: SweepLayout, why: str) -> SweepView:
    """A sweep folder without a readable manifest, from the batch event logs in its own .htcondor folder.
    Which job a proc is is known only for a cluster that holds a whole batch (batch-A-B.log with procs
    0..B-A: job A+p, as the launcher submits a batch); other clusters (a re-run's) cannot be told apart."""
    jobs: dict[int, JobView] = {}
    logs = layout.batch_logs()
    notes = [f"{why}: reading its batch event logs alone" if logs else why]
    for first, last, path in logs:
        events, problem = _read_log(path)
        if problem is not None:
            notes.append(problem)
        procs: dict[int, set[int]] = {}
        for cluster, proc, *_ in events:
            procs.setdefault(cluster, set()).add(proc)
        whole = {cluster for cluster, seen in procs.items() if seen == set(range(last - first + 1))}
        attempts: dict[tuple[int, int], Attempt] = {}
        for cluster, proc, name, event, ts in events:
            if cluster not in whole:
                continue
            attempt = attempts.get((cluster, proc))
            if attempt is None:
                rec = JobRecord(proc=proc, num=first + proc, cluster=cluster)
                attempt = attempts[(cluster, proc)] = Attempt(cluster, proc, path, rec)
            _take(attempt, name, event, ts)
        for attempt in attempts.values():
            num = attempt.record.num
            job = jobs.get(num)
            if job is None:
                job = jobs[num] = JobView(num, [], [], attempt.record, layout.job(num))
            job.attempts.append(attempt)
    for job in jobs.values():
        job.attempts.sort(key=lambda a: (a.cluster, a.proc))
        job.record = job.attempts[-1].record
    return SweepView(
        sweep_dir=layout.sweep_dir,
        htcondor_dir=layout.htcondor_dir,
        jobs=dict(sorted(jobs.items())),
        notes=notes,
    )
