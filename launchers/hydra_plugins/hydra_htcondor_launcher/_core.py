"""Launching a batch: validate, check the pool, write job specs, submit one cluster, wait, collect results.

The Batch flows through: new_batch (validated settings) -> connect -> add_jobs -> prepare (files on disk)
-> submit (cluster, records) -> _wait.watch (records final) -> collect (one JobReturn per job).
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import os
import pickle
import sys
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import cloudpickle
from hydra.core.config_store import ConfigStore
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, JobStatus, configure_log, setup_globals
from hydra.types import HydraContext
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

from . import _submit, _wait, _worker
from ._batch import Batch, HTCondorJobReturn, Job
from ._errors import HeldJobError, JobFailedError, PoolUnreachableError, SubmitError
from ._jobstate import JobRecord, JobState
from ._settings import Settings, validate

if TYPE_CHECKING:
    from .htcondor_launcher import HTCondorLauncher

log = logging.getLogger(__name__)
# Lines of a job's stderr quoted in the error of a job that left no result.
ERR_TAIL_LINES = 8


def _import_htcondor() -> Any:
    # The bindings read CONDOR_CONFIG at import; importing late lets tests and users set it first.
    import htcondor2

    return htcondor2


def connect(htcondor: Any, settings: Settings) -> Any:
    """Locate the schedd and make one cheap query, so an unreachable pool fails before any folder exists."""
    where = (
        settings.collector
        or f"the collector named by CONDOR_CONFIG={os.environ.get('CONDOR_CONFIG', '(unset)')}"
    )
    try:
        if settings.collector is not None or settings.schedd is not None:
            collector = htcondor.Collector(settings.collector) if settings.collector else htcondor.Collector()
            if settings.schedd is not None:
                ad = collector.locate(htcondor.DaemonType.Schedd, settings.schedd)
            else:
                ad = collector.locate(htcondor.DaemonType.Schedd)
            schedd = htcondor.Schedd(ad)
        else:
            schedd = htcondor.Schedd()
        schedd.query(constraint="false", projection=["ClusterId"], limit=1)
    except Exception as exc:
        detail = " ".join(str(exc).split()) or type(exc).__name__
        name = f"schedd {settings.schedd!r}" if settings.schedd else "the schedd"
        raise PoolUnreachableError(
            f"HTCondor pool unreachable: cannot contact {name} via {where}: {detail}"
        ) from None
    return schedd


def new_batch(launcher: HTCondorLauncher) -> Batch:
    """The batch's context and validated settings; no jobs yet, nothing on disk or in the pool."""
    assert launcher.config is not None
    assert launcher.task_function is not None
    assert launcher.hydra_context is not None
    cwd = os.getcwd()
    sweep_dir_cfg = launcher.config.hydra.sweep.dir
    sweep_dir = os.path.abspath(str(sweep_dir_cfg))
    settings = validate(launcher.conf, cwd=cwd, sweep_dir=sweep_dir, default_python=sys.executable)
    return Batch(
        settings=settings,
        config=launcher.config,
        hydra_context=launcher.hydra_context,
        task_function=launcher.task_function,
        cwd=cwd,
        sweep_dir=sweep_dir,
        sweep_dir_cfg=sweep_dir_cfg,
    )


def _compose(batch: Batch, overrides: Sequence[str], num: int) -> DictConfig:
    sweep_config = batch.hydra_context.config_loader.load_sweep_config(batch.config, list(overrides))
    with open_dict(sweep_config):
        # Provisional; the worker sets the real HTCondor id (ClusterId.ProcId).
        sweep_config.hydra.job.id = f"{sweep_config.hydra.job.name}_{num}"
        sweep_config.hydra.job.num = num
    return sweep_config


def add_jobs(batch: Batch, job_overrides: Sequence[Sequence[str]], first: int) -> None:
    """One Job per job; composes the sweep configs here unless the workers will (bad overrides were already
    caught by the sweeper's own validation of the batch)."""
    for idx, overrides in enumerate(job_overrides):
        num = first + idx
        if batch.settings.compose_on_worker:
            batch.jobs.append(Job(num, list(overrides)))
            continue
        sweep_config = _compose(batch, overrides, num)
        subdir = str(OmegaConf.select(sweep_config, "hydra.sweep.subdir"))
        batch.jobs.append(
            Job(num, list(overrides), sweep_config, os.path.join(batch.sweep_dir, subdir), subdir)
        )


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


