"""What a (re-)run of a sweep does with each job: reuse a stored result (unless the task's code or the
config sources changed since), re-attach to a job still queued (found by its HydraSweepId), or submit it;
and the sweep's manifest it opens."""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
import logging
import os
import shlex
import sys
from typing import Any

import cloudpickle
from hydra.core.utils import JobReturn, JobStatus
from hydra.types import TaskFunction
from omegaconf import OmegaConf

from . import _results, _schedd
from ._batch import Batch, HTCondorJobReturn, Job
from ._errors import ConfigError, PoolUnreachableError
from ._jobstate import JobRecord, JobState
from ._layout import SNAPSHOT_PREFIX, manifest_path
from ._manifest import INPUTS, Manifest, ManifestError
from ._settings import Settings

log = logging.getLogger(__name__)
# The task's package is hashed (see task_files) up to this many source files; a bigger one, its module only.
TASK_SOURCE_FILES = 2000


def task_files(task: TaskFunction) -> list[str]:
    """The source files a task's results depend on beyond its pickle (cloudpickle pickles an importable
    function by reference, not its code): every .py file of its top-level package, or its module's own file
    (a script, a top-level module, a package bigger than TASK_SOURCE_FILES)."""
    module = inspect.getmodule(inspect.unwrap(task))
    if module is None:
        return []
    try:
        own = [os.path.abspath(inspect.getsourcefile(module) or "")]
    except TypeError:  # a built-in module
        own = []
    spec = getattr(module, "__spec__", None)  # `python -m pkg`: __main__ is pkg.__main__
    top = sys.modules.get((spec.name if spec is not None else module.__name__).split(".")[0])
    files: list[str] = []
    for root in list(getattr(top, "__path__", None) or []):
        for folder, dirs, names in os.walk(root):
            dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d != "__pycache__")
            files += [os.path.join(folder, n) for n in sorted(names) if n.endswith(".py")]
            if len(files) > TASK_SOURCE_FILES:
                return own
    return files or own


def task_digest(task: TaskFunction) -> str:
    """A content hash of the task: its pickle and task_files' contents."""
    digest = hashlib.sha256(cloudpickle.dumps(task))
    for path in task_files(task):
        try:
            with open(path, "rb") as f:
                data = f.read()
        except OSError:  # gone or unreadable: that too is a change
            data = b""
        digest.update(path.encode() + b"\0" + hashlib.sha256(data).digest())
    return digest.hexdigest()[:16]


# JobStatus values of a job still in the queue that a resumed sweep re-attaches to (idle, running, held,
# transferring output, suspended); removed (3) and completed (4) ones are on their way out.
_LIVE_STATUS = frozenset({1, 2, 5, 6, 7})


@dataclasses.dataclass
class ResumePlan:
    """What a (re-)run does with each job of the batch."""

    reused: dict[int, HTCondorJobReturn] = dataclasses.field(default_factory=dict)
    reattached: list[Batch] = dataclasses.field(default_factory=list)  # one per cluster, records set
    to_submit: list[Job] = dataclasses.field(default_factory=list)
    # Of to_submit, the jobs the manifest knew (failed, removed, or never submitted before a crash).
    resubmitted: int = 0

    @property
    def resuming(self) -> bool:
        return bool(self.reused or self.reattached or self.resubmitted)

    def summary(self) -> str:
        new = len(self.to_submit) - self.resubmitted
        return (
            f"resuming sweep: {len(self.reused)} reused, {sum(len(b.jobs) for b in self.reattached)} "
            f"re-attached, {self.resubmitted} resubmitted" + (f", {new} new" if new else "")
        )


