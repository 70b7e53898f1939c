"""Structured config of the HTCondor launcher, registered as ``hydra/launcher: htcondor``.

This dataclass is the only declaration of the launcher's settings: names, types, defaults and what each one
means. OmegaConf checks types and the closed choices (Enums) when Hydra composes the config; a simple
bound (a number's minimum) is declared beside its field (``Bound``) and checked by ``_settings.validate``,
which adds the checks a declaration cannot express (files that must exist, settings that need each other).
"""

from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from hydra.core.config_store import ConfigStore


@dataclass(frozen=True)
class Bound:
    """The least value of a numeric setting, declared beside its field (``bounded``); an error says
    'expected <what> >= <least>' (or '>' when `strict`, and ', or null' for an optional setting)."""

    least: int | float
    what: str = "an integer"
    strict: bool = False


def bounded(default: Any, least: int | float, what: str = "an integer", strict: bool = False) -> Any:
    """A field with its Bound (in the field's metadata: OmegaConf ignores it)."""
    return field(default=default, metadata={"bound": Bound(least, what, strict)})


class OnInterrupt(str, Enum):
    """What Ctrl-C while waiting does to the batch's unfinished jobs (a str Enum, as EnvMode is)."""

    # Remove them from the pool (finished results stay).
    remove = "remove"
    # Leave them running; the launcher says how to re-attach.
    keep = "keep"


class EnvMode(str, Enum):
    """How the worker gets Python (see README, "Worker environments").

    A str Enum, compared with ==: Hydra's plugin scan re-executes this module, so a member may come from an
    earlier copy of the class; its value still compares equal (and a plain "shared" does too).
    """

    # The interpreter path is valid on the worker, e.g. a shared filesystem or the local pool.
    shared = "shared"
    # HTCondor's container universe with container_image.
    container = "container"
    # A packed environment archive travels with the job and is unpacked before the job runs.
    packed = "packed"


class CodeSnapshot(str, Enum):
    """Which jobs run the app's own code from its snapshot taken at submission (README, "The app's own
    code"); a str Enum, as EnvMode is."""

    # Jobs without a shared filesystem (transfer_files, container, packed); a shared-filesystem job imports
    # the code in place.
    auto = "auto"
    # Every job, also on a shared filesystem: code edited while jobs wait in the queue does not reach them.
    always = "always"
    # None: the worker imports what its environment has (send code with transfer_input_files yourself).
    off = "off"


