"""One batch of a sweep: what the launcher knows about it, handed from submission to waiting to collecting."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hydra.core.utils import JobReturn, filter_overrides
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig

from ._jobstate import JobRecord
from ._layout import SweepLayout
from ._settings import Settings


@dataclass
class HTCondorJobReturn(JobReturn):
    """Hydra's JobReturn plus what HTCondor did with the job; every result of this launcher is one."""

    htcondor_id: str | None = None  # ClusterId.ProcId
    # Runs that ended with an exit code or a signal: 1, plus one per retry (max_retries).
    attempts: int = 1
    # Times the job was evicted and went back to the queue (each restart resumes from its job folder).
    evictions: int = 0


@dataclass
class Job:
    """One Hydra job of the batch."""

    num: int  # hydra.job.num
    overrides: list[str]
    # The job's folder, as the submit side computes it for transfer_files ("" otherwise: the worker composes
    # the job's config and knows it).
    job_dir: str = ""
    subdir: str = ""

    @property
    def shown_overrides(self) -> str:
        """The overrides as Hydra's own launchers log them (internal ones filtered out)."""
        return " ".join(filter_overrides(self.overrides))


@dataclass
class Batch:
    """Everything about one batch (one HTCondor cluster): the launch context, the validated settings, the
    jobs, where their files go, and, once submitted, the cluster and each job's JobRecord."""

    settings: Settings
    # The launch context Hydra gave the launcher: the sweep's config, and what the workers need to run it.
    config: DictConfig
    hydra_context: HydraContext
    task_function: TaskFunction
    cwd: str  # the submitting working directory
    sweep_dir: str  # hydra.sweep.dir, absolute
    sweep_dir_cfg: Any  # hydra.sweep.dir as configured (what a transferred job's JobReturn gets back)
    jobs: list[Job] = field(default_factory=list)
    # Set by submission: the cluster id, and one record per job keyed by its proc id.
    cluster: int | None = None
    records: dict[int, JobRecord] = field(default_factory=dict)
    # A re-attached cluster's own event log (it was named after the batch that submitted it).
    event_log: str | None = None

    @property
    def htcondor_dir(self) -> str:
        return self.settings.htcondor_dir

    @property
    def layout(self) -> SweepLayout:
        """Where the sweep's files are."""
        return SweepLayout(self.sweep_dir, self.htcondor_dir)

    @property
    def nums(self) -> list[int]:
        return [job.num for job in self.jobs]

    @property
    def log_file(self) -> str:
        """The batch's HTCondor event log."""
        if self.event_log is not None:
            return self.event_log
        return self.layout.batch_log(self.jobs[0].num, self.jobs[-1].num)

    def result_path(self, job: Job) -> str:
        return self.layout.result(job.num)

    def job_paths(self, job: Job) -> str:
        """Where to look when a job failed (every job error names them)."""
        return (
            f"stdout {self.layout.stdout(job.num)}, stderr {self.layout.stderr(job.num)}, "
            f"HTCondor log {self.log_file}"
        )

    def submitted(self, cluster: int, first_proc: int, lease_s: float | None = None) -> None:
        """Record the cluster the schedd created: job i of the batch is proc first_proc + i; `lease_s` is
        the jobs' JobLeaseDuration (their cluster ad's)."""
        self.cluster = cluster
        self.records = {
            first_proc + i: JobRecord(
                proc=first_proc + i,
                num=job.num,
                overrides=job.shown_overrides,
                cluster=cluster,
                lease_s=lease_s,
            )
            for i, job in enumerate(self.jobs)
        }
