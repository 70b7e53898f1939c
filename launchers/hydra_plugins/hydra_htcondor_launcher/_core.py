"""Launching a batch: validate, check the pool, write job specs, submit one cluster, wait, collect results."""

from __future__ import annotations

import logging
import os
import pickle
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import cloudpickle
from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, JobStatus, configure_log, filter_overrides, setup_globals
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

from . import _events, _submit
from ._errors import (
    ConfigError,
    HeldJobError,
    JobFailedError,
    PoolUnreachableError,
    SubmitError,
)
from ._settings import Settings, validate

if TYPE_CHECKING:
    from .htcondor_launcher import HTCondorLauncher

log = logging.getLogger(__name__)


@dataclass
class _Job:
    num: int
    overrides: list[str]
    # Composed on the submit side only where the worker cannot compose it (see _compose_on_worker).
    sweep_config: DictConfig | None = None
    job_dir: str = ""  # as computed on the submit side ("" when composed on the worker)
    subdir: str = ""


def _compose_on_worker(settings: Settings) -> bool:
    """Composing a job's config costs ~50 ms (Hydra re-composes everything per job); on a shared filesystem
    the workers do it in parallel, with the same config sources. Elsewhere (file transfer, containers,
    packed environments) the config folders may not exist on the worker, so the submit side composes."""
    return settings.env_mode == "shared" and not settings.transfer_files


def _compose(launcher: HTCondorLauncher, overrides: Sequence[str], num: int) -> DictConfig:
    assert launcher.config is not None and launcher.hydra_context is not None
    sweep_config = launcher.hydra_context.config_loader.load_sweep_config(launcher.config, list(overrides))
    with open_dict(sweep_config):
        # Provisional; the worker sets the real HTCondor id (ClusterId.ProcId).
        sweep_config.hydra.job.id = f"{sweep_config.hydra.job.name}_{num}"
        sweep_config.hydra.job.num = num
    return sweep_config


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


def _job_paths(settings: Settings, num: int, log_file: str) -> str:
    htdir = settings.htcondor_dir
    return (
        f"stdout {_submit.stdout_path(htdir, num)}, stderr {_submit.stderr_path(htdir, num)}, "
        f"HTCondor log {log_file}"
    )


def _failed(launcher: HTCondorLauncher, job: _Job, exc: BaseException) -> JobReturn:
    sweep_config = (
        job.sweep_config if job.sweep_config is not None else _compose(launcher, job.overrides, job.num)
    )
    cfg = OmegaConf.masked_copy(sweep_config, [k for k in sweep_config if k != "hydra"])
    hydra_cfg = OmegaConf.masked_copy(sweep_config, ["hydra"])
    job_dir = job.job_dir or os.path.join(
        os.path.abspath(str(sweep_config.hydra.sweep.dir)),
        str(OmegaConf.select(sweep_config, "hydra.sweep.subdir")),
    )
    return JobReturn(
        overrides=list(job.overrides),
        cfg=cfg,
        hydra_cfg=hydra_cfg,
        working_dir=job_dir,
        task_name=str(sweep_config.hydra.job.name),
        status=JobStatus.FAILED,
        _return_value=exc,
    )


def _fix_transferred(ret: JobReturn, job: _Job, sweep_dir_cfg: Any, cwd: str) -> None:
    """A transferred job ran in a scratch folder: point the JobReturn's paths back at the submit side."""
    if ret.hydra_cfg is not None:
        hydra_node = ret.hydra_cfg.hydra
        with read_write(hydra_node), open_dict(hydra_node):
            hydra_node.sweep.dir = sweep_dir_cfg
            hydra_node.sweep.subdir = job.subdir
            hydra_node.runtime.output_dir = job.job_dir
        chdir = ret.hydra_cfg.hydra.job.chdir
    else:
        chdir = False
    ret.working_dir = job.job_dir if chdir else cwd


