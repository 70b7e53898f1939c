"""Reading a sweep folder: every job of the sweep, its HTCondor submissions, state, times and files.

The one public reading interface of the launcher (``hydra-htcondor status`` and reports such as
``mnist_app/report`` read sweeps through it)::

    from hydra_plugins.hydra_htcondor_launcher.view import read_sweep

    sweep = read_sweep("outputs/sweeps/2026-01-31/12-00-00")
    for job in sweep.jobs.values():
        print(job.num, job.ids, job.state.value, job.host, job.paths.stdout)

Reading only: no schedd is asked (a copied sweep folder reads the same), nothing is written. The jobs are
those of the sweep's manifest; each job's state is its HTCondor event log replayed through the launcher's own
state machine (``_jobstate.apply``), from every cluster of every event log the manifest names, so a job
submitted again by a re-run (its own cluster, maybe appended to an older batch's log) shows its latest
submission and keeps the earlier ones (``JobView.attempts``). Where a log says nothing (missing, damaged, or
a job the launcher marked lost) the manifest's view stays, and ``JobView.notes`` says why. A folder without a
manifest (an older sweep, a lost one) is read from its batch event logs alone.

- ``read_sweep(sweep_dir) -> SweepView``: ``jobs`` (job number -> ``JobView``), ``notes``, ``records``.
- ``JobView``: ``num``, ``overrides``, ``state`` (a ``JobState``), ``record`` (the launcher's ``JobRecord``:
  exit code, signal, hold and abort reasons, holds, releases...), ``ids`` (``cluster.proc`` of every
  submission), ``attempts``, ``host``, ``starts``, ``evictions``, ``submitted``/``started``/``ended``,
  ``queue_wait_s``, ``running_s()``, ``timeline`` (``Segment``: state, start, end, and a run's slot),
  ``evicted_at``, ``paths`` (the job's files), ``returned`` (its return value as the launcher noted it),
  ``notes``.

This module is light on purpose (Hydra imports every public module of the plugin package at start-up): the
reader (``_view``) and the HTCondor bindings load at first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._jobstate import JobState
    from ._view import Attempt, JobView, Segment, SweepView, read_sweep, view_of

__all__ = ["Attempt", "JobState", "JobView", "Segment", "SweepView", "read_sweep", "view_of"]


def __getattr__(name: str) -> Any:
    if name == "JobState":
        from ._jobstate import JobState

        return JobState
    if name in __all__:
        from . import _view

        return getattr(_view, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