def open_manifest(batch: Batch, current: Manifest | None = None, *, sampling_ok: bool = False) -> Manifest:
    """The sweep's manifest: `current` (an earlier batch of this process opened it), the one on disk
    (resume=true; refused to a sampling sweeper unless `sampling_ok`: a driver of its own that names its
    trials by job number), else a new one with a new sweep id."""
    settings = batch.settings
    path = manifest_path(batch.sweep_dir)
    if current is not None and current.sweep_dir == batch.sweep_dir:
        return current
    if settings.resume and os.path.exists(path):
        if not sampling_ok:
            what = "hydra.launcher.resume=true in a sweep folder with a manifest"
            refuse_sampling_sweeper(batch.config, what)
        return Manifest.load(batch.sweep_dir)
    if settings.resume:
        _refuse_lost_manifest(batch)
    return Manifest.new(
        batch.sweep_dir,
        batch.htcondor_dir,
        command=list(sys.argv),
        schedd=settings.schedd,
        collector=settings.collector,
    )


def check_overrides(batch: Batch, manifest: Manifest) -> None:
    """A job whose overrides differ from the manifest's stops the run with one line."""
    path = manifest.path
    for job in batch.jobs:
        entry = manifest.job(job.num)
        if entry is not None and list(entry.get("overrides", [])) != list(job.overrides):
            old, new = list(entry.get("overrides", [])), list(job.overrides)
            diff = next(
                (f"{a!r} was {b!r}" for a, b in zip(new, old, strict=False) if a != b),
                f"{new!r} was {old!r}",
            )
            raise ManifestError(
                f"job #{job.num} of the sweep in {batch.sweep_dir} changed: {diff} (the manifest {path} "
                "holds the earlier sweep; use another hydra.sweep.dir, or hydra.launcher.resume=false to "
                "start afresh in this one)"
            )


def _refuse_lost_manifest(batch: Batch) -> None:
    """A sweep folder whose job files (specs) outlived its manifest: starting afresh there would submit
    jobs that may still be queued a second time, and delete their stored results."""
    htdir = batch.htcondor_dir
    if not htdir.startswith(batch.sweep_dir + os.sep) or not os.path.isdir(htdir):
        return  # a shared htcondor_dir elsewhere may hold other sweeps' files
    if batch.layout.has_specs():
        raise ManifestError(
            f"the sweep folder {batch.sweep_dir} holds job files ({batch.layout.spec('N')}) but no manifest "
            f"{manifest_path(batch.sweep_dir)}: rebuild it from HTCondor and those files with: "
            f"hydra-htcondor repair {shlex.quote(batch.sweep_dir)}; or start afresh with "
            "hydra.launcher.resume=false"
        )


# Hydra's Optuna sweeper (hydra-optuna-sweeper), by its exact target: no sweeper says in a property whether
# its job numbers name the same jobs on every run, and a substring ("optuna") also caught sweepers that keep
# them (optuna_stream: trial number == job number, continued by the study) and any sweeper so named.
HYDRA_OPTUNA_SWEEPER = "hydra_plugins.hydra_optuna_sweeper.optuna_sweeper.OptunaSweeper"


def refuse_sampling_sweeper(config: Any, what: str) -> None:
    """Hydra's Optuna sweeper (``config``: the job's config, ``hydra.sweeper._target_``) samples its jobs
    afresh on every run, numbered from 0: the manifest's job numbers cannot name its trials, and a
    detached run would need the results of batch 1 before batch 2 exists. Its own storage
    (hydra.sweeper.storage + study_name) is how such a study resumes. Any other sweeper whose job #N
    changes between runs meets ``check_overrides``."""
    target = str(OmegaConf.select(config, "hydra.sweeper._target_", default="") or "")
    if target == HYDRA_OPTUNA_SWEEPER:
        raise ConfigError(
            f"{what} is not supported with the Optuna sweeper ({target}): it samples new trials on every "
            "run, so job numbers do not name the same trials; resume the study with Optuna's own storage "
            "(hydra.sweeper.storage, hydra.sweeper.study_name) and hydra.launcher.resume=false, or use a new "
            "hydra.sweep.dir"
        )


