"""Remote entry point of every HTCondor job:

    python -m hydra_plugins.hydra_htcondor_launcher._worker SPEC JOB_ID [--transfer-root DIR]

It unpickles the job spec, restores Hydra's Singleton state, composes the job's config from the sweep's
shipped config sources (``_sources``), runs the task through Hydra's ``run_job`` (so the
job folder gets ``.hydra/``, the task log and the task's files) and writes the ``JobReturn`` next to the spec
with a temp file and an atomic rename. Whatever fails on the worker, the result file says so: a task that
raised and a failure outside the task (unpickling the spec, composing or interpolating the job's config)
both come back as a FAILED result carrying the exception and its remote traceback. The exit status tells
HTCondor which it was (``max_retries``/``retry_until`` act on it, the status table shows it): 0 the task
returned, TASK_RAISED the task raised, OUTSIDE_FAILURE the worker failed around the task, WRITE_FAILED no
result could be written. Any other code (a crash, a signal, the task's own ``sys.exit``) comes from
outside this module.
"""

from __future__ import annotations

import argparse
import functools
import logging
import os
import pickle
import re
import socket
import sys
import traceback
from collections.abc import Callable, Iterable
from typing import Any

from ._contract import (
    CHIRP_CONFIG_ENV,
    OUTSIDE_FAILURE,
    REPORT_CHIRP_ENV,
    REPORT_FILE_ENV,
    TASK_RAISED,
    WRITE_FAILED,
    return_note,
    write_atomic,
)
from ._disk import full_disk
from ._layout import reports_path, result_note_path


class DiskFullError(Exception):
    """A task (or the worker around it) failed on a full filesystem or an exhausted quota; the message says
    which folder, which filesystem and its free bytes, then the original exception's first line. The
    original exception and its traceback are kept in the remote-traceback note."""


def _disk_full_error(exc: BaseException, paths: Iterable[str]) -> DiskFullError | None:
    why = full_disk(paths, exc)
    if why is None:
        return None
    first = next((ln.strip() for ln in str(exc).splitlines() if ln.strip()), "")
    return DiskFullError(f"{why}; {type(exc).__name__}: {first}" if first else f"{why}; {type(exc).__name__}")


def _named_cause(exc: BaseException, paths: Iterable[str], code: dict[str, Any] | None) -> Exception | None:
    """`exc` as one line that says what to do, where the launcher knows better than the exception: a full
    disk (DiskFullError), a module this worker cannot import, a file read next to the shipped code
    (_code.named_failure); None otherwise."""
    full = _disk_full_error(exc, paths)
    if full is not None:
        return full
    from . import _code  # late: this module imports without Hydra (packed-env checks)

    return _code.named_failure(exc, code)


def _naming_the_cause(
    task: Callable[[Any], Any], result_dir: str, code: dict[str, Any] | None
) -> Callable[[Any], Any]:
    """The task, whose failure on a full disk, for a missing module or a data file next to the shipped code
    raises one line (_named_cause) from the original exception: inside the task, so that Hydra's callbacks
    (a report's error column) see it as the job's error too."""

    @functools.wraps(task)
    def task_naming_the_cause(cfg: Any) -> Any:
        try:
            return task(cfg)
        except Exception as exc:
            from hydra.core.hydra_config import HydraConfig

            try:
                paths = [str(HydraConfig.get().runtime.output_dir), os.getcwd(), result_dir]
            except Exception:  # never let the probe replace the task's own error
                paths = [result_dir]
            named = _named_cause(exc, paths, code)
            if named is None:
                raise
            raise named from exc

    return task_naming_the_cause


def _picklable_result(ret: Any, dumps: Callable[[Any], bytes]) -> bytes:
    """Pickle the JobReturn; an unpicklable return value or exception becomes a FAILED result that says so."""
    from hydra.core.utils import JobStatus

    try:
        return dumps(ret)
    except Exception as exc:
        detail = f"{type(exc).__name__}: {exc}"
    original = ret._return_value
    what = "exception" if ret.status == JobStatus.FAILED else "return value"
    ret.status = JobStatus.FAILED
    ret._return_value = RuntimeError(
        f"the task's {what} could not be pickled to send it back ({detail}); task result was: {original!r}"
    )
    return dumps(ret)


def _add_remote_traceback(exc: BaseException, job_id: str) -> None:
    """The traceback object does not survive pickling: keep its text as a note on the exception."""
    remote_tb = "".join(traceback.format_exception(exc)).rstrip()
    _add_note(exc, f"[remote traceback, HTCondor job {job_id} on {socket.gethostname()}]\n{remote_tb}")
    exc.__traceback__ = None


