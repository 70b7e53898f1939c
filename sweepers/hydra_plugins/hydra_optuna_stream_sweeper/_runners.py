"""Runners: how the sweeper's trials become jobs of a Hydra launcher, one interface for two ways.

``HTCondorRunner`` streams: each trial is submitted the moment a slot is free and followed through the
launcher's non-blocking ``Sweep`` (its reports arrive as events; a pruned job is removed from HTCondor).
``BatchRunner`` works with any launcher through Hydra's ``launch()``: the trials submitted since the last
wait run as one batch, and the next batch waits for its slowest trial. In-process launchers (Hydra's basic
launcher) prune through ``reporting.set_handler``: the job's ``report`` asks the sweeper, and a pruned
trial raises ``optuna.TrialPruned`` inside the job.
"""

from __future__ import annotations

import importlib.util
import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import optuna
from hydra.core.hydra_config import HydraConfig
from hydra.core.utils import JobReturn, JobStatus
from hydra.plugins.launcher import Launcher

log = logging.getLogger(__name__)

# (job number, step, value) -> why the trial is pruned, or None to go on.
Decide = Callable[[int, int, float], "str | None"]
Job = tuple[int, Sequence[str]]  # (job number == trial number, overrides)

STREAMING_MODULE = "hydra_plugins.hydra_htcondor_launcher.sweep"
REPORTING_MODULE = "hydra_plugins.hydra_htcondor_launcher.reporting"
# How long close() waits for the jobs the sweeper removed to end (measured: 2-3 s for mnist_app's).
REMOVED_END_S = 30.0


@dataclass(frozen=True)
class Ended:
    """One trial's job ended: its result, or why there is none (pruned by the sweeper, lost)."""

    num: int
    ret: JobReturn | None = None
    pruned: str | None = None  # the sweeper pruned it and removed its job: why
    lost: str | None = None  # no job and no result for it (a resumed sweep): why
    logs: str | None = None  # where a failed job's logs are (said with its failure on the console)


class Runner(ABC):
    """Runs trials' jobs: submit, wait for some to end, re-attach after a restart, stop."""

    streaming: bool

    @abstractmethod
    def submit(self, jobs: Sequence[Job]) -> None:
        """Start these jobs (or queue them for the next batch)."""

    @abstractmethod
    def wait(self) -> list[Ended]:
        """Block until at least one job ended (or none is left) and return what ended."""

    @abstractmethod
    def reattach(self, nums: Sequence[int]) -> dict[int, str]:
        """Follow the jobs of these trials again (a resumed study's RUNNING trials); returns the lost ones
        (num -> why). The others end through ``wait`` as if submitted by this run."""

    def stop(self, reason: str) -> list[int]:
        """Remove the jobs still running (the search stops); returns their numbers."""
        return []

    def interrupted(self) -> list[int]:
        """Ctrl-C: the jobs removed as the launcher's settings ask (the others keep running)."""
        return []

    def close(self) -> None:  # noqa: B027 (most runners keep nothing)
        """Done: save what the runner keeps."""


def _contiguous(jobs: Sequence[Job]) -> Iterator[list[Job]]:
    """Jobs in runs of consecutive numbers (one launch/submit call each: they number from a first one)."""
    run: list[Job] = []
    for job in sorted(jobs, key=lambda j: j[0]):
        if run and job[0] != run[-1][0] + 1:
            yield run
            run = []
        run.append(job)
    if run:
        yield run


@contextmanager
def _reporting_handler(decide: Decide) -> Iterator[bool]:
    """While a batch runs in this process, route its jobs' ``report(step, value)`` to the sweeper: a trial
    to prune raises optuna.TrialPruned in the job (its failure then means PRUNED). Yields whether the
    launcher's reporting module is there to route."""
    if importlib.util.find_spec(REPORTING_MODULE) is None:
        yield False
        return
    reporting: Any = importlib.import_module(REPORTING_MODULE)

    def handler(step: int, value: float) -> None:
        num = HydraConfig.get().job.num  # the job calling report: the basic launcher runs one at a time
        reason = decide(int(num), int(step), float(value))
        if reason is not None:
            raise optuna.TrialPruned(reason)

    reporting.set_handler(handler)
    try:
        yield True
    finally:
        reporting.set_handler(None)


def _job_folder(ret: JobReturn) -> str | None:
    """A failed job's folder (its log file is there), for a launcher that names no other log."""
    if ret.status == JobStatus.COMPLETED or ret.hydra_cfg is None:
        return None
    return f"job folder {ret.hydra_cfg.hydra.runtime.output_dir}"


