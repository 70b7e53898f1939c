"""Asking the schedd: where it is, and which of a cluster's jobs it still knows (the launcher while it waits,
and ``hydra-htcondor status`` for a sweep nobody follows). No bindings imported here: callers pass them."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Collection
from typing import Any, TypeVar

log = logging.getLogger(__name__)
T = TypeVar("T")
# Why a job is failed when the schedd knows it in neither its queue nor its history.
LOST = "HTCondor no longer knows this job (in neither the queue nor the history)"
# A query the launcher decides on (connect, the resumed sweep's jobs) is tried this often, waiting
# RETRY_BACKOFF_S, then twice that, between tries: a busy schedd that times out once (20 s each by
# HTCondor's default) gets another chance; one that never answers stops the run, never a guess.
QUERY_TRIES = 3
RETRY_BACKOFF_S = 1.0


class Unanswered(Exception):
    """Every try of a query failed; the message is the last error, one line, and how long it was tried."""


def where(collector: str | None, schedd: str | None) -> str:
    """The schedd as the settings name it, for an error message."""
    via = collector or f"the collector named by CONDOR_CONFIG={os.environ.get('CONDOR_CONFIG', '(unset)')}"
    return f"{f'schedd {schedd!r}' if schedd else 'the schedd'} via {via}"


def retried(
    call: Callable[[], T],
    what: str,
    *,
    tries: int = QUERY_TRIES,
    backoff_s: float | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """call(), tried up to `tries` times with a doubling wait between (RETRY_BACKOFF_S first); Unanswered
    after the last failure."""
    backoff_s = RETRY_BACKOFF_S if backoff_s is None else backoff_s
    tic = time.monotonic()
    for attempt in range(1, tries + 1):
        try:
            return call()
        except Exception as exc:
            detail = " ".join(str(exc).split()) or type(exc).__name__
            if attempt == tries:
                took = time.monotonic() - tic
                raise Unanswered(f"{detail} ({tries} tries in {took:.0f} s)") from None
            wait = backoff_s * 2 ** (attempt - 1)
            log.warning("%s failed (try %d of %d, next in %.0f s): %s", what, attempt, tries, wait, detail)
            sleep(wait)
    raise AssertionError("unreachable")  # tries >= 1


def locate(htcondor: Any, collector: str | None, schedd: str | None) -> Any:
    """The schedd named by `schedd` (through `collector`, else the local pool's collector), or without
    names the local schedd of CONDOR_CONFIG."""
    if not collector and not schedd:
        return htcondor.Schedd()
    coll = htcondor.Collector(collector) if collector else htcondor.Collector()
    if schedd:
        return htcondor.Schedd(coll.locate(htcondor.DaemonType.Schedd, schedd))
    return htcondor.Schedd(coll.locate(htcondor.DaemonType.Schedd))


def sweep_ads(schedd: Any, sweep_id: str, projection: list[str], *, history: bool) -> list[Any]:
    """The ClassAds of a sweep's jobs (found by HydraSweepId) in the schedd's queue, or in its history;
    retried (Unanswered when every try failed)."""
    constraint = f'HydraSweepId == "{sweep_id}"'
    what = f"asking the schedd's {'history' if history else 'queue'} for the sweep's jobs"

    def ask() -> list[Any]:
        if history:
            return list(schedd.history(constraint, projection=projection, match=-1))
        return list(schedd.query(constraint, projection=projection))

    return retried(ask, what)


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


def job_lease_s(ad: Any) -> float | None:
    """A job ad's JobLeaseDuration (the pool's default when the launcher set none): how long HTCondor waits
    for a disconnected job; None when the ad has no number there."""
    try:
        return float(ad["JobLeaseDuration"])
    except (KeyError, TypeError, ValueError):
        return None
