"""Launching a batch: validate, check the pool, write job specs, submit one cluster, wait, collect results.

The Batch flows through: new_batch (validated settings) -> connect -> add_jobs -> prepare (files on disk)
-> submit (cluster, records) -> _wait.watch (records final) -> collect (one JobReturn per job).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import inspect
import logging
import os
import pickle
import shlex
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import cloudpickle
from hydra.core.utils import JobReturn, JobStatus, configure_log, setup_globals
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

from . import _schedd, _sources, _submit, _wait
from ._batch import Batch, HTCondorJobReturn, Job
from ._contract import OUTSIDE_FAILURE, TASK_RAISED, WORKER_EXIT_CODES, write_atomic
from ._disk import full_disk
from ._errors import ConfigError, HeldJobError, JobFailedError, PoolUnreachableError, SubmitError
from ._jobstate import JobRecord, JobState
from ._layout import manifest_path
from ._manifest import INPUTS, Manifest, ManifestError
from ._settings import Settings, validate
from .config import HTCondorLauncherConf, OnInterrupt

log = logging.getLogger(__name__)
# Lines of a job's stderr quoted in the error of a job that left no result.
ERR_TAIL_LINES = 8
# The task's package is hashed (see task_files) up to this many source files; a bigger one, its module only.
TASK_SOURCE_FILES = 2000


def _import_htcondor() -> Any:
    # The bindings read CONDOR_CONFIG at import; importing late lets tests and users set it first.
    import htcondor2

    return htcondor2


def connect(htcondor: Any, settings: Settings, tries: int = _schedd.QUERY_TRIES) -> Any:
    """Locate the schedd and make one cheap query (tried `tries` times, see _schedd.retried), so an
    unreachable pool fails before any folder exists."""
    def probe() -> Any:
        schedd = _schedd.locate(htcondor, settings.collector, settings.schedd)
        schedd.query(constraint="false", projection=["ClusterId"], limit=1)
        return schedd

    try:
        return _schedd.retried(probe, "contacting the HTCondor schedd", tries=tries)
    except _schedd.Unanswered as exc:
        name = _schedd.where(settings.collector, settings.schedd)
        raise PoolUnreachableError(
            f"HTCondor pool unreachable: cannot contact {name}: {exc}; nothing was submitted: re-run once "
            "condor_q answers (hydra.launcher.collector and schedd name the pool)"
        ) from None


def new_batch(
    conf: HTCondorLauncherConf, config: DictConfig, hydra_context: HydraContext, task_function: TaskFunction
) -> Batch:
    """The batch's context and validated settings; no jobs yet, nothing on disk or in the pool."""
    cwd = os.getcwd()
    sweep_dir_cfg = config.hydra.sweep.dir
    sweep_dir = os.path.abspath(str(sweep_dir_cfg))
    settings = validate(conf, cwd=cwd, sweep_dir=sweep_dir, default_python=sys.executable)
    return Batch(
        settings=settings,
        config=config,
        hydra_context=hydra_context,
        task_function=task_function,
        cwd=cwd,
        sweep_dir=sweep_dir,
        sweep_dir_cfg=sweep_dir_cfg,
    )


def _subdir_by_composing(batch: Batch, overrides: Sequence[str], num: int) -> str:
    """A job's hydra.sweep.subdir where only composing its config tells (a template beyond the job number
    and overrides): Hydra's own composition, as the worker will do it."""
    sweep_config = batch.hydra_context.config_loader.load_sweep_config(batch.config, list(overrides))
    with open_dict(sweep_config):
        # As the worker sets them before the job runs (it then sets the real HTCondor id).
        sweep_config.hydra.job.id = f"{sweep_config.hydra.job.name}_{num}"
        sweep_config.hydra.job.num = num
    return str(OmegaConf.select(sweep_config, "hydra.sweep.subdir"))