def collect(
    launcher: HTCondorLauncher,
    settings: Settings,
    jobs: Sequence[_Job],
    states: dict[int, _events.ProcState],
    cluster: int,
    log_file: str,
    sweep_dir_cfg: Any,
    cwd: str,
) -> list[JobReturn]:
    """One real JobReturn per job: the worker's result, or FAILED with why there is none."""
    by_num = {st.num: st for st in states.values()}
    results = []
    for job in jobs:
        st = by_num[job.num]
        htid = f"{cluster}.{st.proc}"
        where = _job_paths(settings, job.num, log_file)
        result_file = _submit.result_path(settings.htcondor_dir, job.num)
        if st.hold_reason is not None and st.state == _events.REMOVED:
            error: BaseException = HeldJobError(
                f"job #{job.num} (HTCondor {htid}) was held {st.holds} time(s) and removed; "
                f"hold reason: {st.hold_reason}; {where}"
            )
        elif st.timed_out:
            error = JobFailedError(
                f"job #{job.num} (HTCondor {htid}) did not finish before the deadline "
                f"(hydra.launcher.timeout_min={settings.timeout_min:g}) and was removed; {where}"
            )
        elif st.state == _events.REMOVED:
            error = JobFailedError(
                f"job #{job.num} (HTCondor {htid}) was removed ({st.abort_reason or 'no reason given'}) "
                f"before writing its result; {where}"
            )
        elif st.state == _events.DONE and os.path.exists(result_file):
            try:
                with open(result_file, "rb") as f:
                    ret = cloudpickle.load(f)
            except Exception as exc:
                error = JobFailedError(
                    f"job #{job.num} (HTCondor {htid}) wrote an unreadable result {result_file}: "
                    f"{type(exc).__name__}: {exc}; {where}"
                )
            else:
                if settings.transfer_files:
                    _fix_transferred(ret, job, sweep_dir_cfg, cwd)
                results.append(ret)
                continue
        elif st.signal is not None:
            error = JobFailedError(
                f"job #{job.num} (HTCondor {htid}) was killed by signal {st.signal} before writing its "
                f"result; {where}"
            )
        elif st.exit_code is not None:
            error = JobFailedError(
                f"job #{job.num} (HTCondor {htid}) exited with code {st.exit_code} without writing its "
                f"result {result_file}; {where}"
            )
        else:
            error = JobFailedError(
                f"job #{job.num} (HTCondor {htid}) ended in state {st.state} without a result; {where}"
            )
        log.error("%s", error)
        results.append(_failed(launcher, job, error))
    return results


def _build_jobs(
    launcher: HTCondorLauncher, settings: Settings, job_overrides: Sequence[Sequence[str]], first: int
) -> list[_Job]:
    """One _Job per job; composes the sweep configs here unless the workers will (bad overrides were already
    caught by the sweeper's own validation of the batch)."""
    assert launcher.config is not None
    jobs = []
    sweep_dir = os.path.abspath(str(launcher.config.hydra.sweep.dir))
    for idx, overrides in enumerate(job_overrides):
        num = first + idx
        if _compose_on_worker(settings):
            jobs.append(_Job(num, list(overrides)))
            continue
        sweep_config = _compose(launcher, overrides, num)
        subdir = str(OmegaConf.select(sweep_config, "hydra.sweep.subdir"))
        jobs.append(_Job(num, list(overrides), sweep_config, os.path.join(sweep_dir, subdir), subdir))
    return jobs


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


def _write_specs(
    launcher: HTCondorLauncher, settings: Settings, jobs: Sequence[_Job], cwd: str, sweep_dir: str
) -> None:
    # The heavy, shared part (task function, Hydra context, Singleton state) is pickled once per batch.
    payload = cloudpickle.dumps(
        {
            "task_function": launcher.task_function,
            "hydra_context": launcher.hydra_context,
            "singleton_state": Singleton.get_state(),
            "cwd": cwd,
            # The sweep's own config, from which a worker composes its job's config (_compose_on_worker).
            "config": launcher.config,
        }
    )
    sys_path = _user_sys_path()
    for job in jobs:
        result = _submit.result_path(settings.htcondor_dir, job.num)
        per_job = cloudpickle.dumps(
            {
                "sweep_config": job.sweep_config,
                "overrides": job.overrides,
                "num": job.num,
                "result_path": result,
                "job_subdir": job.subdir,
                "result_relpath": os.path.relpath(result, sweep_dir),
            }
        )
        # A plain-pickle envelope: the worker must fix sys.path before it can unpickle the user's types.
        spec = pickle.dumps({"sys_path": sys_path, "common": payload, "job": per_job})
        path = _submit.spec_path(settings.htcondor_dir, job.num)
        with open(path, "wb") as f:
            f.write(spec)


