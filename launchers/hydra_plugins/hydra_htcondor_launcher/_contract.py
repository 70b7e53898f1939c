"""The contract between the submit side and the worker (``_worker``), declared once, imported by both.

A leaf module: standard library only, nothing of the package. It holds the exit codes the launcher gives a
job itself, the atomic writer both sides write their state with, the text of the result note (a
result's value on one line) the worker writes beside the result and ``hydra-htcondor status`` reads, and
the channel of a running job's intermediate reports (``reporting.report``): the environment variables the
worker sets for the task and the text of one report. The files' names are in ``_layout``.
"""

from __future__ import annotations

import math
import os
import re
import shutil
import tempfile
from collections.abc import Iterable
from typing import Any

WRITE_FAILED = 2
TASK_RAISED = 80
OUTSIDE_FAILURE = 81
NO_PACKED_PYTHON = 97  # the packed-environment wrapper (_submit.wrapper_script) found no Python to run
# Every exit code the launcher gives a job itself (the worker and the wrappers the launcher generates),
# declared here only: no setting (checkpoint_exit_code) may reuse one, or HTCondor would misread the
# launcher's own.
WORKER_EXIT_CODES = {
    WRITE_FAILED: "result not written",
    TASK_RAISED: "the task raised",
    OUTSIDE_FAILURE: "failure outside the task",
    NO_PACKED_PYTHON: "no Python in the packed environment",
}

RETURN_CHARS = 100  # a return value as `hydra-htcondor status` shows it


def write_atomic(path: str, data: bytes) -> None:
    """Write atomically: a reader sees the old state or the whole file, never half of it."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    tmp = f"{path}.tmp.{os.getpid()}"
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def write_folder_once(
    final: str, files: Iterable[tuple[str, bytes]], tmp_prefix: str, folders: Iterable[str] = ()
) -> None:
    """A content-addressed folder (`files`: relative path, bytes; `folders`: relative folders, also empty
    ones), written once: a temp folder (`tmp_prefix`) renamed into place, so that a crash leaves no half
    folder; one that exists (or another process renamed first) is kept."""
    if os.path.isdir(final):
        return
    parent = os.path.dirname(final)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=tmp_prefix, dir=parent)
    for rel in folders:
        os.makedirs(os.path.join(tmp, rel), exist_ok=True)
    for rel, data in files:
        target = os.path.join(tmp, rel)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with open(target, "wb") as f:
            f.write(data)
    try:
        os.rename(tmp, final)
    except OSError:  # another process wrote the same folder meanwhile
        shutil.rmtree(tmp, ignore_errors=True)
        if not os.path.isdir(final):
            raise


def return_note(value: Any) -> str:
    """A job's return value (a failed job's: its exception) as `status` shows it: repr, one line, short."""
    text = " ".join(repr(value).split())
    return text if len(text) <= RETURN_CHARS else text[: RETURN_CHARS - 3] + "..."


# -- intermediate reports (reporting.report) ---------------------------------------------------------------
# The worker tells the task where reports go, by one of these (never both):
# shared filesystem: append one report line to this file (_layout: N.reports beside N.out), read by the
# submit side's watcher as it grows;
REPORT_FILE_ENV = "HYDRA_HTCONDOR_REPORT_FILE"
# file transfer or a container: HTCondor's chirp config file (host, port, cookie; the starter writes it when
# the job has want_io_proxy): the report line goes into the job event log as a generic (ulog) event.
REPORT_CHIRP_ENV = "HYDRA_HTCONDOR_REPORT_CHIRP"
CHIRP_CONFIG_ENV = "_CONDOR_CHIRP_CONFIG"  # HTCondor's own name for that file
REPORT_TAG = "hydra-htcondor-report"
# One report: the same text in a report file (one line each) and in a generic event's Info. Short: a
# generic event's text is truncated by HTCondor at a few hundred characters.
_REPORT = re.compile(re.escape(REPORT_TAG) + r" step=(\d+) value=(\S+)")


def report_line(step: int, value: float) -> str:
    """One report as text, without a newline: ``hydra-htcondor-report step=3 value=0.9123`` (repr: exact)."""
    return f"{REPORT_TAG} step={step} value={value!r}"


def parse_report(text: str) -> tuple[int, float] | None:
    """(step, value) of a report's text; None for any other text (a generic event of someone else's)."""
    match = _REPORT.fullmatch(text.strip())
    if match is None:
        return None
    try:
        value = float(match[2])
    except ValueError:
        return None
    return (int(match[1]), value) if math.isfinite(value) else None