def add_jobs(batch: Batch, job_overrides: Sequence[Sequence[str]], first: int) -> None:
    """One Job per job. The workers compose the jobs' configs (bad overrides were already caught by the
    sweeper's own validation of the batch); with transfer_files the submit side needs each job's folder
    name, which follows from the job number and overrides for all but unusual hydra.sweep.subdir values."""
    namer = _sources.subdir_namer(batch.config) if batch.settings.transfer_files else None
    for idx, overrides in enumerate(job_overrides):
        num = first + idx
        if namer is None:
            batch.jobs.append(Job(num, list(overrides)))
            continue
        subdir = namer(overrides, num)
        if subdir is None:
            subdir = _subdir_by_composing(batch, overrides, num)
        batch.jobs.append(Job(num, list(overrides), os.path.join(batch.sweep_dir, subdir), subdir))


def _user_sys_path() -> list[str]:
    """The submitting process's own import folders (script dir, test dirs, PYTHONPATH), not the interpreter's.

    A task function from an importable module is pickled by reference; the worker needs the same folders to
    import it, as a local run would.
    """
    prefixes = {os.path.realpath(p) for p in (sys.prefix, sys.base_prefix, sys.exec_prefix)}
    out = []
    for entry in sys.path:
        path = os.path.realpath(entry or os.getcwd())
        if os.path.isdir(path) and not any(path == p or path.startswith(p + os.sep) for p in prefixes):
            out.append(path)
    return out


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


def _common_payload(batch: Batch, kit: _sources.Kit) -> dict[str, Any]:
    """What every job of the batch needs from the submit side: the task, the callbacks (all run_job uses of
    the Hydra context; the config loader's repository would drag every installed plugin along), and the kit
    the worker composes its config with."""
    return {
        "task_function": batch.task_function,
        "hydra_context": HydraContext(
            config_loader=None,  # type: ignore[arg-type]
            callbacks=batch.hydra_context.callbacks,
        ),
        "cwd": batch.cwd,
        "kit": kit,
    }


def write_specs(batch: Batch, kit: _sources.Kit) -> str:
    """The batch's common payload (once, content-addressed: a resumed sweep's earlier jobs may still read
    theirs) and one small spec per job (see _worker); returns the common file's path."""
    payload = cloudpickle.dumps(_common_payload(batch, kit))
    common = batch.layout.common(hashlib.sha256(payload).hexdigest()[:16])
    if not os.path.exists(common):
        write_atomic(common, payload)
    sys_path = _user_sys_path()
    for job in batch.jobs:
        result = batch.result_path(job)
        # Plain pickle of builtins: the worker fixes sys.path before it unpickles the user's types, and knows
        # where its result goes even when nothing else can be unpickled there.
        place = {
            "num": job.num,
            "overrides": list(job.overrides),
            "result_path": result,
            "result_relpath": os.path.relpath(result, batch.sweep_dir),
            "job_subdir": job.subdir,
            "submit_sweep_dir": batch.sweep_dir,
            "common_path": common,
        }
        spec = pickle.dumps({"sys_path": sys_path, "place": place})
        with open(batch.layout.spec(job.num), "wb") as f:
            f.write(spec)
    return common


def prepare(
    batch: Batch,
    *,
    fresh_log: bool = True,
    sweep_id: str | None = None,
    sources: _sources.Sources | None = None,
) -> _submit.SubmitPlan:
    """Create the folders, clear a previous run's results (and, unless resuming, its event log: a resumed
    sweep may still follow clusters that write there), write the config snapshot, job specs and wrapper;
    returns the submit description."""
    os.makedirs(batch.sweep_dir, exist_ok=True)
    if "mode" in batch.config.hydra.sweep:
        os.chmod(batch.sweep_dir, mode=int(str(batch.config.hydra.sweep.mode), 8))
    os.makedirs(batch.htcondor_dir, exist_ok=True)
    kit = _sources.build_kit(
        batch.config,
        batch.hydra_context.config_loader,
        cwd=batch.cwd,
        htcondor_dir=batch.htcondor_dir,
        sweep_dir=batch.sweep_dir,
        same_env=batch.settings.shared_filesystem,
        sources=sources,
    )
    common = write_specs(batch, kit)
    plan = _submit.build_submit(
        batch.settings,
        sweep_dir=batch.sweep_dir,
        cwd=batch.cwd,
        job_nums=batch.nums,
        job_subdirs=[job.subdir for job in batch.jobs],
        sweep_id=sweep_id,
        batch_inputs=[common, kit.snapshot_dir],
    )
    # A re-run into the same sweep folder: no stale result may pass for new.
    stale_files = [batch.result_path(job) for job in batch.jobs]
    if fresh_log:
        stale_files.append(batch.log_file)
    for stale in stale_files:
        if os.path.exists(stale):
            os.remove(stale)
    if plan.wrapper_path is not None and plan.wrapper_text is not None:
        with open(plan.wrapper_path, "w") as f:
            f.write(plan.wrapper_text)
        os.chmod(plan.wrapper_path, 0o755)
    log.debug("HTCondor submit description:\n%s", _submit.render(plan))
    return plan


