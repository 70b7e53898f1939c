"""A sweep on an HTCondor pool, driven job by job: the launcher's public, non-blocking interface.

``Sweep`` owns one sweep folder (``hydra.sweep.dir``): its layout, its manifest, its jobs' records and every
question to the schedd. A sweeper that streams (keep N jobs in flight, submit one the moment another ends,
prune) drives it directly::

    sweep = Sweep.from_launcher(launcher)        # after Hydra called launcher.setup(...)
    sweep.submit([["x=1"], ["x=2"]], first_num=0)
    while sweep.active():
        for event in sweep.poll():               # never blocks
            if event.kind == "report" and bad(event.value):
                sweep.remove(event.num, f"pruned at step {event.step}")
            elif event.kind == "ended":
                ret = sweep.result(event.num)    # an HTCondorJobReturn, as launch() returns it
        time.sleep(0.5)
    sweep.close()

Hydra's ``HTCondorLauncher.launch()`` is this interface driven to completion (``submit`` then ``wait``).

Light on purpose, as every public module of the package (Hydra imports them at each start-up): no HTCondor
bindings, no cloudpickle; the work is done by ``_sweep.SweepEngine``, imported when a sweep is opened.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from ._jobstate import JobState, SweepEvent

if TYPE_CHECKING:
    from hydra.core.utils import JobReturn

    from ._batch import HTCondorJobReturn
    from ._sweep import SweepEngine
    from .htcondor_launcher import HTCondorLauncher

__all__ = ["JobState", "Sweep", "SweepEvent"]


class Sweep:
    """One sweep folder's jobs on the pool: submit, poll, results, removal, re-attachment.

    Not thread-safe: one driver calls it. Job numbers (``hydra.job.num``) name the jobs; a number is
    submitted once per Sweep.
    """

    def __init__(self, engine: SweepEngine) -> None:
        self._engine = engine

    @classmethod
    def from_launcher(cls, launcher: HTCondorLauncher) -> Sweep:
        """The sweep of a launcher Hydra has set up (``setup()`` called): validates its settings (ConfigError,
        one line), connects to the schedd (PoolUnreachableError, before any folder exists), and opens the
        sweep folder's manifest with the launcher's resume rules: ``resume=true`` continues the manifest on
        disk, ``resume=false`` starts afresh once per process (the launcher keeps the manifest it opened, so
        a later Sweep or batch of the same process adds to it)."""
        from ._sweep import SweepEngine

        return cls(SweepEngine.from_launcher(launcher))

    def submit(self, job_overrides: Sequence[Sequence[str]], first_num: int) -> list[int]:
        """Queue these jobs, numbered first_num, first_num + 1, ...; returns their numbers at once, never
        waits for a job. Per job, the launcher's resume rules: a finished result whose task and configs are
        unchanged is reused (its "ended" event comes at the next poll), a job of this sweep still in HTCondor
        is re-attached (followed from now on), any other is submitted; the new ones of one call go to the pool
        as one HTCondor cluster. A job number the manifest holds with other overrides stops with
        ManifestError; the pool refusing the jobs, with SubmitError."""
        return self._engine.submit(job_overrides, first_num)

    def poll(self) -> list[SweepEvent]:
        """What happened since the last call, in order; never blocks.

        Reads the event logs of every cluster in flight, releases or removes held jobs (max_releases),
        cross-checks unfinished jobs with the schedd now and then (a job it no longer knows ends REMOVED),
        enforces the deadline (timeout_min, counted from each cluster's submission or re-attachment), and
        saves the manifest (at most every few seconds, and once no job is left in flight). Each job yields a
        "state" event when its state differs from the one last told (states passed through between two polls
        are not told), one "report" event per intermediate value it reported, and exactly one "ended" event,
        its last (state DONE, FAILED or REMOVED; ``reason``: the removal's or hold's reason, or the exit code
        or signal of a FAILED job). A job's events come in the order they happened; within one poll, jobs
        come by number.
        """
        return self._engine.poll()

    def result(self, num: int) -> HTCondorJobReturn:
        """The result of an ended job (its "ended" event was returned by poll): the worker's JobReturn, or
        FAILED with the real cause (exception, exit code, hold or removal reason, the stderr's tail) and the
        log paths. Never raises for a job that ended; ValueError for one that has not."""
        return self._engine.result(num)

    def log_paths(self, num: int) -> str:
        """Where a job's logs are, as every job error names them ("stdout ..., stderr ..., HTCondor log
        ..."): for a caller that tells a failure its own way. KeyError for a number not of this Sweep."""
        return self._engine.log_paths(num)

    def remove(self, num: int, reason: str) -> None:
        """Remove this one job from HTCondor (condor_rm), e.g. ``remove(3, "pruned at step 2")``. It ends
        REMOVED with ``reason``: its result is FAILED, ``reason`` in its error; poll() returns its "ended"
        event once HTCondor's abort event is read (a job that ended meanwhile keeps its own outcome). A job
        that already ended is left as it is; an unknown number raises KeyError."""
        self._engine.remove(num, reason)

    def reattach(self, nums: Sequence[int]) -> dict[int, str]:
        """For a restarted driver (the manifest opened with resume=true): per job number, "running" (the
        schedd still has it: followed from now on, its events come from its event log's start), "finished"
        (its result file exists: an "ended" event comes at the next poll, DONE for a COMPLETED result, FAILED
        for a FAILED one, and result() reads that file), or
        "lost" (neither: the manifest does not know it, or HTCondor and the sweep folder lost it). Jobs the
        Sweep already follows are "running" or "finished" as they are."""
        return self._engine.reattach(nums)

    def active(self) -> list[int]:
        """The jobs submitted or re-attached and not ended yet (those whose "ended" event poll has not
        returned yet), in number order."""
        return self._engine.active()

    def wait(self, nums: Sequence[int] | None = None) -> dict[int, JobReturn]:
        """Poll until these jobs (None: every job of the Sweep) ended and return their results, as launch()
        does: the live job-status table (one for the sweep's jobs, across clusters), the deadline, and Ctrl-C
        by on_interrupt (remove the unfinished jobs, or keep them running and say how to re-attach; the
        KeyboardInterrupt propagates). The events it polls are not returned by a later poll(): its caller
        has the results instead."""
        return self._engine.wait(nums)

    def close(self) -> None:
        """Save the manifest a last time (with the results' notes that ``hydra-htcondor status`` shows).
        Jobs still in flight keep running in HTCondor; a later Sweep re-attaches them."""
        self._engine.close()
