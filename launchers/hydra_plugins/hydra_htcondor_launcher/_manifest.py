"""The sweep's state on disk: ``${hydra.sweep.dir}/.htcondor/manifest.json``, rewritten atomically.

Per job number: its overrides, HTCondor cluster.proc, the event log that follows it, its state as the
launcher last saw it (the JobRecord fields the status table shows), its result file, and once the launcher
returned the result, its value as ``hydra-htcondor status`` shows it (``returned``). The sweep identity
(``sweep_id``) is also put in every job's ClassAd (``HydraSweepId``), so a job submitted just before a crash,
before the manifest knew its cluster, is still found in the schedd's queue or history.

Pure: no Hydra, no bindings (the ``hydra-htcondor`` command reads it without a pool).
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ._contract import return_note, write_atomic
from ._errors import HTCondorLauncherError
from ._jobstate import JobRecord, JobState
from ._layout import MANIFEST_DIR, MANIFEST_NAME, manifest_path

VERSION = 1
# The JobRecord fields kept per job (what the status table and a resumed launcher need).
_RECORD_FIELDS = (
    "proc",
    "state",
    "exit_code",
    "signal",
    "hold_reason",
    "holds",
    "releases",
    "abort_reason",
    "host",
    "since",
    "run_start",
    "run_end",
    "starts",
    "evictions",
    "retries",
    # Added with the disconnected state; a manifest without them reads as before (the record's defaults).
    "lease_s",
    "disconnected_until",
    "disconnects",
    "reconnect_failures",
)


# What the manifest keeps of each earlier submission of a job (Manifest.planned).
EARLIER_FIELDS = ("cluster", "proc", "log", "state")

# What a job's result depends on beyond its overrides, kept per job as content hashes: the task (its pickle
# and its package's source files), the config sources (the snapshot's name) and, for jobs that run from one,
# the app's code snapshot (its name: which code each job ran). Entries of manifests written before these
# fields have none: their results are reused as before.
INPUTS = ("task", "configs", "code")


class ManifestError(HTCondorLauncherError):
    """The sweep folder has no readable manifest, or the sweep changed."""


@dataclass
class Manifest:
    path: str
    sweep_id: str
    sweep_dir: str
    htcondor_dir: str
    command: list[str] = field(default_factory=list)
    schedd: str | None = None
    collector: str | None = None
    # Keyed by Hydra's job number as a string (JSON keys): overrides, cluster, proc, log, result, state...
    jobs: dict[str, dict[str, Any]] = field(default_factory=dict)
    updated: float = 0.0
    # Not saved: this process started the manifest afresh (a new sweep id), so no job of an earlier run
    # belongs to it and a job it has no entry for is simply submitted.
    fresh: bool = False

    @classmethod
    def new(cls, sweep_dir: str, htcondor_dir: str, **kwargs: Any) -> Manifest:
        return cls(
            path=manifest_path(sweep_dir),
            sweep_id=str(uuid.uuid4()),
            sweep_dir=sweep_dir,
            htcondor_dir=htcondor_dir,
            fresh=True,
            **kwargs,
        )

    @classmethod
    def load(cls, sweep_dir: str) -> Manifest:
        """The sweep folder's manifest; ManifestError (one line) when there is none or it is unreadable."""
        path = manifest_path(sweep_dir)
        if not os.path.isdir(sweep_dir):
            raise ManifestError(f"{sweep_dir} is not a folder")
        if not os.path.exists(path):
            raise ManifestError(
                f"{sweep_dir} is not a sweep folder of the HTCondor launcher "
                f"(no {MANIFEST_DIR}/{MANIFEST_NAME})"
            )
        try:
            with open(path) as f:
                data = json.load(f)
            if data.get("version") != VERSION:
                raise ValueError(f"version {data.get('version')!r}, expected {VERSION}")
            return cls(
                path=path,
                sweep_id=str(data["sweep_id"]),
                sweep_dir=str(data["sweep_dir"]),
                htcondor_dir=str(data["htcondor_dir"]),
                command=list(data.get("command", [])),
                schedd=data.get("schedd"),
                collector=data.get("collector"),
                jobs={str(k): dict(v) for k, v in data.get("jobs", {}).items()},
                updated=float(data.get("updated", 0.0)),
            )
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ManifestError(
                f"unreadable sweep manifest {path}: {type(exc).__name__}: {' '.join(str(exc).split())}; "
                f"rebuild it from HTCondor and the sweep folder with: hydra-htcondor repair {sweep_dir}"
            ) from None

    def save(self) -> None:
        """Atomically: a crash leaves the old manifest or the new one, never half of one."""
        self.updated = time.time()
        head = {
            "version": VERSION,
            "sweep_id": self.sweep_id,
            "sweep_dir": self.sweep_dir,
            "htcondor_dir": self.htcondor_dir,
            "command": self.command,
            "schedd": self.schedd,
            "collector": self.collector,
            "updated": self.updated,
        }
        # One job a line: readable, greppable, and written by json's C encoder (json.dump to a file or with
        # indent takes the pure-Python one, twice the time: a 1,000-job manifest is rewritten as jobs change).
        lines = [f" {json.dumps(key)}: {json.dumps(value)}," for key, value in head.items()]
        jobs = sorted(self.jobs.items(), key=lambda kv: int(kv[0]))
        body = ",\n".join(f"  {json.dumps(num)}: {json.dumps(entry)}" for num, entry in jobs)
        text = "{\n" + "\n".join(lines) + '\n "jobs": {' + (f"\n{body}\n }}" if jobs else "}") + "\n}\n"
        write_atomic(self.path, text.encode())

    # -- per job -----------------------------------------------------------------------------------
    def job(self, num: int) -> dict[str, Any] | None:
        return self.jobs.get(str(num))

    def planned(
        self,
        num: int,
        overrides: list[str],
        result: str,
        stdout: str,
        stderr: str,
        inputs: Mapping[str, str] | None = None,
    ) -> None:
        """A job about to be submitted: its overrides and files, no cluster yet, and what its result depends
        on (`inputs`: INPUTS, each a content hash) so that a re-run sees a change. A job submitted before
        (a re-run submits it again) keeps its earlier submissions in ``earlier`` (cluster, proc, event log,
        last state), so that the sweep's reader (``view``) finds them in their event logs."""
        before = self.jobs.get(str(num)) or {}
        earlier = [dict(old) for old in before.get("earlier", [])]
        if before.get("cluster") is not None:
            earlier.append({name: before.get(name) for name in EARLIER_FIELDS})
        self.jobs[str(num)] = {
            "overrides": list(overrides),
            "cluster": None,
            "proc": None,
            "log": None,
            "result": result,
            "stdout": stdout,
            "stderr": stderr,
            "state": "unsubmitted",
            **(inputs or {}),
            **({"earlier": earlier} if earlier else {}),
        }

    def record(self, rec: JobRecord, cluster: int, log_file: str) -> None:
        """What the launcher knows of a submitted job now."""
        entry = self.jobs.setdefault(str(rec.num), {})
        entry.update(cluster=cluster, log=log_file, attempts=rec.attempts)
        for name in _RECORD_FIELDS:
            value = getattr(rec, name)
            entry[name] = value.value if isinstance(value, JobState) else value

    def returned(self, results: Mapping[int, Any]) -> None:
        """The results the launcher returns (job number -> JobReturn): each one's value as `status` shows it,
        kept so that `status` of a big sweep need not unpickle every result file. Saved if any is new."""
        changed = False
        for num, ret in results.items():
            entry = self.jobs.get(str(num))
            note = return_note(getattr(ret, "_return_value", None))
            if entry is not None and entry.get("returned") != note:
                entry["returned"] = note
                changed = True
        if changed:
            self.save()


_JOB_RECORD_FIELDS = frozenset(f.name for f in dataclasses.fields(JobRecord))
_STATE_VALUES = frozenset(state.value for state in JobState)


def record_of(num: int, entry: dict[str, Any], shown_overrides: str) -> JobRecord:
    """The JobRecord a manifest entry describes (for the status table of a sweep nobody follows)."""
    kwargs: dict[str, Any] = {}
    for name in _RECORD_FIELDS:
        if name in entry and name in _JOB_RECORD_FIELDS and entry[name] is not None:
            kwargs[name] = entry[name]
    state = entry.get("state")
    kwargs["state"] = JobState(state) if state in _STATE_VALUES else JobState.IDLE
    kwargs.setdefault("proc", -1)
    return JobRecord(num=num, overrides=shown_overrides, cluster=entry.get("cluster"), **kwargs)