def submit(batch: Batch, htcondor: Any, schedd: Any, plan: _submit.SubmitPlan) -> None:
    """One cluster for the batch, one proc per job; records the cluster in the batch."""
    nums = batch.nums
    try:
        result = schedd.submit(htcondor.Submit(plan.description), itemdata=iter(plan.itemdata))
    except Exception as exc:
        raise SubmitError(
            f"HTCondor refused the submission of jobs {nums[0]}-{nums[-1]}: {' '.join(str(exc).split())} "
            f"(submit description: {_submit.render(plan).count(chr(10))} lines, run with hydra.verbose="
            f"{__name__} to see it; job specs in {batch.htcondor_dir})"
        ) from None
    batch.submitted(result.cluster(), result.first_proc(), lease_s=job_lease_s(result.clusterad()))


def job_lease_s(ad: Any) -> float | None:
    """A job ad's JobLeaseDuration (the pool's default when the launcher set none): how long HTCondor waits
    for a disconnected job; None when the ad has no number there."""
    try:
        return float(ad["JobLeaseDuration"])
    except (KeyError, TypeError, ValueError):
        return None


def _task_name(batch: Batch) -> str | None:
    try:
        return str(batch.config.hydra.job.name)
    except Exception:  # an unresolvable interpolation must not cost the batch its results
        return None


def _failed(batch: Batch, job: Job, exc: BaseException) -> JobReturn:
    """A FAILED JobReturn carrying `exc`. Never raises: it uses only what the submit side already has (the
    workers compose the configs, so a job that never ran has none)."""
    return JobReturn(
        overrides=list(job.overrides),
        working_dir=job.job_dir or None,
        task_name=_task_name(batch),
        status=JobStatus.FAILED,
        _return_value=exc,
    )


def _fix_transferred(batch: Batch, ret: JobReturn, job: Job) -> None:
    """A transferred job ran in a scratch folder: point the JobReturn's paths back at the submit side."""
    if ret.hydra_cfg is not None:
        hydra_node = ret.hydra_cfg.hydra
        # Whether run_job changed into the job folder: hydra.job.chdir may be null, and then Hydra's version
        # base decided on the worker. The worker's working_dir says what it did.
        chdir = ret.working_dir == str(hydra_node.runtime.output_dir)
        with read_write(hydra_node), open_dict(hydra_node):
            hydra_node.sweep.dir = batch.sweep_dir_cfg
            hydra_node.sweep.subdir = job.subdir
            hydra_node.runtime.output_dir = job.job_dir
    else:
        chdir = False
    ret.working_dir = job.job_dir if chdir else batch.cwd


