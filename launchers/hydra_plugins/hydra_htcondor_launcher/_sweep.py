"""The sweep engine behind ``sweep.Sweep``: one sweep folder's manifest, jobs, records and schedd, driven
job by job; and Hydra's ``launch()``, which is that engine driven to completion (submit, then wait).

What a submission does is ``_core``'s (folders, specs, one cluster); what a re-run does with each job is
``_resume``'s; reading the clusters' event logs, deadlines, tables and Ctrl-C are ``_wait``'s (one
``Follower`` for every cluster in flight); results are ``_results``'.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import time
from collections.abc import Sequence
from typing import Any, Protocol

from hydra.core.utils import JobReturn, JobStatus, configure_log, setup_globals
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig

from . import _code, _core, _reports, _results, _resume, _sources
from ._batch import Batch, HTCondorJobReturn, Job
from ._folder import SweepFolder
from ._jobstate import JobRecord, JobState, SweepEvent
from ._manifest import Manifest
from ._wait import ClusterWatcher, Follower, WatchPolicy
from .config import HTCondorLauncherConf

log = logging.getLogger(__name__)


class SetUpLauncher(Protocol):
    """What the engine reads of an HTCondorLauncher after Hydra's setup() (and the manifest it keeps)."""

    conf: HTCondorLauncherConf
    config: DictConfig | None
    hydra_context: HydraContext | None
    task_function: TaskFunction | None
    manifest: Any


def _ended_reason(rec: JobRecord) -> str | None:
    if rec.state is JobState.REMOVED:
        if rec.hold_reason is not None and not rec.timed_out and rec.abort_reason is None:
            return f"held: {rec.hold_reason}"
        return rec.abort_reason or rec.hold_reason
    if rec.state is JobState.FAILED:
        return f"signal {rec.signal}" if rec.signal is not None else f"exit code {rec.exit_code}"
    return None