def _common_payload(batch: Batch) -> dict[str, Any]:
    """What every job of the batch needs from the submit side.

    A worker that composes its own config (compose_on_worker: shared filesystem, same environment) gets the
    config loader, the whole Singleton state and the sweep's config. Any other worker gets a composed config
    and only what run_job uses: the task, the callbacks and the Singleton state without ConfigStore,
    GlobalHydra and HydraConfig (run_job sets that one itself). Those hold the structured-config classes of
    every Hydra plugin installed on the submit side, pickled by reference: the worker would need all those
    plugins installed just to unpickle the spec.
    """
    if batch.settings.compose_on_worker:
        return {
            "task_function": batch.task_function,
            "hydra_context": batch.hydra_context,
            "singleton_state": Singleton.get_state(),
            "cwd": batch.cwd,
            "config": batch.config,
        }
    state = Singleton.get_state()
    dropped = (ConfigStore, GlobalHydra, HydraConfig)
    state["instances"] = {cls: obj for cls, obj in state["instances"].items() if cls not in dropped}
    return {
        "task_function": batch.task_function,
        # run_job uses only the callbacks; the config loader's repository is what drags the plugins in.
        "hydra_context": HydraContext(
            config_loader=None,  # type: ignore[arg-type]
            callbacks=batch.hydra_context.callbacks,
        ),
        "singleton_state": state,
        "cwd": batch.cwd,
        "config": None,
    }


def _portable(sweep_config: DictConfig) -> DictConfig:
    """The job's config without plugin classes: hydra.sweeper is typed by the sweeper plugin's dataclass
    (e.g. OptunaSweeperConf), which a worker neither has nor needs; it becomes a plain node."""
    portable = copy.deepcopy(sweep_config)
    with read_write(portable.hydra), open_dict(portable.hydra):
        portable.hydra.sweeper = OmegaConf.create(
            OmegaConf.to_container(portable.hydra.sweeper, resolve=False, enum_to_str=True)
        )
    return portable


def write_specs(batch: Batch) -> None:
    """One spec file per job: what the worker needs to run it (see _worker)."""
    # The heavy, shared part (task function, Hydra context, Singleton state) is pickled once per batch.
    payload = cloudpickle.dumps(_common_payload(batch))
    sys_path = _user_sys_path()
    for job in batch.jobs:
        result = batch.result_path(job)
        per_job = cloudpickle.dumps({"sweep_config": job.sweep_config, "overrides": job.overrides})
        # Plain pickle of builtins: the worker fixes sys.path before it unpickles the user's types, and knows
        # where its result goes even when nothing else can be unpickled there.
        place = {
            "num": job.num,
            "overrides": list(job.overrides),
            "result_path": result,
            "result_relpath": os.path.relpath(result, batch.sweep_dir),
            "job_subdir": job.subdir,
            "submit_sweep_dir": batch.sweep_dir,
        }
        spec = pickle.dumps({"sys_path": sys_path, "place": place, "common": payload, "job": per_job})
        with open(_submit.spec_path(batch.htcondor_dir, job.num), "wb") as f:
            f.write(spec)


def prepare(batch: Batch) -> _submit.SubmitPlan:
    """Create the folders, clear a previous run's event log and results, write the wrapper and job specs;
    returns the submit description."""
    os.makedirs(batch.sweep_dir, exist_ok=True)
    if "mode" in batch.config.hydra.sweep:
        os.chmod(batch.sweep_dir, mode=int(str(batch.config.hydra.sweep.mode), 8))
    os.makedirs(batch.htcondor_dir, exist_ok=True)
    plan = _submit.build_submit(
        batch.settings,
        sweep_dir=batch.sweep_dir,
        cwd=batch.cwd,
        job_nums=batch.nums,
        job_subdirs=[job.subdir for job in batch.jobs],
    )
    # A re-run into the same sweep folder: start a fresh event log, and no stale result may pass for new.
    for stale in (batch.log_file, *(batch.result_path(job) for job in batch.jobs)):
        if os.path.exists(stale):
            os.remove(stale)
    if plan.wrapper_path is not None and plan.wrapper_text is not None:
        with open(plan.wrapper_path, "w") as f:
            f.write(plan.wrapper_text)
        os.chmod(plan.wrapper_path, 0o755)
    write_specs(batch)
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
    batch.submitted(result.cluster(), result.first_proc())