def _add_note(exc: BaseException, note: str) -> None:
    if sys.version_info >= (3, 11):
        exc.add_note(note)
    else:  # Python 3.10 has no add_note; the same attribute pickles, and a 3.11+ submit side prints it
        setattr(exc, "__notes__", [*getattr(exc, "__notes__", []), note])  # noqa: B010


def _saved_config_points_at(job_dir: str, scratch: str, submit_sweep_dir: str) -> None:
    """Transferred job: its `.hydra/hydra.yaml` names the worker's scratch folder, which is deleted once the
    job ends; name the submit-side sweep folder instead, where the job folder lands."""
    path = os.path.join(job_dir, ".hydra", "hydra.yaml")
    if not os.path.isfile(path):
        return
    with open(path) as f:
        text = f.read()
    # The scratch path, as a whole path or a path's start (not a longer name that begins with it).
    pattern = re.escape(scratch.rstrip(os.sep)) + r"(?=/|$)"
    fixed = re.sub(pattern, submit_sweep_dir.rstrip(os.sep), text, flags=re.M)
    if fixed != text:
        write_atomic(path, fixed.encode())


def _run_task(
    envelope: dict[str, Any],
    job: dict[str, Any],
    job_id: str,
    transfer_root: str | None,
    result_file: str,
    code: dict[str, Any] | None,
) -> Any:
    """Unpickle the spec, compose the job's config and run the task; returns Hydra's JobReturn. Raises for
    anything that fails outside the task (run_job itself catches what the task raises)."""
    import cloudpickle
    from hydra.core.utils import run_job
    from omegaconf import open_dict

    # Transferred files land in the scratch folder (the transfer root); elsewhere they are read in place.
    def here(path: str) -> str:
        return path if transfer_root is None else os.path.join(transfer_root, os.path.basename(path))

    # The app's code as submitted, first (_code); then the folders the submitting process imported user
    # code from (those that exist here), so the task function and config types pickled by reference import
    # as they would locally. Appended: the worker's own environment wins over them.
    from . import _code  # late: this module imports without Hydra (packed-env checks)

    _tell(_code.activate(code))
    for path in envelope["sys_path"]:
        if path not in sys.path and os.path.isdir(path):
            sys.path.append(path)
    from . import _sources

    with open(here(job["common_path"]), "rb") as f:
        common = cloudpickle.load(f)
    kit: _sources.Kit = common["kit"]
    _sources.restore(kit)  # Hydra's globals (resolvers) too
    config = _sources.compose(kit, here(kit.snapshot_dir), job["overrides"])
    with open_dict(config.hydra.job):
        config.hydra.job.id = job_id
        config.hydra.job.num = job["num"]
    if transfer_root is None:
        # Same working directory as the submitting process, so relative paths mean what they meant there.
        os.chdir(common["cwd"])
    else:
        os.chdir(transfer_root)
        with open_dict(config.hydra.sweep):
            config.hydra.sweep.dir = transfer_root
            config.hydra.sweep.subdir = job["job_subdir"]

    ret = run_job(
        hydra_context=common["hydra_context"],
        task_function=_naming_the_cause(common["task_function"], os.path.dirname(result_file), code),
        config=config,
        job_dir_key="hydra.sweep.dir",
        job_subdir_key="hydra.sweep.subdir",
    )
    if transfer_root is not None:
        _saved_config_points_at(
            os.path.join(transfer_root, job["job_subdir"]), transfer_root, job["submit_sweep_dir"]
        )
    return ret


def _outside_failure(job: dict[str, Any], exc: Exception, job_id: str) -> Any:
    """A FAILED JobReturn for a failure around the task; the submit side fills in the config it knows."""
    from hydra.core.utils import JobReturn, JobStatus

    return JobReturn(
        overrides=list(job["overrides"]),
        status=JobStatus.FAILED,
        _return_value=exc,
    )


def _tell(line: str, exc: BaseException | None = None) -> None:
    """A line (and an exception's traceback) for the job's stderr. Never raises: on a full disk stderr's
    file cannot grow either, and that must not turn the job's exit code into Python's 1."""
    try:
        if line:
            print(line, file=sys.stderr, flush=True)
        if exc is not None:
            traceback.print_exception(exc)
            sys.stderr.flush()
    except OSError:
        pass