def launch(
    launcher: HTCondorLauncher, job_overrides: Sequence[Sequence[str]], initial_job_idx: int
) -> Sequence[JobReturn]:
    setup_globals()
    assert launcher.config is not None
    assert launcher.task_function is not None
    assert launcher.hydra_context is not None
    configure_log(launcher.config.hydra.hydra_logging, launcher.config.hydra.verbose)

    cwd = os.getcwd()
    settings = validate(launcher.params, cwd=cwd, default_python=sys.executable)
    sweep_dir_cfg = launcher.config.hydra.sweep.dir
    sweep_dir = os.path.abspath(str(sweep_dir_cfg))
    if settings.transfer_files:
        rel = os.path.relpath(settings.htcondor_dir, sweep_dir)
        if rel == os.curdir or rel.startswith(os.pardir):
            raise ConfigError(
                f"hydra.launcher.htcondor_dir={settings.htcondor_dir!r} must be inside hydra.sweep.dir "
                f"({sweep_dir}) with transfer_files=true, e.g. ${{hydra.sweep.dir}}/.htcondor"
            )
        if "," in sweep_dir:
            raise ConfigError(
                f"hydra.sweep.dir={sweep_dir!r} has a comma, which HTCondor file transfer cannot handle"
            )

    htcondor = _import_htcondor()
    schedd = connect(htcondor, settings)  # before any folder is created
    jobs = _build_jobs(launcher, settings, job_overrides, initial_job_idx)
    nums = [job.num for job in jobs]

    tic = time.perf_counter()
    os.makedirs(sweep_dir, exist_ok=True)
    if "mode" in launcher.config.hydra.sweep:
        os.chmod(sweep_dir, mode=int(str(launcher.config.hydra.sweep.mode), 8))
    os.makedirs(settings.htcondor_dir, exist_ok=True)
    plan = _submit.build_submit(settings, sweep_dir=sweep_dir, cwd=cwd, job_nums=nums)
    log_file = plan.description["log"]
    if os.path.exists(log_file):  # a re-run into the same sweep folder: start a fresh event log
        os.remove(log_file)
    for job in jobs:
        for stale in (_submit.result_path(settings.htcondor_dir, job.num),):
            if os.path.exists(stale):
                os.remove(stale)
    if plan.wrapper_path is not None and plan.wrapper_text is not None:
        with open(plan.wrapper_path, "w") as f:
            f.write(plan.wrapper_text)
        os.chmod(plan.wrapper_path, 0o755)
    _write_specs(launcher, settings, jobs, cwd, sweep_dir)
    log.debug("HTCondor submit description:\n%s", _submit.render(plan))

    try:
        submit_result = schedd.submit(htcondor.Submit(plan.description), itemdata=iter(plan.itemdata))
    except Exception as exc:
        raise SubmitError(
            f"HTCondor refused the submission of jobs {nums[0]}-{nums[-1]}: {' '.join(str(exc).split())} "
            f"(submit description: {_submit.render(plan).count(chr(10))} lines, run with hydra.verbose="
            f"{__name__} to see it; job specs in {settings.htcondor_dir})"
        ) from None
    cluster = submit_result.cluster()
    first_proc = submit_result.first_proc()
    log.info(
        "HTCondor launcher: %d job(s) submitted as cluster %d in %.2fs; sweep dir %s, job logs in %s",
        len(jobs),
        cluster,
        time.perf_counter() - tic,
        sweep_dir,
        settings.htcondor_dir,
    )
    for job in jobs:
        log.info("\t#%d : %s", job.num, _shown_overrides(job))

    watcher = _events.ClusterWatcher(
        htcondor,
        schedd,
        cluster,
        log_file,
        {first_proc + i: job.num for i, job in enumerate(jobs)},
        max_releases=settings.max_releases,
        poll_interval=settings.poll_interval,
        status_interval=settings.status_interval,
        timeout_s=settings.timeout_min * 60.0,
        # The status table names each job by its overrides too; _events stays free of Hydra imports.
        overrides={first_proc + i: _shown_overrides(job) for i, job in enumerate(jobs)},
    )
    try:
        states = watcher.wait()
    except KeyboardInterrupt:
        removed = watcher.remove_unfinished("interrupted (Ctrl-C)")
        log.error(
            "Interrupted: removed HTCondor cluster %d (jobs %s still queued or running); finished jobs' "
            "results and logs stay in %s",
            cluster,
            removed,
            sweep_dir,
        )
        raise
    results = collect(launcher, settings, jobs, states, cluster, log_file, sweep_dir_cfg, cwd)
    _log_summary(cluster, jobs, results)
    return results


def _log_summary(cluster: int, jobs: Sequence[_Job], results: Sequence[JobReturn]) -> None:
    # What a user wants to see once a batch is back: each job's outcome, without opening the job folders.
    done = sum(ret.status == JobStatus.COMPLETED for ret in results)
    log.info("HTCondor cluster %d: %d of %d job(s) completed", cluster, done, len(results))
    for job, ret in zip(jobs, results, strict=True):
        outcome = f"-> {ret.return_value!r}" if ret.status == JobStatus.COMPLETED else "FAILED"
        log.info("\t#%d : %s %s", job.num, _shown_overrides(job), outcome)


def _shown_overrides(job: _Job) -> str:
    """A job's overrides as Hydra's own launchers log them (internal ones filtered out)."""
    return " ".join(filter_overrides(job.overrides))
