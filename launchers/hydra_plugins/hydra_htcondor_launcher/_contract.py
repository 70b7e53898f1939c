"""The contract between the submit side and the worker (``_worker``), declared once, imported by both.

A leaf module: standard library only, nothing of the package. It holds the exit codes the launcher gives a
job itself, the atomic writer both sides write their state with, and the text of the result note (a
result's value on one line) the worker writes beside the result and ``hydra-htcondor status`` reads. The
files' names are in ``_layout``.
"""

from __future__ import annotations

import os
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