def _report_channel(result_file: str, transfer_root: str | None) -> None:
    """Tell the task (reporting.report) where its intermediate reports go: the job's report file on a shared
    filesystem (the submit side reads it as it grows), else HTCondor's chirp into the job event log (the
    submit description asks for want_io_proxy). Set here only: a value inherited from the submit side's
    environment (getenv) would point elsewhere."""
    os.environ.pop(REPORT_FILE_ENV, None)
    os.environ.pop(REPORT_CHIRP_ENV, None)
    chirp = os.environ.get(CHIRP_CONFIG_ENV)
    if transfer_root is None:
        os.environ[REPORT_FILE_ENV] = reports_path(result_file)
    elif chirp:
        os.environ[REPORT_CHIRP_ENV] = chirp


def run(spec_file: str, job_id: str, transfer_root: str | None) -> int:
    log = logging.getLogger(__name__)
    if transfer_root is not None:
        # The job's scratch folder stands in for the sweep folder; what travels back is named in the submit
        # description (the job folder's top entry and the launcher's folder).
        os.makedirs(transfer_root, exist_ok=True)
        transfer_root = os.path.abspath(transfer_root)

    # A plain-pickle envelope of builtins: the worker must fix sys.path before it can unpickle the user's
    # types, and it says where the result goes even when nothing else can be unpickled.
    with open(spec_file, "rb") as f:
        envelope = pickle.load(f)
    job = envelope["place"]
    from . import _code  # late: this module imports without Hydra (packed-env checks)

    shipped = _code.located(envelope.get("code"), transfer_root)
    if transfer_root is None:
        result_file = job["result_path"]
    else:
        result_file = os.path.join(transfer_root, job["result_relpath"])
        # Made first: the job's output transfer names both folders, and a missing one would hold the job
        # instead of letting it end with the exit code that says what happened.
        os.makedirs(os.path.join(transfer_root, job["job_subdir"]), exist_ok=True)
        os.makedirs(os.path.dirname(result_file), exist_ok=True)
    # A result of an earlier attempt (a retry, a restart after an eviction) must not pass for this one's.
    for stale in (result_file, result_note_path(result_file)):
        if os.path.exists(stale):
            os.remove(stale)
    _report_channel(result_file, transfer_root)

    try:
        ret = _run_task(envelope, job, job_id, transfer_root, result_file, shipped)
    except Exception as exc:
        # Unpickling, composing, interpolating the job's config, Hydra's own set-up: the task never ran.
        _tell(f"HTCondor job {job_id} failed outside the task:", exc)
        named = _named_cause(exc, [os.path.dirname(result_file), transfer_root or ""], shipped)
        if named is not None:
            named.__cause__ = exc
            exc = named
        _add_remote_traceback(exc, job_id)
        try:
            ret = _outside_failure(job, exc, job_id)
        except Exception as err:
            _tell("", err)
            return WRITE_FAILED
        code = OUTSIDE_FAILURE
    else:
        from hydra.core.utils import JobStatus

        code = 0
        if ret.status == JobStatus.FAILED:
            code = TASK_RAISED
            if isinstance(ret._return_value, BaseException):
                _add_remote_traceback(ret._return_value, job_id)
    if isinstance(ret._return_value, DiskFullError):
        # Also the stderr's last line, which a sweep report shows when the job folder had no room for more.
        _tell(f"HTCondor job {job_id}: {ret._return_value}")

    try:
        import cloudpickle

        write_atomic(result_file, _picklable_result(ret, cloudpickle.dumps))
    except Exception as exc:
        log.exception("could not write the job result to %s", result_file)
        _tell("", exc)
        why = full_disk([os.path.dirname(result_file)], exc)
        if why is not None:
            _tell(f"HTCondor job {job_id}: result not written: {why}")
        return WRITE_FAILED
    try:
        write_atomic(result_note_path(result_file), return_note(ret._return_value).encode())
    except OSError as exc:  # only a shortcut for `status`; the result is what counts
        _tell("", exc)
    return code


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hydra_plugins.hydra_htcondor_launcher._worker")
    parser.add_argument("spec", help="the job spec written by the launcher")
    parser.add_argument("job_id", help="HTCondor ClusterId.ProcId, becomes hydra.job.id")
    parser.add_argument("--transfer-root", default=None, help="scratch folder whose contents travel back")
    args = parser.parse_args(argv)
    return run(args.spec, args.job_id, args.transfer_root)


if __name__ == "__main__":
    sys.exit(main())
