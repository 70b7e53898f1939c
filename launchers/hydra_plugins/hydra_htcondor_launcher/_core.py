"""Submitting a batch: validate, check the pool, write job specs, submit one cluster.

The Batch flows through: new_batch (validated settings) -> connect -> add_jobs -> prepare (files on disk)
-> submit (cluster, records). The sweep engine (``_sweep``) calls these, then follows the clusters and
collects the results; what a re-run does with each job is ``_resume``'s.
"""

from __future__ import annotations

import hashlib
import logging
import os
import pickle
import shlex
import sys
from collections.abc import Callable, Sequence
from typing import Any

import cloudpickle
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf, open_dict

from . import _code, _schedd, _sources, _submit
from ._batch import Batch, Job
from ._contract import write_atomic
from ._disk import full_disk
from ._errors import PoolUnreachableError, SubmitError
from ._manifest import Manifest
from ._settings import Settings, validate
from .config import HTCondorLauncherConf

log = logging.getLogger(__name__)


def import_htcondor() -> Any:
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


# Manifests this process could not write (warned about once each).
_unsaved: set[str] = set()


def save_queued(manifest: Manifest, save: Callable[[], None]) -> None:
    """Save the manifest of a sweep whose jobs are queued: one that cannot be written (a full sweep folder)
    costs a later resume its record, never this run its results."""
    try:
        save()
    except OSError as exc:
        if manifest.path not in _unsaved:
            _unsaved.add(manifest.path)
            why = full_disk([os.path.dirname(manifest.path)], exc) or f"{type(exc).__name__}: {exc}"
            log.warning("could not write the sweep manifest %s (%s); the jobs go on", manifest.path, why)


def follow_hint(sweep_dir: str) -> str:
    """The commands that follow and collect a sweep: the same command line with its hydra.sweep.dir."""
    args = [a for a in sys.argv[1:] if not a.startswith(("hydra.sweep.dir=", "hydra.launcher.detach="))]
    cmd = shlex.join([sys.executable, sys.argv[0], *args, f"hydra.sweep.dir={sweep_dir}"])
    return (
        f"follow it with: hydra-htcondor status {shlex.quote(sweep_dir)} --watch; "
        f"collect it (re-attaches, submits nothing twice) with: {cmd}"
    )
