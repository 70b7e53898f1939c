"""``hydra-htcondor repair SWEEP_DIR``: a new manifest for a sweep folder whose manifest is damaged or gone.

What it is rebuilt from, best source first:
- the damaged file itself: the manifest is written one job a line, so every line that still parses keeps
  its job's entry (overrides, cluster, state, the task/config hashes, the noted return value), and the head
  lines keep the sweep id and folders;
- HTCondor: every job carries the sweep id in its ClassAd (``HydraSweepId``, ``HydraJobNum``): the queue and
  the history say each job's cluster, proc, event log and state. Without a readable sweep id, the jobs whose
  event logs are in the sweep's ``.htcondor`` folder name it;
- the sweep folder: the job specs (``N.spec.pkl``, plain pickle) hold each job's overrides; result files say
  a job finished even when HTCondor has forgotten it.

Nothing in the sweep folder is deleted or rewritten but the manifest; the damaged one is kept aside as
``manifest.json.damaged-<time>``.
"""

from __future__ import annotations

import json
import os
import pickle
import re
import shutil
import time
from typing import Any

import cloudpickle
from hydra.core.utils import JobReturn, JobStatus

from . import _schedd
from ._errors import HTCondorLauncherError
from ._layout import SweepLayout, damaged_manifest_path, manifest_path
from ._manifest import Manifest, ManifestError

_PROJECTION = [
    "ClusterId",
    "ProcId",
    "HydraJobNum",
    "HydraSweepId",
    "JobStatus",
    "ExitCode",
    "ExitBySignal",
    "UserLog",
    "NumJobStarts",
    "RemoveReason",
    "HoldReason",
]
# HTCondor's JobStatus -> the manifest's state (completed ones by their exit code).
_STATES = {1: "idle", 2: "running", 3: "removed", 5: "held", 6: "running", 7: "running"}
_HEAD = ("sweep_id", "sweep_dir", "htcondor_dir", "schedd", "collector", "command")
_JOB_LINE = re.compile(r'^\s*"(\d+)":\s*(\{.*\})\s*,?\s*$')


def _salvage(text: str) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """The head fields and the job entries of the lines of a damaged manifest that still parse."""
    head: dict[str, Any] = {}
    jobs: dict[str, dict[str, Any]] = {}
    for line in text.splitlines():
        match = _JOB_LINE.match(line)
        if match:
            try:
                entry = json.loads(match.group(2))
            except ValueError:
                continue
            if isinstance(entry, dict) and isinstance(entry.get("overrides"), list):
                jobs[match.group(1)] = entry
            continue
        for name in _HEAD:
            if line.lstrip().startswith(f'"{name}":'):
                try:
                    head[name] = json.loads(line.split(":", 1)[1].strip().rstrip(","))
                except ValueError:
                    pass
    return head, jobs


def _state(ad: Any) -> str:
    status = int(ad.get("JobStatus", 0))
    if status == 4:
        return "done" if not ad.get("ExitBySignal") and int(ad.get("ExitCode", 1)) == 0 else "failed"
    return _STATES.get(status, "idle")


def _result_state(path: str) -> str | None:
    """'done' or 'failed' for a result file the worker wrote, None without one."""
    if not os.path.exists(path):
        return None
    try:
        with open(path, "rb") as f:
            ret = cloudpickle.load(f)
    except Exception:  # types the submit side cannot import: the file is still there for a re-run
        return "done"
    return "done" if isinstance(ret, JobReturn) and ret.status == JobStatus.COMPLETED else "failed"


def _spec_overrides(names: SweepLayout, num: int) -> list[str] | None:
    try:
        with open(names.spec(num), "rb") as f:
            return [str(o) for o in pickle.load(f)["place"]["overrides"]]
    except Exception:
        return None


def _find_sweep_id(schedd: Any, htcondor_dir: str) -> str | None:
    """The sweep id of the newest job whose event log is in htcondor_dir (queue, then history)."""
    import classad2

    prefix = htcondor_dir.rstrip(os.sep) + os.sep
    constraint = (
        f"HydraSweepId =!= undefined && substr(UserLog, 0, {len(prefix)}) == {classad2.quote(prefix)}"
    )
    proj = ["ClusterId", "HydraSweepId"]
    ads = _schedd.retried(lambda: list(schedd.query(constraint, projection=proj)), "asking the queue")
    if not ads:
        ads = _schedd.retried(
            lambda: list(schedd.history(constraint, projection=proj, match=1)), "asking the history"
        )
    ads = sorted(ads, key=lambda ad: int(ad["ClusterId"]))
    return str(ads[-1]["HydraSweepId"]) if ads else None


