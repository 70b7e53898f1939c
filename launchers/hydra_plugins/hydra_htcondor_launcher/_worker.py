"""Remote entry point of every HTCondor job:

    python -m hydra_plugins.hydra_htcondor_launcher._worker SPEC JOB_ID [--transfer-root DIR]

It unpickles the job spec, restores Hydra's Singleton state, runs the task through Hydra's ``run_job`` (so the
job folder gets ``.hydra/``, the task log and the task's files) and writes the ``JobReturn`` next to the spec
with a temp file and an atomic rename. Exit status: 0 when the result was written (even for a failed task,
which the result carries), 2 when it could not be written.
"""

from __future__ import annotations

import argparse
import logging
import os
import pickle
import socket
import sys
import traceback
from collections.abc import Callable
from typing import Any

WRITE_FAILED = 2


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


def write_result(path: str, data: bytes) -> None:
    """Write atomically: a reader sees the old state or the whole file, never half of it."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    tmp = f"{path}.tmp.{os.getpid()}"
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def run(spec_file: str, job_id: str, transfer_root: str | None) -> int:
    if transfer_root is not None:
        # Created first: the job's output transfer names this folder even when everything below fails.
        os.makedirs(transfer_root, exist_ok=True)
        transfer_root = os.path.abspath(transfer_root)

    import cloudpickle
    from hydra.core.singleton import Singleton
    from hydra.core.utils import JobStatus, run_job, setup_globals
    from omegaconf import open_dict

    with open(spec_file, "rb") as f:
        envelope = pickle.load(f)
    # Folders the submitting process imported user code from (those that exist here), so the task function
    # and config types pickled by reference import as they would locally. Appended: the worker's own
    # environment wins.
    for path in envelope["sys_path"]:
        if path not in sys.path and os.path.isdir(path):
            sys.path.append(path)
    common = cloudpickle.loads(envelope["common"])
    spec = cloudpickle.loads(envelope["job"])
    Singleton.set_state(common["singleton_state"])
    setup_globals()

    config = spec["sweep_config"]
    if config is None:  # composed here, in parallel with the other jobs (shared filesystem)
        config = common["hydra_context"].config_loader.load_sweep_config(common["config"], spec["overrides"])
    with open_dict(config.hydra.job):
        config.hydra.job.id = job_id
        config.hydra.job.num = spec["num"]
    if transfer_root is None:
        # Same working directory as the submitting process, so relative paths mean what they meant there.
        os.chdir(common["cwd"])
        result_file = spec["result_path"]
    else:
        os.chdir(os.path.dirname(transfer_root))
        with open_dict(config.hydra.sweep):
            config.hydra.sweep.dir = transfer_root
            config.hydra.sweep.subdir = spec["job_subdir"]
        result_file = os.path.join(transfer_root, spec["result_relpath"])
        os.makedirs(os.path.join(transfer_root, spec["job_subdir"]), exist_ok=True)

    ret = run_job(
        hydra_context=common["hydra_context"],
        task_function=common["task_function"],
        config=config,
        job_dir_key="hydra.sweep.dir",
        job_subdir_key="hydra.sweep.subdir",
    )
    if ret.status == JobStatus.FAILED and isinstance(ret._return_value, BaseException):
        exc = ret._return_value
        if hasattr(exc, "add_note"):  # the traceback itself does not survive pickling
            remote_tb = "".join(traceback.format_exception(exc)).rstrip()
            exc.add_note(f"[remote traceback, HTCondor job {job_id} on {socket.gethostname()}]\n{remote_tb}")
        exc.__traceback__ = None

    try:
        write_result(result_file, _picklable_result(ret, cloudpickle.dumps))
    except Exception:
        logging.getLogger(__name__).exception("could not write the job result to %s", result_file)
        traceback.print_exc()
        return WRITE_FAILED
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hydra_plugins.hydra_htcondor_launcher._worker")
    parser.add_argument("spec", help="the job spec written by the launcher")
    parser.add_argument("job_id", help="HTCondor ClusterId.ProcId, becomes hydra.job.id")
    parser.add_argument("--transfer-root", default=None, help="scratch folder whose contents travel back")
    args = parser.parse_args(argv)
    return run(args.spec, args.job_id, args.transfer_root)


if __name__ == "__main__":
    sys.exit(main())