def _sweep_jobs(
    schedd: Any, sweep_id: str, history: bool, settings: Settings | None = None
) -> dict[int, list[Any]]:
    """The sweep's jobs the schedd knows (queue, or history), by Hydra job number. A query that keeps
    failing stops the run (PoolUnreachableError): taken for "no jobs", it would submit every queued job of
    a resumed sweep a second time."""
    projection = [
        "ClusterId",
        "ProcId",
        "HydraJobNum",
        "JobStatus",
        "UserLog",
        "NumJobStarts",
        "JobLeaseDuration",
    ]
    try:
        ads = _schedd.sweep_ads(schedd, sweep_id, projection, history=history)
    except _schedd.Unanswered as exc:
        name = _schedd.where(settings.collector, settings.schedd) if settings else "the schedd"
        raise PoolUnreachableError(
            f"{name} did not answer when asked for the sweep's jobs in its "
            f"{'history' if history else 'queue'}: {exc}; nothing was submitted (a guess could run queued "
            "jobs twice): re-run the same command once the schedd answers (condor_q)"
        ) from None
    found: dict[int, list[Any]] = {}
    for ad in ads:
        if "HydraJobNum" in ad:
            found.setdefault(int(ad["HydraJobNum"]), []).append(ad)
    return found


def _completed_result(path: str) -> JobReturn | None:
    ret = stored_result(path)
    return ret if ret is not None and ret.status == JobStatus.COMPLETED else None


def _changed(entry: dict[str, Any], inputs: dict[str, str]) -> list[str]:
    """Which of INPUTS differ from those the job ran with ([] for an entry written before they were kept)."""
    return [name for name in INPUTS if entry.get(name) is not None and entry[name] != inputs.get(name)]


def _say_changed(batch: Batch, task: TaskFunction, changes: dict[int, list[str]], old: set[str]) -> None:
    """One line: what changed since which stored results were made, and that those jobs run again."""
    what = {name for names in changes.values() for name in names}
    parts = []
    if "task" in what:
        files = task_files(task)
        where = files[0] if len(files) == 1 else f"{len(files)} source files of its package"
        parts.append(f"the task {getattr(task, '__qualname__', task)!r} ({where})")
    if "configs" in what:
        before = ", ".join(sorted(SNAPSHOT_PREFIX + digest for digest in old))
        parts.append(f"the config sources (snapshot {before} in {batch.htcondor_dir}; now another)")
    if "code" in what and "task" not in what:
        parts.append(f"the app's code (its snapshot in {batch.htcondor_dir})")
    nums = sorted(changes)
    shown = ", ".join(f"#{n}" for n in nums[:5]) + (f" ... #{nums[-1]}" if len(nums) > 5 else "")
    log.warning(
        "HTCondor launcher: %s changed since %d job(s) ran (%s): running them again, not reusing their "
        "results",
        " and ".join(parts),
        len(nums),
        shown,
    )


def live_ads(schedd: Any, sweep_id: str, settings: Settings) -> dict[int, list[Any]]:
    """The sweep's jobs still in the schedd's queue and not on their way out, by Hydra job number."""
    queued = _sweep_jobs(schedd, sweep_id, history=False, settings=settings)
    live = {
        num: [ad for ad in ads if int(ad.get("JobStatus", 0)) in _LIVE_STATUS] for num, ads in queued.items()
    }
    return {num: ads for num, ads in live.items() if ads}


def newest(ads: list[Any]) -> Any:
    """Of a job's ads, the latest submission's."""
    return max(ads, key=lambda a: (int(a["ClusterId"]), int(a["ProcId"])))


def attach(
    groups: dict[tuple[int, str], Batch], batch: Batch, job: Job, ad: Any, entry: dict[str, Any]
) -> None:
    """Add the job that `ad` (the schedd's) describes to the re-attached batch of its cluster and event log in
    `groups`, with a fresh record: its event log is read from the start."""
    cluster, proc = int(ad["ClusterId"]), int(ad["ProcId"])
    log_file = str(ad.get("UserLog") or entry.get("log") or batch.log_file)
    sub = groups.get((cluster, log_file))
    if sub is None:
        sub = dataclasses.replace(batch, jobs=[], cluster=cluster, records={}, event_log=log_file)
        groups[(cluster, log_file)] = sub
    sub.jobs.append(job)
    sub.records[proc] = JobRecord(
        proc=proc,
        num=job.num,
        overrides=job.shown_overrides,
        cluster=cluster,
        lease_s=_schedd.job_lease_s(ad),
    )