def repair(sweep_dir: str, htcondor: Any) -> str:
    """Write a new manifest for the sweep folder; returns what was done, one line."""
    sweep_dir = os.path.abspath(sweep_dir)
    path = manifest_path(sweep_dir)
    try:
        Manifest.load(sweep_dir)
    except ManifestError:
        pass
    else:
        return f"the manifest {path} is readable: nothing to repair"
    if not os.path.isdir(sweep_dir):
        raise HTCondorLauncherError(f"{sweep_dir} is not a folder")
    try:
        with open(path, "rb") as f:
            text = f.read().decode(errors="replace")
    except FileNotFoundError:
        text = ""
    except OSError as exc:
        raise HTCondorLauncherError(f"cannot read {path}: {exc.strerror or exc}") from None
    head, salvaged = _salvage(text)
    names = SweepLayout(sweep_dir, str(head.get("htcondor_dir") or ""))
    htcondor_dir = names.htcondor_dir
    collector, schedd_name = head.get("collector"), head.get("schedd")
    try:
        schedd = _schedd.locate(htcondor, collector, schedd_name)
        sweep_id = head.get("sweep_id") or _find_sweep_id(schedd, htcondor_dir)
        if sweep_id is None:
            raise HTCondorLauncherError(
                f"cannot repair {path}: it names no sweep id, and HTCondor knows no job whose event log is "
                f"in {htcondor_dir}; start afresh with hydra.launcher.resume=false (results are kept on disk)"
            )
        ads = [
            *_schedd.sweep_ads(schedd, sweep_id, _PROJECTION, history=False),
            *_schedd.sweep_ads(schedd, sweep_id, _PROJECTION, history=True),
        ]
    except _schedd.Unanswered as exc:
        raise HTCondorLauncherError(
            f"cannot repair {path}: {_schedd.where(collector, schedd_name)} did not answer: {exc}; "
            "nothing was changed, try again once it answers (condor_q)"
        ) from None
    newest: dict[int, Any] = {}
    for ad in ads:
        if "HydraJobNum" not in ad:
            continue
        num = int(ad["HydraJobNum"])
        key = (int(ad["ClusterId"]), int(ad["ProcId"]))
        if num not in newest or key > (int(newest[num]["ClusterId"]), int(newest[num]["ProcId"])):
            newest[num] = ad

    manifest = Manifest(
        path=path,
        sweep_id=str(sweep_id),
        sweep_dir=sweep_dir,
        htcondor_dir=htcondor_dir,
        command=list(head.get("command") or []),
        schedd=schedd_name,
        collector=collector,
    )
    skipped = []
    nums = {int(k) for k in salvaged} | set(newest) | names.job_file_nums()
    for num in sorted(nums):
        entry = dict(salvaged.get(str(num), {}))
        overrides = entry.get("overrides")
        if overrides is None:
            overrides = _spec_overrides(names, num)
        if overrides is None:  # no spec, no line: the job cannot be named for a re-run
            skipped.append(num)
            continue
        entry.update(
            overrides=overrides,
            result=entry.get("result") or names.result(num),
            stdout=entry.get("stdout") or names.stdout(num),
            stderr=entry.get("stderr") or names.stderr(num),
        )
        ad = newest.get(num)
        if ad is not None:
            entry.update(
                cluster=int(ad["ClusterId"]),
                proc=int(ad["ProcId"]),
                log=str(ad.get("UserLog") or entry.get("log") or "") or None,
                state=_state(ad),
            )
            if ad.get("HoldReason") and entry["state"] == "held":
                entry["hold_reason"] = str(ad["HoldReason"])
            if entry["state"] == "removed" and ad.get("RemoveReason"):
                entry["abort_reason"] = str(ad["RemoveReason"])
        else:
            entry.setdefault("cluster", None)
            entry.setdefault("proc", None)
            entry.setdefault("log", None)
            entry["state"] = _result_state(entry["result"]) or entry.get("state") or "unsubmitted"
        manifest.jobs[str(num)] = entry

    aside = None
    if os.path.exists(path):
        aside = damaged_manifest_path(path, time.strftime("%Y%m%d-%H%M%S"))
        shutil.copy2(path, aside)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    manifest.save()
    from_pool = sum(num in newest for num in map(int, manifest.jobs))
    return (
        f"repaired {path}: {len(manifest.jobs)} job(s) ({len(salvaged)} from the damaged file's readable "
        f"lines, {from_pool} found in HTCondor)"
        + (f"; the damaged file is kept as {aside}" if aside else "")
        + (
            f"; jobs {skipped} left out: neither their spec nor a manifest line names their overrides"
            if skipped
            else ""
        )
    )
