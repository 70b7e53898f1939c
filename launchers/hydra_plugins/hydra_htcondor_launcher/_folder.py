"""A sweep folder as the launcher leaves it: its manifest, its files and the schedd its jobs are in.

The sweep engine (``_sweep.SweepEngine``) holds one for the sweep it drives; ``hydra-htcondor`` opens one from
the folder alone (no Hydra, no submitting process). The bindings are imported, and the schedd located, only
when a question needs them: a finished sweep's status never needs the pool.
"""

from __future__ import annotations

import os
import time
from typing import Any

from . import _schedd
from ._layout import SweepLayout
from ._manifest import Manifest


class SweepFolder:
    def __init__(self, manifest: Manifest, htcondor: Any = None, schedd: Any = None) -> None:
        self.manifest = manifest
        self._htcondor = htcondor
        self._schedd = schedd

    @classmethod
    def open(cls, sweep_dir: str) -> SweepFolder:
        """The folder's manifest (ManifestError, one line, when there is none or it is unreadable)."""
        return cls(Manifest.load(os.path.abspath(sweep_dir)))

    @property
    def layout(self) -> SweepLayout:
        return SweepLayout(self.manifest.sweep_dir, self.manifest.htcondor_dir)

    def bindings(self) -> Any:
        if self._htcondor is None:
            import htcondor2  # late: the bindings read CONDOR_CONFIG at import

            self._htcondor = htcondor2
        return self._htcondor

    def schedd(self) -> Any:
        """The schedd the manifest names (located once; an unreachable pool raises)."""
        if self._schedd is None:
            self._schedd = _schedd.locate(self.bindings(), self.manifest.collector, self.manifest.schedd)
        return self._schedd

    def remove_all(self) -> list[str]:
        """Remove every job of the sweep still in the queue (found by its HydraSweepId, so also a job
        submitted just before a crash, before the manifest knew it); their ids, "cluster.proc"."""
        constraint = f'HydraSweepId == "{self.manifest.sweep_id}"'
        schedd = self.schedd()
        queued = list(schedd.query(constraint, projection=["ClusterId", "ProcId"]))
        if queued:
            schedd.act(self.bindings().JobAction.Remove, constraint)
        return [f"{ad['ClusterId']}.{ad['ProcId']}" for ad in queued]

    def job_events(self, num: int) -> list[str] | None:
        """Job `num`'s events in its event log, one line each (time, type, the reason or slot where there
        is one); None when it has no event log (yet). An unreadable log raises."""
        entry = self.manifest.job(num) or {}
        log_file, cluster, proc = entry.get("log"), entry.get("cluster"), entry.get("proc")
        if not log_file or not os.path.exists(log_file) or cluster is None:
            return None
        lines = []
        for event in self.bindings().JobEventLog(log_file).events(stop_after=0):
            if event.cluster == cluster and event.proc == proc:
                when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(event.timestamp)))
                extra = event.get("HoldReason") or event.get("Reason") or event.get("SlotName") or ""
                lines.append(f"{when}  {event.type.name}" + (f"  {extra}" if extra else ""))
        return lines
