"""A batch's results: one JobReturn per job, read from the worker's result file, or FAILED with the real
cause (the exception, the exit code, the hold reason, the stderr's tail) and the job's log paths; and the
summary logged once a batch is back."""

from __future__ import annotations

import dataclasses
import logging
import os
import sys
from collections.abc import Sequence

import cloudpickle
from hydra.core.utils import JobReturn, JobStatus
from omegaconf import open_dict, read_write

from ._batch import Batch, HTCondorJobReturn, Job
from ._contract import OUTSIDE_FAILURE, TASK_RAISED, WORKER_EXIT_CODES
from ._disk import full_disk
from ._errors import HeldJobError, JobFailedError
from ._jobstate import JobRecord, JobState

log = logging.getLogger(__name__)
# Lines of a job's stderr quoted in the error of a job that left no result.
ERR_TAIL_LINES = 8


def _task_name(batch: Batch) -> str | None:
    try:
        return str(batch.config.hydra.job.name)
    except Exception:  # an unresolvable interpolation must not cost the batch its results
        return None


def failed(batch: Batch, job: Job, exc: BaseException) -> JobReturn:
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


def read_result(batch: Batch, job: Job, rec: JobRecord) -> JobReturn | BaseException:
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
        base = failed(batch, job, ret._return_value)
        base.status = ret.status
        ret = base
    elif batch.settings.transfer_files:
        _fix_transferred(batch, ret, job)
    return ret


def with_record(ret: JobReturn, batch: Batch, rec: JobRecord) -> HTCondorJobReturn:
    fields = {f.name: getattr(ret, f.name) for f in dataclasses.fields(JobReturn)}
    return HTCondorJobReturn(
        **fields,
        htcondor_id=f"{batch.cluster}.{rec.proc}",
        attempts=rec.attempts,
        evictions=rec.evictions,
    )


def collect_one(batch: Batch, job: Job, rec: JobRecord) -> HTCondorJobReturn:
    """The real JobReturn of one job of a batch whose record is final: the worker's result, or FAILED with
    why there is none (logged). Never raises: a job whose result cannot be made still gets a FAILED one."""
    try:
        got = read_result(batch, job, rec)
    except Exception as exc:  # a bug here must not cost the other jobs their results
        log.exception("job #%d: could not collect its result", job.num)
        got = JobFailedError(f"job #{job.num}: the launcher could not collect its result: {exc!r}")
    if isinstance(got, BaseException):
        log.error("%s", got)
        got = failed(batch, job, got)
    elif sys.version_info < (3, 11) and got.status == JobStatus.FAILED:
        # Python 3.10 prints no exception notes: the worker's traceback would never reach the console.
        for note in getattr(got._return_value, "__notes__", ()):
            log.error("job #%d: %s", job.num, note)
    return with_record(got, batch, rec)


def collect(batch: Batch) -> list[JobReturn]:
    """One real JobReturn per job of a batch whose records are final (collect_one)."""
    by_num = {rec.num: rec for rec in batch.records.values()}
    return [collect_one(batch, job, by_num[job.num]) for job in batch.jobs]


def log_summary(batch: Batch, results: Sequence[JobReturn]) -> None:
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