class SweepEngine:
    """See ``sweep.Sweep`` (its methods' contract); this is the work behind them."""

    def __init__(self, base: Batch, htcondor: Any, schedd: Any, manifest: Manifest) -> None:
        self.base = base  # the sweep's context and settings, no jobs
        self.settings = base.settings
        # The folder's manifest and schedd: what `hydra-htcondor rm|logs` open from the folder alone.
        self.folder = SweepFolder(manifest, htcondor, schedd)
        self.policy = WatchPolicy.of(self.settings, max_releases=self.settings.max_releases)
        self.follower = Follower(self.policy, on_change=self._save_records)
        self.hint = _core.follow_hint(base.sweep_dir)
        # Every job of this Sweep, by number: its Batch (a cluster's, once submitted or re-attached), its
        # record (followed jobs), or its result known without following it (reused, finished).
        self.batches: dict[int, Batch] = {}
        self.records: dict[int, JobRecord] = {}
        self.finished: dict[int, HTCondorJobReturn] = {}
        self._results: dict[int, HTCondorJobReturn] = {}
        self._pending: list[SweepEvent] = []  # for the next poll: ends known without an event log
        self._ended: set[int] = set()  # "ended" returned by poll
        self._shown: dict[int, tuple[JobState, int]] = {}  # per followed job: state and reports told
        self.jobs: dict[int, Job] = {}
        self._watcher: dict[int, ClusterWatcher] = {}
        self._sources: _sources.Sources | None = None
        self._inputs: dict[str, str] | None = None
        self._code: _code.Code | None = None

    @property
    def manifest(self) -> Manifest:
        return self.folder.manifest

    @property
    def htcondor(self) -> Any:
        return self.folder.bindings()

    @property
    def schedd(self) -> Any:
        return self.folder.schedd()

    # -- opening -----------------------------------------------------------------------------------
    @classmethod
    def from_launcher(cls, launcher: SetUpLauncher, *, sampling_ok: bool = True) -> SweepEngine:
        """Validate, connect (before any folder exists), open the manifest; the launcher keeps it for the
        next batch of this process. `sampling_ok`: a sampling sweeper may continue a manifest on disk
        (launch() says False: Hydra's sweepers name their trials anew on each run)."""
        assert launcher.config is not None and launcher.hydra_context is not None
        assert launcher.task_function is not None, "the launcher's setup() was not called"
        base = _core.new_batch(launcher.conf, launcher.config, launcher.hydra_context, launcher.task_function)
        htcondor = _core.import_htcondor()
        schedd = _core.connect(htcondor, base.settings)
        # open_manifest takes it only if it is this sweep folder's.
        manifest = _resume.open_manifest(base, launcher.manifest, sampling_ok=sampling_ok)
        launcher.manifest = manifest
        return cls(base, htcondor, schedd, manifest)

    def _inputs_and_sources(self) -> tuple[dict[str, str], _sources.Sources]:
        """What the jobs' results depend on (the task, the config sources' and the app code's snapshots): once
        per Sweep."""
        if self._sources is None or self._inputs is None:
            base = self.base
            self._sources = _sources.gather(
                base.config,
                base.hydra_context.config_loader,
                cwd=base.cwd,
                htcondor_dir=base.htcondor_dir,
                sweep_dir=base.sweep_dir,
            )
            self._code = _code.for_jobs(base.settings, skip=[base.sweep_dir, base.htcondor_dir])
            self._inputs = {"task": _resume.task_digest(base.task_function), "configs": self._sources.digest}
            self._inputs.update(_code.inputs(self._code))
        return self._inputs, self._sources

    # -- submitting --------------------------------------------------------------------------------
    def submit(self, job_overrides: Sequence[Sequence[str]], first_num: int) -> list[int]:
        batch = dataclasses.replace(self.base, jobs=[])
        _core.add_jobs(batch, job_overrides, first_num)
        nums = batch.nums
        again = [num for num in nums if num in self.batches or num in self.finished]
        if again:
            raise ValueError(f"jobs {again} were already submitted in this sweep (a job number is used once)")
        _resume.check_overrides(batch, self.manifest)
        self.jobs.update((job.num, job) for job in batch.jobs)
        inputs, sources = self._inputs_and_sources()
        manifest = self.manifest
        # A sweep this process started afresh has no earlier jobs: nothing to reuse or re-attach, and an
        # earlier run's event log of the same name is stale.
        fresh = manifest.fresh and all(manifest.job(num) is None for num in nums)
        if fresh:
            rplan = _resume.ResumePlan(to_submit=list(batch.jobs))
        else:
            rplan = _resume.plan_resume(batch, manifest, self.schedd, inputs)
        if rplan.resuming:
            log.info("%s", rplan.summary())
        for job in batch.jobs:
            if job.num in rplan.reused:
                self._finished(batch, job, rplan.reused[job.num])
        for sub in rplan.reattached:
            log.info(
                "HTCondor launcher: re-attached to cluster %d (jobs %s), following %s",
                sub.cluster,
                sub.nums,
                sub.log_file,
            )
            self._follow(sub)
        if rplan.to_submit:
            new = dataclasses.replace(batch, jobs=rplan.to_submit, cluster=None, records={})
            self._submit_new(new, inputs, sources, fresh_log=fresh)
        _core.save_queued(manifest, manifest.save)
        return nums

    def _submit_new(
        self, new: Batch, inputs: dict[str, str], sources: _sources.Sources, *, fresh_log: bool
    ) -> None:
        manifest = self.manifest
        tic = time.perf_counter()
        plan = _core.prepare(
            new, fresh_log=fresh_log, sweep_id=manifest.sweep_id, sources=sources, code=self._code
        )
        for job in new.jobs:
            manifest.planned(
                job.num,
                job.overrides,
                new.result_path(job),
                new.layout.stdout(job.num),
                new.layout.stderr(job.num),
                inputs,
            )
        manifest.save()  # the sweep id is on disk before any job carries it
        _core.submit(new, self.htcondor, self.schedd, plan)
        log.info(
            "HTCondor launcher: %d job(s) submitted as cluster %d in %.2fs; sweep dir %s, job logs in %s",
            len(new.jobs),
            new.cluster,
            time.perf_counter() - tic,
            new.sweep_dir,
            new.htcondor_dir,
        )
        for job in new.jobs:
            log.info("\t#%d : %s", job.num, job.shown_overrides)
        self._follow(new)

    def _follow(self, sub: Batch) -> None:
        """Follow a submitted or re-attached cluster from now on."""
        assert sub.cluster is not None
        watcher = ClusterWatcher(
            self.htcondor,
            self.schedd,
            sub.cluster,
            sub.log_file,
            sub.records,
            self.policy,
            # Once: the cross-check retries at its next turn anyway, and must not stall the loop.
            reconnect=functools.partial(_core.connect, self.htcondor, self.settings, tries=1),
            sweep_id=self.manifest.sweep_id,
            # A re-attached group holds the cluster's jobs this sweep asked for, maybe not all of them.
            whole_cluster=sub.event_log is None,
            # On a shared filesystem a job's reports are its report file; with file transfer, chirp events.
            reports=None if sub.settings.transfer_files else _reports.ReportFiles(sub.layout),
        )
        self.follower.add(watcher)
        for rec in sub.records.values():
            self._watcher[rec.num] = watcher
            self.batches[rec.num] = sub
            self.records[rec.num] = rec
            self._shown[rec.num] = (rec.state, len(rec.reports))
            self.manifest.record(rec, sub.cluster, sub.log_file)

    def _finished(self, batch: Batch, job: Job, ret: HTCondorJobReturn) -> None:
        """A job whose result is known without following it: its "ended" event comes at the next poll."""
        self.batches[job.num] = dataclasses.replace(batch, jobs=[job], records={})
        self.finished[job.num] = ret
        entry = self.manifest.job(job.num)
        done = ret.status == JobStatus.COMPLETED
        if entry is not None and done:  # it may have finished while nobody followed it
            entry["state"] = JobState.DONE.value
        state = JobState.DONE if done else JobState.FAILED
        self._pending.append(SweepEvent(job.num, "ended", state))

    def _save_records(self) -> None:
        """The followed jobs' records into the manifest, saved (a full disk costs a resume, not the run)."""
        for num, rec in self.records.items():
            sub = self.batches[num]
            assert sub.cluster is not None
            self.manifest.record(rec, sub.cluster, sub.log_file)
        _core.save_queued(self.manifest, self.manifest.save)

    # -- following ---------------------------------------------------------------------------------
    def poll(self) -> list[SweepEvent]:
        self.follower.poll()
        events, self._pending = self._pending, []
        for num in sorted(self.records):
            if num in self._ended:
                continue
            rec = self.records[num]
            state, told = self._shown[num]
            if rec.state is not state and not rec.final:
                reason = rec.hold_reason if rec.state is JobState.HELD else None
                events.append(SweepEvent(num, "state", rec.state, reason=reason))
            for step, value in rec.reports[told:]:
                events.append(SweepEvent(num, "report", rec.state, step=step, value=value))
            self._shown[num] = (rec.state, len(rec.reports))
            if rec.final:
                events.append(SweepEvent(num, "ended", rec.state, reason=_ended_reason(rec)))
        self._ended.update(event.num for event in events if event.kind == "ended")
        return events

    def active(self) -> list[int]:
        return sorted(num for num in self.batches if num not in self._ended)

    def result(self, num: int) -> HTCondorJobReturn:
        if num in self._results:
            return self._results[num]
        if num in self.finished:
            ret = self.finished[num]
        else:
            rec = self.records.get(num)
            if rec is None or not rec.final:
                raise ValueError(f"job #{num} has not ended (or is not a job of this sweep)")
            ret = _results.collect_one(*self._batch_job(num), rec)
        self._results[num] = ret
        return ret

    def _batch_job(self, num: int) -> tuple[Batch, Job]:
        """Job `num` as its cluster's Batch holds it (with that batch: its paths, its records)."""
        sub = self.batches[num]
        return sub, next(job for job in sub.jobs if job.num == num)

    def log_paths(self, num: int) -> str:
        if num not in self.batches:
            raise KeyError(f"job #{num} is not a job of this sweep")
        sub, job = self._batch_job(num)
        return sub.job_paths(job)

    def remove(self, num: int, reason: str) -> None:
        if num not in self.batches:
            raise KeyError(f"job #{num} is not a job of this sweep")
        rec = self.records.get(num)
        if rec is None or rec.final:
            return  # it ended: its outcome stays
        watcher = self._watcher[num]
        watcher.remove([rec], reason)
        log.info("job #%d (HTCondor %d.%d): removing it: %s", num, watcher.cluster, rec.proc, reason)

    def reattach(self, nums: Sequence[int]) -> dict[int, str]:
        out: dict[int, str] = {}
        todo: list[Job] = []
        for num in nums:
            if num in self.batches:
                out[num] = "running" if num in self.records and not self.records[num].final else "finished"
                continue
            entry = self.manifest.job(num)
            if entry is None:
                out[num] = "lost"
                continue
            batch = dataclasses.replace(self.base, jobs=[])
            _core.add_jobs(batch, [list(entry.get("overrides", []))], num)
            todo.append(batch.jobs[0])
            self.jobs[num] = batch.jobs[0]
        if not todo:
            return out
        queued = _resume.live_ads(self.schedd, self.manifest.sweep_id, self.settings)
        groups: dict[tuple[int, str], Batch] = {}
        for job in todo:
            entry = self.manifest.job(job.num) or {}
            if job.num in queued:
                _resume.attach(groups, self.base, job, _resume.newest(queued[job.num]), entry)
                out[job.num] = "running"
                continue
            batch = dataclasses.replace(self.base, jobs=[job])
            stored = _resume.stored_result(batch.result_path(job))
            if stored is None:
                out[job.num] = "lost"
                continue
            self._finished(batch, job, _resume.reused(batch, job, entry, stored))
            out[job.num] = "finished"
        for sub in groups.values():
            log.info("HTCondor launcher: re-attached to cluster %d (jobs %s)", sub.cluster, sub.nums)
            self._follow(sub)
        _core.save_queued(self.manifest, self.manifest.save)
        return out

    def wait(self, nums: Sequence[int] | None = None) -> dict[int, JobReturn]:
        targets = list(self.batches) if nums is None else list(nums)
        unknown = [num for num in targets if num not in self.batches]
        if unknown:
            raise KeyError(f"jobs {unknown} are not jobs of this sweep")

        def ended() -> bool:
            return all(num in self.finished or self.records[num].final for num in targets)

        try:
            self.follower.wait(ended, poll=self.poll)
        except KeyboardInterrupt:
            self.follower.interrupted(self.settings.on_interrupt, self.hint, self.base.sweep_dir)
            raise
        finally:
            self.follower.flush()
        return {num: self.result(num) for num in targets}

    def close(self) -> None:
        self.follower.flush()
        # The results' values as `hydra-htcondor status` shows them (saved if any is new).
        _core.save_queued(self.manifest, functools.partial(self.manifest.returned, dict(self._results)))


def launch(
    launcher: SetUpLauncher, job_overrides: Sequence[Sequence[str]], initial_job_idx: int
) -> Sequence[JobReturn]:
    """Hydra's Launcher.launch: one batch of the sweep submitted, waited for and returned, in order."""
    assert launcher.config is not None
    setup_globals()
    configure_log(launcher.config.hydra.hydra_logging, launcher.config.hydra.verbose)
    sweep = SweepEngine.from_launcher(launcher, sampling_ok=False)
    if sweep.settings.detach:
        _resume.refuse_sampling_sweeper(sweep.base.config, "hydra.launcher.detach=true")
    nums = sweep.submit(job_overrides, initial_job_idx)
    if sweep.settings.detach and sweep.records:
        log.info("detached: %d job(s) in HTCondor, none waited for; %s", len(sweep.records), sweep.hint)
        logging.shutdown()
        raise SystemExit(0)
    results = sweep.wait(nums)
    sweep.close()
    ordered = [results[num] for num in nums]
    _results.log_summary(dataclasses.replace(sweep.base, jobs=[sweep.jobs[num] for num in nums]), ordered)
    return ordered