def err_tail(path: str, lines: int = ERR_TAIL_LINES, width: int = 300) -> str:
    """The last non-empty lines of a job's stderr, indented, for an error message ("" if none)."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 64 * 1024))
            text = f.read().decode(errors="replace")
    except OSError:
        return ""
    tail = [line.rstrip() for line in text.splitlines() if line.strip()][-lines:]
    return "".join(f"\n    {line[:width]}" for line in tail)


# Exit codes of the worker whose result file is this run's own (a FAILED result saying what failed).
_RESULT_CODES = frozenset({0, TASK_RAISED, OUTSIDE_FAILURE})


def _no_result_error(batch: Batch, job: Job, rec: JobRecord) -> BaseException:
    """Why a job has no result, with the log paths and (where the job ran) the end of its stderr."""
    settings = batch.settings
    htid = f"{batch.cluster}.{rec.proc}"
    where = batch.job_paths(job)
    stderr_file = batch.layout.stderr(job.num)
    tries = f" (attempt {rec.attempts} of {settings.max_retries + 1})" if rec.retries else ""
    if rec.hold_reason is not None and rec.state is JobState.REMOVED:
        return HeldJobError(
            f"job #{job.num} (HTCondor {htid}) was held {rec.holds} time(s) and removed; "
            f"hold reason: {rec.hold_reason}; {where}"
        )
    if rec.timed_out:
        return JobFailedError(
            f"job #{job.num} (HTCondor {htid}) did not finish before the deadline "
            f"(hydra.launcher.timeout_min={settings.timeout_min:g}) and was removed; {where}"
        )
    if rec.state is JobState.REMOVED:
        return JobFailedError(
            f"job #{job.num} (HTCondor {htid}) was removed ({rec.abort_reason or 'no reason given'}) "
            f"before writing its result; {where}"
        )
    if rec.signal is not None:
        what = f"was killed by signal {rec.signal}{tries}"
    elif rec.exit_code is not None:
        meaning = WORKER_EXIT_CODES.get(rec.exit_code)
        what = f"exited with code {rec.exit_code}{f' ({meaning})' if meaning else ''}{tries}"
    else:
        what = f"ended in state {rec.state.value}"
    # A worker that could not write its result cannot say why: a full sweep folder is the usual reason.
    full = full_disk([os.path.dirname(batch.result_path(job)), batch.sweep_dir])
    tail = err_tail(stderr_file)
    quoted = f"; last lines of {stderr_file}:{tail}" if tail else ""
    return JobFailedError(
        f"job #{job.num} (HTCondor {htid}) {what}{f', {full},' if full else ''} without writing its result "
        f"{batch.result_path(job)}; {where}{quoted}"
    )


def _read_result(batch: Batch, job: Job, rec: JobRecord) -> JobReturn | BaseException:
    result_file = batch.result_path(job)
    htid = f"{batch.cluster}.{rec.proc}"
    if rec.state not in (JobState.DONE, JobState.FAILED) or rec.signal is not None:
        return _no_result_error(batch, job, rec)
    if rec.exit_code not in _RESULT_CODES or not os.path.exists(result_file):
        return _no_result_error(batch, job, rec)
    try:
        with open(result_file, "rb") as f:
            ret = cloudpickle.load(f)
    except Exception as exc:
        return JobFailedError(
            f"job #{job.num} (HTCondor {htid}) wrote an unreadable result {result_file}: "
            f"{type(exc).__name__}: {exc}; {batch.job_paths(job)}"
        )
    if not isinstance(ret, JobReturn):
        return JobFailedError(f"job #{job.num} (HTCondor {htid}): {result_file} holds no JobReturn")
    if ret.cfg is None and ret.hydra_cfg is None:
        # The worker failed before the job had a config: fill in what the submit side knows.
        base = _failed(batch, job, ret._return_value)
        base.status = ret.status
        ret = base
    elif batch.settings.transfer_files:
        _fix_transferred(batch, ret, job)
    return ret


def _with_record(ret: JobReturn, batch: Batch, rec: JobRecord) -> HTCondorJobReturn:
    fields = {f.name: getattr(ret, f.name) for f in dataclasses.fields(JobReturn)}
    return HTCondorJobReturn(
        **fields,
        htcondor_id=f"{batch.cluster}.{rec.proc}",
        attempts=rec.attempts,
        evictions=rec.evictions,
    )


def collect(batch: Batch) -> list[JobReturn]:
    """One real JobReturn per job of a batch whose records are final: the worker's result, or FAILED with
    why there is none. Never raises: a job whose result cannot be made still gets a FAILED one, and the
    other jobs keep theirs."""
    by_num = {rec.num: rec for rec in batch.records.values()}
    results: list[JobReturn] = []
    for job in batch.jobs:
        rec = by_num[job.num]
        try:
            got = _read_result(batch, job, rec)
        except Exception as exc:  # a bug here must not cost the other jobs their results
            log.exception("job #%d: could not collect its result", job.num)
            got = JobFailedError(f"job #{job.num}: the launcher could not collect its result: {exc!r}")
        if isinstance(got, BaseException):
            log.error("%s", got)
            got = _failed(batch, job, got)
        elif sys.version_info < (3, 11) and got.status == JobStatus.FAILED:
            # Python 3.10 prints no exception notes: the worker's traceback would never reach the console.
            for note in getattr(got._return_value, "__notes__", ()):
                log.error("job #%d: %s", job.num, note)
        results.append(_with_record(got, batch, rec))
    return results


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


def open_manifest(batch: Batch, current: Manifest | None = None) -> Manifest:
    """The sweep's manifest: `current` (an earlier batch of this process opened it), the one on disk
    (resume=true), else a new one with a new sweep id. A job whose overrides differ from the manifest's
    stops the run with one line."""
    settings = batch.settings
    path = manifest_path(batch.sweep_dir)
    if current is not None and current.sweep_dir == batch.sweep_dir:
        manifest = current
    elif settings.resume and os.path.exists(path):
        _refuse_sampling_sweeper(batch, "hydra.launcher.resume=true in a sweep folder with a manifest")
        manifest = Manifest.load(batch.sweep_dir)
    else:
        if settings.resume:
            _refuse_lost_manifest(batch)
        return Manifest.new(
            batch.sweep_dir,
            batch.htcondor_dir,
            command=list(sys.argv),
            schedd=settings.schedd,
            collector=settings.collector,
        )
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
    return manifest


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


def _refuse_sampling_sweeper(batch: Batch, what: str) -> None:
    """A sweeper that samples its jobs (Optuna) gives job #N other overrides on every run: the manifest's
    job numbers cannot name its trials, and a detached run would need the results of batch 1 before
    batch 2 exists. Its own storage (hydra.sweeper.storage + study_name) is how such a study resumes."""
    target = str(OmegaConf.select(batch.config, "hydra.sweeper._target_", default="") or "")
    if "optuna" in target.lower():
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
        "ClusterId", "ProcId", "HydraJobNum", "JobStatus", "UserLog", "NumJobStarts", "JobLeaseDuration"
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
    try:
        with open(path, "rb") as f:
            ret = cloudpickle.load(f)
    except Exception:
        return None
    ok = isinstance(ret, JobReturn) and ret.status == JobStatus.COMPLETED
    return ret if ok else None


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
        before = ", ".join(sorted(_sources.SNAPSHOT_PREFIX + digest for digest in old))
        parts.append(f"the config sources (snapshot {before} in {batch.htcondor_dir}; now another)")
    nums = sorted(changes)
    shown = ", ".join(f"#{n}" for n in nums[:5]) + (f" ... #{nums[-1]}" if len(nums) > 5 else "")
    log.warning(
        "HTCondor launcher: %s changed since %d job(s) ran (%s): running them again, not reusing their "
        "results",
        " and ".join(parts),
        len(nums),
        shown,
    )


def plan_resume(
    batch: Batch, manifest: Manifest, schedd: Any, inputs: dict[str, str] | None = None
) -> ResumePlan:
    """Reuse finished results, re-attach to jobs still in HTCondor, submit the rest. The queue is asked by
    the sweep id, so a job submitted just before a crash (not yet in the manifest) is found too. A job whose
    task or configs changed (`inputs`, see INPUTS) runs again; one still queued with the old ones stops the
    run (ManifestError): removing it would throw away work the user may still want."""
    plan = ResumePlan()
    queued = _sweep_jobs(schedd, manifest.sweep_id, history=False, settings=batch.settings)
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
        live = [ad for ad in queued.get(job.num, []) if int(ad.get("JobStatus", 0)) in _LIVE_STATUS]
        if live:
            ad = max(live, key=lambda a: (int(a["ClusterId"]), int(a["ProcId"])))
            cluster, proc = int(ad["ClusterId"]), int(ad["ProcId"])
            if changed:
                stale_live.append(f"#{job.num} ({cluster}.{proc})")
                continue
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
                lease_s=job_lease_s(ad),
            )
            continue
        result = None if changed else _completed_result(batch.result_path(job))
        if result is not None:
            plan.reused[job.num] = _reused(batch, job, entry, result)
            continue
        plan.to_submit.append(job)
        plan.resubmitted += bool(entry)
    if stale_live:
        what = " and ".join(sorted({name for names in changes.values() for name in names}))
        shown = ", ".join(stale_live[:5]) + (" ..." if len(stale_live) > 5 else "")
        raise ManifestError(
            f"the {what.replace('task', 'task code')} changed since {len(stale_live)} job(s) of the sweep in "
            f"{batch.sweep_dir} were submitted, and they are still in HTCondor: {shown}; to run them anew, "
            f"remove them first (hydra-htcondor rm {shlex.quote(batch.sweep_dir)}) and re-run; to collect "
            "them, restore the task and configs they were submitted with"
        )
    if changes:
        _say_changed(batch, batch.task_function, changes, old_configs)
    plan.reattached = list(groups.values())
    return plan


def _reused(batch: Batch, job: Job, entry: dict[str, Any], ret: JobReturn) -> HTCondorJobReturn:
    """A stored COMPLETED result, as the launcher returns results (paths fixed for transferred jobs)."""
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
    got = _read_result(sub, job, rec)
    if isinstance(got, BaseException):  # unreachable for a loadable COMPLETED result; keep it honest
        got = _failed(batch, job, got)
    out = _with_record(got, sub, rec)
    if cluster is None or proc is None:
        out.htcondor_id = None
    return out


def _save_batch(manifest: Manifest, sub: Batch) -> None:
    assert sub.cluster is not None
    for rec in sub.records.values():
        manifest.record(rec, sub.cluster, sub.log_file)
    _save_queued(manifest, manifest.save)


# Manifests this process could not write (warned about once each).
_unsaved: set[str] = set()


def _save_queued(manifest: Manifest, save: Callable[[], None]) -> None:
    """Save the manifest of a sweep whose jobs are queued: one that cannot be written (a full sweep folder)
    costs a later resume its record, never this run its results."""
    try:
        save()
    except OSError as exc:
        if manifest.path not in _unsaved:
            _unsaved.add(manifest.path)
            why = full_disk([os.path.dirname(manifest.path)], exc) or f"{type(exc).__name__}: {exc}"
            log.warning("could not write the sweep manifest %s (%s); the jobs go on", manifest.path, why)


def _follow_hint(batch: Batch) -> str:
    """The commands that follow and collect a sweep: the same command line with its hydra.sweep.dir."""
    args = [a for a in sys.argv[1:] if not a.startswith(("hydra.sweep.dir=", "hydra.launcher.detach="))]
    cmd = shlex.join([sys.executable, sys.argv[0], *args, f"hydra.sweep.dir={batch.sweep_dir}"])
    return (
        f"follow it with: hydra-htcondor status {shlex.quote(batch.sweep_dir)} --watch; "
        f"collect it (re-attaches, submits nothing twice) with: {cmd}"
    )


def launch(
    conf: HTCondorLauncherConf,
    config: DictConfig,
    hydra_context: HydraContext,
    task_function: TaskFunction,
    job_overrides: Sequence[Sequence[str]],
    initial_job_idx: int,
    opened: Manifest | None,
    keep: Callable[[Manifest], None],
) -> Sequence[JobReturn]:
    """Launch one batch of a sweep and return its results. `opened` is the sweep's manifest an earlier
    batch of this run opened (None at the first); `keep` is given the manifest this batch opens, for the
    next batch (resume=false starts afresh once, not at every batch)."""
    setup_globals()
    configure_log(config.hydra.hydra_logging, config.hydra.verbose)

    batch = new_batch(conf, config, hydra_context, task_function)
    htcondor = _import_htcondor()
    schedd = connect(htcondor, batch.settings)  # before any folder is created
    add_jobs(batch, job_overrides, initial_job_idx)
    ours = opened if opened is not None and opened.sweep_dir == batch.sweep_dir else None
    fresh = ours is None and not (batch.settings.resume and os.path.exists(manifest_path(batch.sweep_dir)))
    if batch.settings.detach:
        _refuse_sampling_sweeper(batch, "hydra.launcher.detach=true")
    manifest = open_manifest(batch, ours)
    keep(manifest)
    sources = _sources.gather(
        batch.config,
        batch.hydra_context.config_loader,
        cwd=batch.cwd,
        htcondor_dir=batch.htcondor_dir,
        sweep_dir=batch.sweep_dir,
    )
    inputs = {"task": task_digest(batch.task_function), "configs": sources.digest}
    rplan = (
        ResumePlan(to_submit=list(batch.jobs)) if fresh else plan_resume(batch, manifest, schedd, inputs)
    )
    if rplan.resuming:
        log.info("%s", rplan.summary())
    for num in rplan.reused:  # it may have finished while nobody followed it
        entry = manifest.job(num)
        if entry is not None:
            entry["state"] = JobState.DONE.value

    watched: list[Batch] = list(rplan.reattached)
    if rplan.to_submit:
        new = dataclasses.replace(batch, jobs=rplan.to_submit, cluster=None, records={})
        tic = time.perf_counter()
        plan = prepare(new, fresh_log=fresh, sweep_id=manifest.sweep_id, sources=sources)
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
        submit(new, htcondor, schedd, plan)
        _save_batch(manifest, new)
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
        watched.append(new)
    for sub in rplan.reattached:
        log.info(
            "HTCondor launcher: re-attached to cluster %d (jobs %s), following %s",
            sub.cluster,
            sub.nums,
            sub.log_file,
        )
        _save_batch(manifest, sub)
    _save_queued(manifest, manifest.save)

    hint = _follow_hint(batch)
    if batch.settings.detach and watched:
        log.info(
            "detached: %d job(s) in HTCondor, none waited for; %s",
            sum(len(sub.jobs) for sub in watched),
            hint,
        )
        logging.shutdown()
        raise SystemExit(0)

    by_num: dict[int, JobReturn] = dict(rplan.reused)
    # Each cluster is followed in turn (its jobs run meanwhile all the same).
    for i, sub in enumerate(watched):
        try:
            save = functools.partial(_save_batch, manifest, sub)
            _wait.watch(
                sub,
                htcondor,
                schedd,
                on_change=save,
                resume_hint=hint,
                # Once: the cross-check retries at its next turn anyway, and must not stall the loop.
                reconnect=functools.partial(connect, htcondor, batch.settings, tries=1),
                sweep_id=manifest.sweep_id,
            )
        except KeyboardInterrupt:
            if batch.settings.on_interrupt == OnInterrupt.remove:  # also the clusters not followed yet
                for rest in watched[i + 1 :]:
                    _wait.remove_batch(rest, htcondor, schedd, "interrupted (Ctrl-C)")
            raise
        finally:
            _save_batch(manifest, sub)
        for job, ret in zip(sub.jobs, collect(sub), strict=True):
            by_num[job.num] = ret
    results = [by_num[job.num] for job in batch.jobs]
    # `hydra-htcondor status` shows them without unpickling every result
    _save_queued(manifest, functools.partial(manifest.returned, by_num))
    _log_summary(batch, results)
    return results


def _log_summary(batch: Batch, results: Sequence[JobReturn]) -> None:
    # What a user wants to see once a batch is back: each job's outcome, without opening the job folders.
    done = sum(ret.status == JobStatus.COMPLETED for ret in results)
    ids = sorted(
        {
            ret.htcondor_id.split(".")[0]
            for ret in results
            if isinstance(ret, HTCondorJobReturn) and ret.htcondor_id
        },
        key=int,
    )
    where = f"HTCondor cluster{'s' if len(ids) > 1 else ''} {', '.join(ids)}" if ids else "HTCondor sweep"
    log.info("%s: %d of %d job(s) completed", where, done, len(results))
    for job, ret in zip(batch.jobs, results, strict=True):
        if ret.status == JobStatus.COMPLETED:
            outcome = f"-> {ret.return_value!r}"
        else:  # the cause's first line; the whole of it (and a task's traceback) comes with the result
            cause = ret._return_value
            first = str(cause).strip().splitlines()[0] if str(cause).strip() else ""
            outcome = f"FAILED: {type(cause).__name__}: {first}"[:300]
        log.info("\t#%d : %s %s", job.num, job.shown_overrides, outcome)