def _task_name(batch: Batch) -> str | None:
    try:
        return str(batch.config.hydra.job.name)
    except Exception:  # an unresolvable interpolation must not cost the batch its results
        return None


def _failed(batch: Batch, job: Job, exc: BaseException) -> JobReturn:
    """A FAILED JobReturn carrying `exc`. Never raises: it uses only what the submit side already has (the
    job's config where the submit side composed it), never composes or resolves anything."""
    cfg = hydra_cfg = None
    if job.sweep_config is not None:
        try:
            cfg = OmegaConf.masked_copy(job.sweep_config, [str(k) for k in job.sweep_config if k != "hydra"])
            hydra_cfg = OmegaConf.masked_copy(job.sweep_config, ["hydra"])
        except Exception as copy_error:
            log.debug("job #%d: no config for its FAILED result: %s", job.num, copy_error)
    return JobReturn(
        overrides=list(job.overrides),
        cfg=cfg,
        hydra_cfg=hydra_cfg,
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
_RESULT_CODES = frozenset({0, _worker.TASK_RAISED, _worker.OUTSIDE_FAILURE})


def _no_result_error(batch: Batch, job: Job, rec: JobRecord) -> BaseException:
    """Why a job has no result, with the log paths and (where the job ran) the end of its stderr."""
    settings = batch.settings
    htid = f"{batch.cluster}.{rec.proc}"
    where = batch.job_paths(job)
    stderr_file = _submit.stderr_path(batch.htcondor_dir, job.num)
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
        what = f"exited with code {rec.exit_code}{tries}"
    else:
        what = f"ended in state {rec.state.value}"
    tail = err_tail(stderr_file)
    quoted = f"; last lines of {stderr_file}:{tail}" if tail else ""
    return JobFailedError(
        f"job #{job.num} (HTCondor {htid}) {what} without writing its result {batch.result_path(job)}; "
        f"{where}{quoted}"
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
        results.append(_with_record(got, batch, rec))
    return results


def launch(
    launcher: HTCondorLauncher, job_overrides: Sequence[Sequence[str]], initial_job_idx: int
) -> Sequence[JobReturn]:
    setup_globals()
    assert launcher.config is not None
    configure_log(launcher.config.hydra.hydra_logging, launcher.config.hydra.verbose)

    batch = new_batch(launcher)
    htcondor = _import_htcondor()
    schedd = connect(htcondor, batch.settings)  # before any folder is created
    add_jobs(batch, job_overrides, initial_job_idx)

    tic = time.perf_counter()
    plan = prepare(batch)
    submit(batch, htcondor, schedd, plan)
    log.info(
        "HTCondor launcher: %d job(s) submitted as cluster %d in %.2fs; sweep dir %s, job logs in %s",
        len(batch.jobs),
        batch.cluster,
        time.perf_counter() - tic,
        batch.sweep_dir,
        batch.htcondor_dir,
    )
    for job in batch.jobs:
        log.info("\t#%d : %s", job.num, job.shown_overrides)

    _wait.watch(batch, htcondor, schedd)
    results = collect(batch)
    _log_summary(batch, results)
    return results


def _log_summary(batch: Batch, results: Sequence[JobReturn]) -> None:
    # What a user wants to see once a batch is back: each job's outcome, without opening the job folders.
    done = sum(ret.status == JobStatus.COMPLETED for ret in results)
    log.info("HTCondor cluster %d: %d of %d job(s) completed", batch.cluster, done, len(results))
    for job, ret in zip(batch.jobs, results, strict=True):
        if ret.status == JobStatus.COMPLETED:
            outcome = f"-> {ret.return_value!r}"
        else:  # the cause's first line; the whole of it (and a task's traceback) comes with the result
            cause = ret._return_value
            first = str(cause).strip().splitlines()[0] if str(cause).strip() else ""
            outcome = f"FAILED: {type(cause).__name__}: {first}"[:300]
        log.info("\t#%d : %s %s", job.num, job.shown_overrides, outcome)
