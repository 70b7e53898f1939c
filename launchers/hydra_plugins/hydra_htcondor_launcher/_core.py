"""Launching a batch: validate, check the pool, write job specs, submit one cluster, wait, collect results.

The Batch flows through: new_batch (validated settings) -> connect -> add_jobs -> prepare (files on disk)
-> submit (cluster, records) -> _wait.watch (records final) -> collect (one JobReturn per job). What a
re-run does with each job is ``_resume``'s; the results and the texts of failures are ``_results``'.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import logging
import os
import pickle
import shlex
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import cloudpickle
from hydra.core.utils import JobReturn, configure_log, setup_globals
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf, open_dict

from . import _code, _results, _resume, _schedd, _sources, _submit, _wait
from ._batch import Batch, Job
from ._contract import write_atomic
from ._disk import full_disk
from ._errors import PoolUnreachableError, SubmitError
from ._jobstate import JobState
from ._layout import manifest_path
from ._manifest import Manifest
from ._settings import Settings, validate
from .config import HTCondorLauncherConf, OnInterrupt

log = logging.getLogger(__name__)


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


def write_specs(batch: Batch, kit: _sources.Kit, code: dict[str, Any] | None = None) -> str:
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
        spec = pickle.dumps({"sys_path": sys_path, "code": code, "place": place})
        with open(batch.layout.spec(job.num), "wb") as f:
            f.write(spec)
    return common


def prepare(
    batch: Batch,
    *,
    fresh_log: bool = True,
    sweep_id: str | None = None,
    sources: _sources.Sources | None = None,
    code: _code.Code | None = None,
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
    shipped = _code.write(batch.layout, code)  # the app's code snapshot, if its jobs run from one
    common = write_specs(batch, kit, shipped)
    plan = _submit.build_submit(
        batch.settings,
        sweep_dir=batch.sweep_dir,
        cwd=batch.cwd,
        job_nums=batch.nums,
        job_subdirs=[job.subdir for job in batch.jobs],
        sweep_id=sweep_id,
        batch_inputs=[common, kit.snapshot_dir, *([shipped["dir"]] if shipped else [])],
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
    batch.submitted(result.cluster(), result.first_proc(), lease_s=_schedd.job_lease_s(result.clusterad()))


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
        _resume.refuse_sampling_sweeper(batch, "hydra.launcher.detach=true")
    manifest = _resume.open_manifest(batch, ours)
    keep(manifest)
    sources = _sources.gather(
        batch.config,
        batch.hydra_context.config_loader,
        cwd=batch.cwd,
        htcondor_dir=batch.htcondor_dir,
        sweep_dir=batch.sweep_dir,
    )
    code = _code.for_jobs(batch.settings, skip=[batch.sweep_dir, batch.htcondor_dir])
    inputs = {"task": _resume.task_digest(batch.task_function), "configs": sources.digest}
    inputs.update(_code.inputs(code))
    if fresh:
        rplan = _resume.ResumePlan(to_submit=list(batch.jobs))
    else:
        rplan = _resume.plan_resume(batch, manifest, schedd, inputs)
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
        plan = prepare(new, fresh_log=fresh, sweep_id=manifest.sweep_id, sources=sources, code=code)
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
        for job, ret in zip(sub.jobs, _results.collect(sub), strict=True):
            by_num[job.num] = ret
    results = [by_num[job.num] for job in batch.jobs]
    # `hydra-htcondor status` shows them without unpickling every result
    _save_queued(manifest, functools.partial(manifest.returned, by_num))
    _results.log_summary(batch, results)
    return results