def plan_resume(
    batch: Batch, manifest: Manifest, schedd: Any, inputs: dict[str, str] | None = None
) -> ResumePlan:
    """Reuse finished results, re-attach to jobs still in HTCondor, submit the rest. The queue is asked by
    the sweep id, so a job submitted just before a crash (not yet in the manifest) is found too. A job whose
    task or configs changed (`inputs`, see INPUTS) runs again; one still queued with the old ones stops the
    run (ManifestError): removing it would throw away work the user may still want."""
    plan = ResumePlan()
    queued = live_ads(schedd, manifest.sweep_id, batch.settings)
    groups: dict[tuple[int, str], Batch] = {}
    changes: dict[int, list[str]] = {}
    stale_live: list[str] = []
    old_configs: set[str] = set()
    for job in batch.jobs:
        entry = manifest.job(job.num) or {}
        changed = _changed(entry, inputs) if inputs is not None else []
        if changed:
            changes[job.num] = changed
            if "configs" in changed:
                old_configs.add(str(entry["configs"]))
        live = queued.get(job.num, [])
        if live:
            ad = newest(live)
            if changed:
                stale_live.append(f"#{job.num} ({ad['ClusterId']}.{ad['ProcId']})")
                continue
            attach(groups, batch, job, ad, entry)
            continue
        result = None if changed else _completed_result(batch.result_path(job))
        if result is not None:
            plan.reused[job.num] = reused(batch, job, entry, result)
            continue
        plan.to_submit.append(job)
        plan.resubmitted += bool(entry)
    if stale_live:
        words = {"task": "task code", "configs": "configs", "code": "app's code"}
        any_changed = {name for names in changes.values() for name in names}
        what = " and ".join(words[name] for name in INPUTS if name in any_changed)
        shown = ", ".join(stale_live[:5]) + (" ..." if len(stale_live) > 5 else "")
        raise ManifestError(
            f"the {what} changed since {len(stale_live)} job(s) of the sweep in "
            f"{batch.sweep_dir} were submitted, and they are still in HTCondor: {shown}; to run them anew, "
            f"remove them first (hydra-htcondor rm {shlex.quote(batch.sweep_dir)}) and re-run; to collect "
            "them, restore the code and configs they were submitted with"
        )
    if changes:
        _say_changed(batch, batch.task_function, changes, old_configs)
    plan.reattached = list(groups.values())
    return plan


def stored_result(path: str) -> JobReturn | None:
    """A job's result file as the worker wrote it (COMPLETED or FAILED); None if there is none to read."""
    try:
        with open(path, "rb") as f:
            ret = cloudpickle.load(f)
    except Exception:
        return None
    return ret if isinstance(ret, JobReturn) else None


def reused(batch: Batch, job: Job, entry: dict[str, Any], ret: JobReturn) -> HTCondorJobReturn:
    """A stored result, as the launcher returns results (paths fixed for transferred jobs)."""
    cluster, proc = entry.get("cluster"), entry.get("proc")
    rec = JobRecord(
        proc=int(proc) if proc is not None else -1,
        num=job.num,
        state=JobState.DONE,
        exit_code=0,
        evictions=int(entry.get("evictions") or 0),
        retries=int(entry.get("retries") or 0),
    )
    sub = dataclasses.replace(batch, cluster=int(cluster) if cluster is not None else None)
    got = _results.read_result(sub, job, rec)
    if isinstance(got, BaseException):  # unreachable for a loadable COMPLETED result; keep it honest
        got = _results.failed(batch, job, got)
    out = _results.with_record(got, sub, rec)
    if cluster is None or proc is None:
        out.htcondor_id = None
    return out
