"""Where a sweep's files are: every file the launcher keeps in a sweep folder, named in this module only.

``SweepLayout(sweep_dir, htcondor_dir)`` names the launcher's folder (``htcondor_dir``, by default
``<sweep_dir>/.htcondor``) and the files in it::

    N.spec.pkl             job N's spec (plain pickle: where its result goes, its overrides)
    common-<key>.pkl       what every job of a batch needs (task, callbacks, composition kit), by hash
    N.result.pkl           job N's JobReturn, written by the worker
    N.result.txt           its value on one line (the result note `hydra-htcondor status` shows)
    N.out, N.err           job N's stdout and stderr
    N.reports              job N's intermediate reports, one line each (shared filesystem only; appended by
                           the running job, read by the watcher as it grows)
    batch-A-B.log          the HTCondor event log of the batch of jobs A..B (one cluster each submit)
    config-sources-<hash>  the config sources' snapshot the workers compose from (made by _sources)
    code-<hash>            the app's code the workers import first (made by _code)

and the sweep's manifest, whose place is fixed relative to the sweep folder (htcondor_dir may be
elsewhere: the command line tool finds it from the sweep folder alone):
``<sweep_dir>/.htcondor/manifest.json``, and ``manifest.json.damaged-<time>`` (repair keeps a damaged one).

Read by a sweep report too (``mnist_app/report``); private by name only because Hydra's plugin scanner
imports every public module of the package at each start-up. A leaf: standard library only. A job number
may be a submit-description macro (``$(job_num)``): the submit description names every job's files at once.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

MANIFEST_DIR = ".htcondor"
MANIFEST_NAME = "manifest.json"
SNAPSHOT_PREFIX = "config-sources-"
CODE_PREFIX = "code-"
CODE_TMP_PREFIX = ".tmp-code-"  # the code snapshot while it is written (renamed into place)
# A job's files: its number, then one of these.
_SPEC, _RESULT, _NOTE, _OUT, _ERR = ".spec.pkl", ".result.pkl", ".result.txt", ".out", ".err"
_REPORTS = ".reports"
_JOB_FILE = re.compile(
    r"(\d+)(" + "|".join(re.escape(s) for s in (_SPEC, _RESULT, _NOTE, _OUT, _ERR, _REPORTS)) + ")"
)
_BATCH_LOG = re.compile(r"batch-(\d+)-(\d+)\.log")


def manifest_path(sweep_dir: str) -> str:
    """The sweep's manifest: ``<sweep_dir>/.htcondor/manifest.json``, wherever htcondor_dir is."""
    return os.path.join(sweep_dir, MANIFEST_DIR, MANIFEST_NAME)


def damaged_manifest_path(manifest: str, stamp: str) -> str:
    """Where `hydra-htcondor repair` keeps a damaged manifest aside (`stamp`: when)."""
    return f"{manifest}.damaged-{stamp}"


def result_note_path(result_file: str) -> str:
    """Next to a result: its return value (or exception) on one line, as `hydra-htcondor status` shows it,
    so that status of a sweep nobody collected yet need not unpickle every result."""
    return os.path.splitext(result_file)[0] + ".txt"  # N.result.pkl -> N.result.txt


def reports_path(result_file: str) -> str:
    """Next to a result (the worker knows its result's path): the job's report file, N.reports."""
    folder, name = os.path.split(result_file)
    return os.path.join(folder, name.removesuffix(_RESULT) + _REPORTS)


@dataclass(frozen=True)
class JobPaths:
    """The launcher's files of one job."""

    spec: str
    result: str
    result_note: str
    stdout: str
    stderr: str


@dataclass(frozen=True)
class SweepLayout:
    """The files of one sweep folder. `htcondor_dir` empty: the default, ``<sweep_dir>/.htcondor``."""

    sweep_dir: str
    htcondor_dir: str = ""

    def __post_init__(self) -> None:
        if not self.htcondor_dir:
            object.__setattr__(self, "htcondor_dir", os.path.join(self.sweep_dir, MANIFEST_DIR))

    @property
    def manifest(self) -> str:
        return manifest_path(self.sweep_dir)

    def spec(self, num: int | str) -> str:
        return os.path.join(self.htcondor_dir, f"{num}{_SPEC}")

    def common(self, key: str) -> str:
        """What every job of a batch needs (task, callbacks, composition kit); `key` is its content hash."""
        return os.path.join(self.htcondor_dir, f"common-{key}.pkl")

    def result(self, num: int | str) -> str:
        return os.path.join(self.htcondor_dir, f"{num}{_RESULT}")

    def result_note(self, num: int | str) -> str:
        return result_note_path(self.result(num))

    def stdout(self, num: int | str) -> str:
        return os.path.join(self.htcondor_dir, f"{num}{_OUT}")

    def stderr(self, num: int | str) -> str:
        return os.path.join(self.htcondor_dir, f"{num}{_ERR}")

    def reports(self, num: int | str) -> str:
        """Job N's intermediate reports (shared filesystem): in the launcher's folder, not the job's, because
        the submit side knows this folder before the job runs (the job's own folder is composed on the
        worker) and the job's folder stays the app's."""
        return reports_path(self.result(num))

    def batch_log(self, first: int | str, last: int | str) -> str:
        """One HTCondor event log per batch (one cluster)."""
        return os.path.join(self.htcondor_dir, f"batch-{first}-{last}.log")

    def snapshot(self, digest: str) -> str:
        """The config sources' snapshot folder named by its content hash."""
        return os.path.join(self.htcondor_dir, SNAPSHOT_PREFIX + digest)

    def code(self, digest: str) -> str:
        """The app's code snapshot folder named by its content hash."""
        return os.path.join(self.htcondor_dir, CODE_PREFIX + digest)

    def job(self, num: int | str) -> JobPaths:
        return JobPaths(
            spec=self.spec(num),
            result=self.result(num),
            result_note=self.result_note(num),
            stdout=self.stdout(num),
            stderr=self.stderr(num),
        )

    def batch_logs(self) -> list[tuple[int, int, str]]:
        """(first job, last job, path) of each batch event log in htcondor_dir, in job order; [] when the
        folder does not exist."""
        try:
            names = os.listdir(self.htcondor_dir)
        except OSError:
            return []
        found = []
        for name in names:
            match = _BATCH_LOG.fullmatch(name)
            if match:
                found.append((int(match[1]), int(match[2]), os.path.join(self.htcondor_dir, name)))
        return sorted(found)

    def job_file_nums(self) -> set[int]:
        """Job numbers htcondor_dir has files of (specs, results, result notes, stdout, stderr)."""
        try:
            names = os.listdir(self.htcondor_dir)
        except OSError:
            return set()
        return {int(m[1]) for m in map(_JOB_FILE.fullmatch, names) if m}

    def has_specs(self) -> bool:
        """Whether htcondor_dir holds job specs (a sweep whose manifest is gone)."""
        try:
            return any(name.endswith(_SPEC) for name in os.listdir(self.htcondor_dir))
        except OSError:
            return False