class BatchRunner(Runner):
    """Any Hydra launcher, through ``launch()``: the jobs submitted since the last ``wait`` are one batch."""

    streaming = False

    def __init__(self, launcher: Launcher, decide: Decide) -> None:
        self.launcher = launcher
        self.decide = decide
        self.pending: list[Job] = []

    def submit(self, jobs: Sequence[Job]) -> None:
        self.pending.extend(jobs)

    def wait(self) -> list[Ended]:
        batch, self.pending = self.pending, []
        ended: list[Ended] = []
        with _reporting_handler(self.decide):
            for run in _contiguous(batch):
                returns = self.launcher.launch([list(o) for _, o in run], initial_job_idx=run[0][0])
                ended += [
                    Ended(num, ret, logs=_job_folder(ret)) for (num, _), ret in zip(run, returns, strict=True)
                ]
        return ended

    def reattach(self, nums: Sequence[int]) -> dict[int, str]:
        name = type(self.launcher).__name__
        why = f"lost: the sweeper stopped while it ran ({name} cannot re-attach a job)"
        return dict.fromkeys(nums, why)


class HTCondorRunner(Runner):
    """The HTCondor launcher's ``Sweep``: a job per trial, submitted when a slot frees, followed by events."""

    streaming = True

    def __init__(
        self, sweep: Any, decide: Decide, poll_s: float = 0.5, keep_on_interrupt: bool = False
    ) -> None:
        self.sweep = sweep
        self.decide = decide
        self.keep_on_interrupt = keep_on_interrupt  # hydra.launcher.on_interrupt=keep
        self.poll_s = poll_s  # between two polls that found nothing (event logs on a local disk: cheap)
        self.pruned: dict[int, str] = {}  # removed by the sweeper; their "ended" event is not news

    def submit(self, jobs: Sequence[Job]) -> None:
        for run in _contiguous(jobs):
            self.sweep.submit([list(o) for _, o in run], first_num=run[0][0])

    def _ended(self, events: Sequence[Any]) -> list[Ended]:
        ended: list[Ended] = []
        for event in events:
            if event.num in self.pruned:
                continue
            if event.kind == "report" and event.step is not None and event.value is not None:
                reason = self.decide(event.num, int(event.step), float(event.value))
                if reason is not None:
                    self.sweep.remove(event.num, reason)
                    self.pruned[event.num] = reason
                    ended.append(Ended(event.num, pruned=reason))
            elif event.kind == "ended":
                ret = self.sweep.result(event.num)
                logs = None if ret.status == JobStatus.COMPLETED else self.sweep.log_paths(event.num)
                ended.append(Ended(event.num, ret, logs=logs))
        return ended

    def wait(self) -> list[Ended]:
        while True:
            ended = self._ended(self.sweep.poll())
            if ended or not [n for n in self.sweep.active() if n not in self.pruned]:
                return ended
            time.sleep(self.poll_s)

    def reattach(self, nums: Sequence[int]) -> dict[int, str]:
        found = self.sweep.reattach(list(nums))
        return {
            num: "lost: neither HTCondor nor the sweep folder knows its job"
            for num, how in found.items()
            if how == "lost"
        }

    def stop(self, reason: str) -> list[int]:
        removed = [n for n in self.sweep.active() if n not in self.pruned]
        for num in removed:
            self.sweep.remove(num, reason)
            self.pruned[num] = reason
        return removed

    def interrupted(self) -> list[int]:
        if self.keep_on_interrupt:
            return []
        return self.stop("interrupted (Ctrl-C)")

    def close(self) -> None:
        # A removed job ends with HTCondor's abort event, 2-3 s after its removal (the job stops at SIGTERM):
        # waited for here, so that the manifest saved at close says REMOVED with the reason ("pruned at
        # epoch 1") instead of "running" when the search's last trials were pruned. Bounded: a job slow to
        # die is left to HTCondor, and hydra-htcondor status reads its end from the event log.
        deadline = time.monotonic() + REMOVED_END_S
        try:
            while [n for n in self.sweep.active() if n in self.pruned] and time.monotonic() < deadline:
                self.sweep.poll()  # their "ended" events are not news: the trials were told already
                time.sleep(self.poll_s)
        finally:
            self.sweep.close()


def make_runner(launcher: Launcher, decide: Decide) -> Runner:
    """The HTCondor launcher streams; any other launcher runs batches (said in one line)."""
    if type(launcher).__module__.startswith("hydra_plugins.hydra_htcondor_launcher."):
        if importlib.util.find_spec(STREAMING_MODULE) is not None:
            sweep_cls = importlib.import_module(STREAMING_MODULE).Sweep
            # Poll as often as the launcher's own wait does, and Ctrl-C as it does (its settings).
            conf = getattr(launcher, "conf", None)
            poll_s = float(getattr(conf, "poll_interval", 0.5))
            keep = str(getattr(getattr(conf, "on_interrupt", None), "value", "remove")) == "keep"
            return HTCondorRunner(sweep_cls.from_launcher(launcher), decide, poll_s, keep_on_interrupt=keep)
    log.info(
        "%s has no streaming interface: trials run in batches of n_jobs, each batch waits for its slowest "
        "trial (launcher=htcondor streams)",
        type(launcher).__name__,
    )
    return BatchRunner(launcher, decide)