@dataclass
class HTCondorLauncherConf:
    _target_: str = "hydra_plugins.hydra_htcondor_launcher.htcondor_launcher.HTCondorLauncher"

    # --- resources (one slot per job) ---
    # CPU cores per job (submit command request_cpus).
    request_cpus: int = bounded(1, 1)
    # GPUs per job (request_gpus); 0 asks for none.
    request_gpus: int = bounded(0, 0)
    # Memory per job: an integer in MiB or a number with a unit (KB, MB, GB, TB), e.g. "4GB".
    request_memory: str = "2GB"
    # Scratch disk per job, same syntax as request_memory.
    request_disk: str = "2GB"
    # Minimum CUDA compute capability of the GPU, e.g. 7.0 (only with request_gpus > 0).
    gpus_minimum_capability: float | None = bounded(
        None, 0, "a compute capability (such as 7.0)", strict=True
    )
    # Minimum GPU memory in MiB (only with request_gpus > 0).
    gpus_minimum_memory: int | None = bounded(None, 0, "an integer number of MiB", strict=True)
    # Extra ClassAd requirement expressions; all of them are AND-combined (with each other and with the
    # GPU constraints above), none replaces another.
    requirements: list[str] = field(default_factory=list)

    # --- where and with which Python the job runs ---
    # shared, container or packed (EnvMode). The HTCondor universe follows from it: container for
    # env_mode=container, vanilla otherwise.
    env_mode: EnvMode = EnvMode.shared
    # Image for env_mode=container: docker://..., oras://... or a path to a .sif file.
    container_image: str | None = None
    # Worker Python. null means: the submitting interpreter (shared), "python3" on the image's PATH
    # (container), or bin/python inside the unpacked environment (packed; a relative path is taken
    # relative to the unpacked folder).
    python: str | None = None
    # env_mode=packed: path of the archive on the submit side (a .tar/.tar.gz/.tgz/.tar.xz/.tar.zst tarball
    # of a venv or conda/pixi environment, a pixi-pack .tar, or a self-extracting .sh).
    packed_env: str | None = None
    # env_mode=packed: shell command that unpacks the archive into ./env on the worker; null picks one
    # from the archive's suffix ($ARCHIVE is the archive's file name in the job's scratch folder).
    packed_unpack: str | None = None

    # --- files ---
    # False: the sweep folder is on a filesystem shared with the workers. True: HTCondor file transfer
    # (the job spec travels in, the job folder and result travel back into the same sweep folder).
    transfer_files: bool = False
    # Extra input files/folders sent with every job (absolute, or relative to the submitting cwd).
    transfer_input_files: list[str] = field(default_factory=list)
    # Where job specs, results, stdout/stderr and the HTCondor event log go.
    htcondor_dir: str = "${hydra.sweep.dir}/.htcondor"

    # --- the app's own code (README, "The app's own code") ---
    # auto, always or off (CodeSnapshot): which jobs run the app's modules from a snapshot taken at
    # submission (sent with the job, first on the worker's sys.path).
    code_snapshot: CodeSnapshot = CodeSnapshot.auto
    # The top-level modules and packages to ship, exactly (e.g. [my_app, mylib]); null: every module the
    # submitting process imported from outside the Python installation.
    code_modules: list[str] | None = None

    # --- surviving a real pool: checkpoints, retries, a cap, the job's environment ---
    # Exit code by which a task says "I saved my state in my job folder, restart me" (README, "Checkpoints
    # and evictions"): HTCondor restarts the job with its job folder as the task left it. null turns
    # self-checkpointing off (an exit with that code is then an ordinary failure).
    checkpoint_exit_code: int | None = 85
    # A job that dies outside the task (non-zero exit, signal, lost node, worker-side error) is run again by
    # HTCondor up to this many times, preferably on another machine; 0 never retries.
    max_retries: int = bounded(0, 0)
    # Also retry a job whose task raised (needs max_retries >= 1); false returns the task's exception at once.
    retry_on_task_error: bool = False
    # At most this many jobs of a batch in the queue at once (HTCondor's late materialization,
    # max_materialize); null queues every job of the batch at submission.
    max_running: int | None = bounded(None, 1)
    # Minutes HTCondor keeps a job whose execute machine it lost touch with (a dead node, a network
    # outage; the job shows as `disconnected`) before it gives up and requeues the job (submit command
    # job_lease_duration): an integer >= 1; null keeps HTCondor's default (40 minutes unless the pool sets
    # JOB_DEFAULT_LEASE_DURATION). Shorter requeues a dead machine's jobs sooner; too short also requeues
    # jobs that a brief outage would have spared.
    job_lease_minutes: int | None = bounded(None, 1, "an integer number of minutes")
    # Which of the submitting process's environment variables a job gets: true (all), false (none), or a
    # list of names and patterns (HTCondor's getenv, e.g. ["PROJECT_ROOT", "WANDB_*"]). null: all of them
    # on a shared filesystem (env_mode=shared, transfer_files=false) minus what the execute side must set
    # (GPU assignment, thread counts, _CONDOR_*, scratch folders), none otherwise. `environment` adds to it.
    getenv: Any = None

    # --- pass-through ---
    # Extra submit commands passed through verbatim, e.g. {"+JobDurationCategory": '"Medium"'}.
    submit_commands: dict[str, str] = field(default_factory=dict)
    # Environment variables set in every job.
    environment: dict[str, str] = field(default_factory=dict)
    # JobBatchName of the cluster (groups the jobs in condor_q).
    batch_name: str = "${hydra.job.name}"

    # --- pool ---
    # Schedd name; null means the local schedd (the one CONDOR_CONFIG describes).
    schedd: str | None = None
    # Collector host[:port] used to locate the schedd; null means the one CONDOR_CONFIG names.
    collector: str | None = None

    # --- waiting ---
    # Seconds between reads of the job event log.
    poll_interval: float = bounded(0.5, 0, "a number", strict=True)
    # Seconds between live job-status tables (one is also logged after submission and, at most every 5 s,
    # when a job's state changes).
    status_interval: float = bounded(15.0, 0, "a number", strict=True)
    # Deadline per batch in minutes, counted for each cluster from its submission (or re-attachment): then its
    # unfinished jobs are removed and fail.
    timeout_min: float = bounded(1440.0, 0, "a number", strict=True)
    # A held job is released up to this many times before it is removed and failed with its hold reason;
    # 0 removes it at the first hold.
    max_releases: int = bounded(0, 0)

    # --- sweeps that outlive the terminal (README, "Resume, detach, status") ---
    # Running the same command again with the same hydra.sweep.dir reuses finished results (not if the task's
    # code or the configs changed), re-attaches to jobs still in HTCondor and submits only the rest (state in
    # ${hydra.sweep.dir}/.htcondor/manifest.json).
    # false starts afresh in that folder.
    resume: bool = True
    # Submit the batch, write the manifest, log how to follow and collect it, and exit 0 without waiting.
    detach: bool = False
    # Ctrl-C while waiting: "remove" the batch's unfinished jobs, or "keep" them running (re-attach later).
    on_interrupt: OnInterrupt = OnInterrupt.remove


ConfigStore.instance().store(
    group="hydra/launcher",
    name="htcondor",
    node=HTCondorLauncherConf,
    provider="hydra_htcondor_launcher",
)
