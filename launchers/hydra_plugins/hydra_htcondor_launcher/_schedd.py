"""Asking the schedd: where it is, and which of a cluster's jobs it still knows (the launcher while it waits,
and ``hydra-htcondor status`` for a sweep nobody follows). No bindings imported here: callers pass them."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

# Why a job is failed when the schedd knows it in neither its queue nor its history.
LOST = "HTCondor no longer knows this job (in neither the queue nor the history)"


def locate(htcondor: Any, collector: str | None, schedd: str | None) -> Any:
    """The schedd named by `schedd` (through `collector`, else the local pool's collector), or without
    names the local schedd of CONDOR_CONFIG."""
    if not collector and not schedd:
        return htcondor.Schedd()
    coll = htcondor.Collector(collector) if collector else htcondor.Collector()
    if schedd:
        return htcondor.Schedd(coll.locate(htcondor.DaemonType.Schedd, schedd))
    return htcondor.Schedd(coll.locate(htcondor.DaemonType.Schedd))


def known_procs(schedd: Any, cluster: int, procs: Collection[int], sweep_id: str | None) -> set[int]:
    """Of `procs` of the cluster, those in the schedd's queue or else in its history. The history is a scan
    of a file: it is asked only for the procs missing from the queue (rare: a job that ended since the event
    log was read, or a lost one), never for the finished jobs a big sweep has left the queue with."""
    constraint = f"ClusterId == {cluster}"
    if sweep_id is not None:  # a restarted schedd numbers its clusters from 1 again
        constraint += f' && HydraSweepId == "{sweep_id}"'
    known = {int(ad["ProcId"]) for ad in schedd.query(constraint, projection=["ProcId"])}
    missing = sorted(set(procs) - known)
    if missing:
        listed = ", ".join(str(p) for p in missing)
        history = schedd.history(
            f"{constraint} && member(ProcId, {{{listed}}})", projection=["ProcId"], match=len(missing)
        )
        known |= {int(ad["ProcId"]) for ad in history}
    return known & set(procs)
