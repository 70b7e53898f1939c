"""The checks a type cannot express, and the values derived from the settings.

Names, types, defaults and closed choices live in ``config.HTCondorLauncherConf`` alone; OmegaConf enforces
them when Hydra composes the config. ``validate`` adds ranges, syntax, files that must exist and settings that
need each other, and returns the same fields normalized (paths absolute, the worker's Python resolved) as a
``Settings``. A bad value is one line naming the field, the value and what fits.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
from collections.abc import Iterable

from ._contract import WORKER_EXIT_CODES
from ._errors import ConfigError
from .config import Bound, CodeSnapshot, EnvMode, HTCondorLauncherConf, OnInterrupt

log = logging.getLogger(__name__)

# Submit commands the launcher writes itself, and the setting that controls each; passing one through
# submit_commands would silently replace the launcher's value.
RESERVED_COMMANDS = {
    "executable": "python / env_mode",
    "arguments": "python / env_mode",
    "initialdir": "transfer_files",
    "output": "htcondor_dir",
    "error": "htcondor_dir",
    "log": "htcondor_dir",
    "transfer_executable": "env_mode",
    "should_transfer_files": "transfer_files",
    "when_to_transfer_output": "transfer_files",
    "transfer_input_files": "transfer_input_files",
    "transfer_output_files": "transfer_files",
    "queue": "the sweep itself",
    "universe": "env_mode",
    "container_image": "container_image",
    "requirements": "requirements (a list, AND-combined)",
    "request_cpus": "request_cpus",
    "request_gpus": "request_gpus",
    "request_memory": "request_memory",
    "request_disk": "request_disk",
    "gpus_minimum_capability": "gpus_minimum_capability",
    "gpus_minimum_memory": "gpus_minimum_memory",
    "environment": "environment",
    "batch_name": "batch_name",
    "+jobbatchname": "batch_name",
    "my.jobbatchname": "batch_name",
    "checkpoint_exit_code": "checkpoint_exit_code",
    "transfer_checkpoint_files": "checkpoint_exit_code / transfer_files",
    "max_retries": "max_retries",
    "retry_until": "retry_on_task_error",
    "success_exit_code": "max_retries",
    "max_materialize": "max_running",
    "job_lease_duration": "job_lease_minutes",
    "getenv": "getenv",
}
# What the execute side sets for the slot a job got; a copy from the submitting shell would be wrong there
# (another GPU, another core count, another scratch folder). Excluded from the default getenv.
EXECUTE_SIDE_VARIABLES = (
    "CUDA_VISIBLE_DEVICES",
    "NVIDIA_VISIBLE_DEVICES",
    "GPU_DEVICE_ORDINAL",
    "ROCR_VISIBLE_DEVICES",
    "HIP_VISIBLE_DEVICES",
    "ZE_AFFINITY_MASK",
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "NUMEXPR_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "TF_NUM_THREADS",
    "JULIA_NUM_THREADS",
    "PYTHON_CPU_COUNT",
    "_CONDOR_*",
    "CONDOR_*",
    "BATCH_SYSTEM",
    "TMPDIR",
    "TMP",
    "TEMP",
    "SCRATCH_DIR",
    "X509_USER_PROXY",
    "BEARER_TOKEN_FILE",
)
# HTCondor's chirp server (want_io_proxy: a job's reports) listens on the execute machine's loopback only,
# and a docker container has a loopback of its own: a container job reaches it only on the host's network.
# The launcher asks for that network unless submit_commands names one (launchers/README.md, "Intermediate
# reports").
DOCKER_NETWORK = "docker_network_type"
CHIRP_NETWORK = "host"
_SIZE = re.compile(r"^\s*\d+(\.\d+)?\s*([KMGT]i?B?)?\s*$", re.IGNORECASE)
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_COMMAND_NAME = re.compile(r"^[+A-Za-z_][A-Za-z0-9_.+]*$")
_GETENV_ITEM = re.compile(r"^!?[A-Za-z_*][A-Za-z0-9_*]*$")
_MODULE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_ARCHIVE_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.xz", ".txz", ".tar.bz2", ".tar.zst", ".sh")


class Settings(HTCondorLauncherConf):
    """The launcher config after ``validate``: the same fields, checked and normalized (``env_mode`` an
    EnvMode, ``python`` resolved, paths absolute), plus the values that follow from them."""

    @property
    def universe(self) -> str:
        """Not a setting: the container universe is what env_mode=container means."""
        return "container" if self.env_mode == EnvMode.container else "vanilla"

    @property
    def worker_python(self) -> str:
        """The interpreter the job runs (resolved by validate)."""
        if self.python is None:
            raise ValueError("Settings.python is unset: build Settings with validate()")
        return self.python

    @property
    def timeout_s(self) -> float:
        return self.timeout_min * 60.0

    @property
    def shared_filesystem(self) -> bool:
        """The job runs the submitting interpreter in the submitting folder, as a local run would."""
        return self.env_mode == EnvMode.shared and not self.transfer_files

    @property
    def ships_code(self) -> bool:
        """Whether the jobs run the app's code from its snapshot (config.code_snapshot)."""
        if self.code_snapshot == CodeSnapshot.auto:
            return not self.shared_filesystem
        return self.code_snapshot == CodeSnapshot.always

    @property
    def docker_network(self) -> str | None:
        """The docker network a user named in submit_commands (any case of docker_network_type), or None."""
        return next((v for k, v in self.submit_commands.items() if k.lower() == DOCKER_NETWORK), None)

    @property
    def getenv_command(self) -> str | None:
        """HTCondor's getenv value, or None for none (see config.getenv)."""
        value = self.getenv
        if value is None:
            if not self.shared_filesystem:
                return None
            return ", ".join(["*", *(f"!{name}" for name in EXECUTE_SIDE_VARIABLES)])
        if isinstance(value, bool):
            return "true" if value else None
        return ", ".join(value) if value else None


def _bad(name: str, value: object, expected: str) -> ConfigError:
    return ConfigError(f"hydra.launcher.{name}={value!r} is invalid: expected {expected}")


def _bounds(conf: HTCondorLauncherConf) -> dict[str, int | float | None]:
    """Every setting declared with a Bound (config.bounded), checked; numbers ("a number") as floats."""
    checked: dict[str, int | float | None] = {}
    for f in dataclasses.fields(conf):
        bound: Bound | None = f.metadata.get("bound")
        if bound is None:
            continue
        value = getattr(conf, f.name)
        optional = f.default is None
        if value is None and optional:
            checked[f.name] = None
            continue
        fits = (
            isinstance(value, int | float)
            and not isinstance(value, bool)
            and (value > bound.least if bound.strict else value >= bound.least)
        )
        if not fits:
            op = ">" if bound.strict else ">="
            raise _bad(f.name, value, f"{bound.what} {op} {bound.least}" + (", or null" if optional else ""))
        is_float = f.type is float or float in getattr(f.type, "__args__", ())
        checked[f.name] = float(value) if is_float else value
    return checked


def _size(name: str, value: str) -> str:
    if not _SIZE.match(str(value)):
        raise _bad(name, value, 'an integer in MiB or a number with a unit KB/MB/GB/TB, e.g. "4GB"')
    return str(value).strip()


def _opt_str(name: str, value: str | None) -> str | None:
    if value is None:
        return None
    if not value.strip():
        raise _bad(name, value, "a non-empty string or null")
    return value.strip()


def _str_list(name: str, value: Iterable[str]) -> list[str]:
    items = list(value)
    if any(not item.strip() for item in items):
        raise _bad(name, items, "a list of non-empty strings")
    return [item.strip() for item in items]


def _names(name: str, value: dict[str, str], pattern: re.Pattern[str], what: str) -> dict[str, str]:
    for key in value:
        if not pattern.match(key):
            raise ConfigError(f"hydra.launcher.{name} has a bad key {key!r}: expected {what}")
    return dict(value)


def _getenv(value: object) -> bool | list[str] | None:
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str):  # a single name or pattern, or HTCondor's own comma-separated list
        value = [item for item in re.split(r"[\s,]+", value) if item]
    if isinstance(value, (list, tuple)) and all(isinstance(item, str) for item in value):
        items = [item.strip() for item in value]
        if all(_GETENV_ITEM.match(item) for item in items):
            return items
    raise _bad(
        "getenv",
        value,
        "true, false, null, or a list of variable names and patterns (* wildcards, ! excludes), "
        'e.g. ["PROJECT_ROOT", "WANDB_*"]',
    )


def validate(conf: HTCondorLauncherConf, *, cwd: str, sweep_dir: str, default_python: str) -> Settings:
    """Check every launcher setting; raise ConfigError with one line for the first bad one.

    `cwd` resolves relative paths, `sweep_dir` is the absolute hydra.sweep.dir, `default_python` the worker
    Python for env_mode=shared when python is null.
    """
    bounded = _bounds(conf)
    request_gpus = bounded["request_gpus"]
    capability = bounded["gpus_minimum_capability"]
    gpu_memory = bounded["gpus_minimum_memory"]
    for name, value in (("gpus_minimum_capability", capability), ("gpus_minimum_memory", gpu_memory)):
        if value is not None and request_gpus == 0:
            raise ConfigError(
                f"hydra.launcher.{name}={value!r} needs hydra.launcher.request_gpus >= 1 (it is 0)"
            )

    env_mode = EnvMode(conf.env_mode)  # also takes the plain string of a hand-built config
    container_image = _opt_str("container_image", conf.container_image)
    if env_mode == EnvMode.container:
        if container_image is None:
            raise ConfigError(
                "hydra.launcher.container_image is not set: env_mode=container needs an image "
                "(docker://..., oras://... or a .sif path)"
            )
        if not conf.transfer_files:
            # HTCondor mounts only the job's scratch folder into the container, and the job runs there as
            # the slot user with every capability dropped: the sweep folder is neither visible nor writable.
            raise ConfigError(
                "hydra.launcher.env_mode=container needs hydra.launcher.transfer_files=true: a container "
                "job sees only its own scratch folder, not the sweep folder on the submit side"
            )
    elif container_image is not None:
        raise ConfigError(
            f"hydra.launcher.container_image={container_image!r} is only used with env_mode=container "
            f"(it is {env_mode.value!r})"
        )

    python = _opt_str("python", conf.python)
    packed_env = _opt_str("packed_env", conf.packed_env)
    packed_unpack = _opt_str("packed_unpack", conf.packed_unpack)
    if env_mode == EnvMode.shared:
        python = python or default_python
        if not os.path.isabs(python):
            raise _bad("python", python, "an absolute path valid on the workers (env_mode=shared)")
    elif env_mode == EnvMode.container:
        python = python or "python3"
    else:
        python = python or "env/bin/python"
    if env_mode == EnvMode.packed:
        if packed_env is None:
            raise ConfigError(
                "hydra.launcher.packed_env is not set: env_mode=packed needs the archive's path"
            )
        packed_env = os.path.abspath(os.path.join(cwd, packed_env))
        if not os.path.isfile(packed_env):
            raise _bad("packed_env", packed_env, "an existing archive file")
        if packed_unpack is None and not packed_env.endswith(_ARCHIVE_SUFFIXES):
            raise _bad(
                "packed_env",
                packed_env,
                "a name ending in " + ", ".join(_ARCHIVE_SUFFIXES) + " (or set hydra.launcher.packed_unpack)",
            )
    elif packed_env is not None or packed_unpack is not None:
        raise ConfigError(
            "hydra.launcher.packed_env/packed_unpack are only used with env_mode=packed "
            f"(it is {env_mode.value!r})"
        )

    inputs = []
    for item in _str_list("transfer_input_files", conf.transfer_input_files):
        if "://" in item:  # URLs are fetched by the worker's plugins, not checked here.
            inputs.append(item)
            continue
        path = os.path.abspath(os.path.join(cwd, item))
        if not os.path.exists(path):
            raise ConfigError(
                f"hydra.launcher.transfer_input_files has {item!r}, which does not exist "
                f"(relative paths are taken from {cwd})"
            )
        if "," in path:
            raise ConfigError(
                f"hydra.launcher.transfer_input_files has {item!r}: HTCondor cannot transfer a path with ','"
            )
        inputs.append(path)

    htcondor_dir = _opt_str("htcondor_dir", conf.htcondor_dir)
    if htcondor_dir is None:
        raise _bad("htcondor_dir", conf.htcondor_dir, "a folder path")
    htcondor_dir = os.path.abspath(os.path.join(cwd, htcondor_dir))
    if conf.transfer_files:
        rel = os.path.relpath(htcondor_dir, sweep_dir)
        if rel == os.curdir or rel.startswith(os.pardir):
            raise ConfigError(
                f"hydra.launcher.htcondor_dir={htcondor_dir!r} must be inside hydra.sweep.dir "
                f"({sweep_dir}) with transfer_files=true, e.g. ${{hydra.sweep.dir}}/.htcondor"
            )
        if "," in sweep_dir:
            raise ConfigError(
                f"hydra.sweep.dir={sweep_dir!r} has a comma, which HTCondor file transfer cannot handle"
            )

    submit_commands = _names(
        "submit_commands", conf.submit_commands, _COMMAND_NAME, "a submit command name such as +WantGPULab"
    )
    for key in submit_commands:
        if key.lower() in RESERVED_COMMANDS:
            raise ConfigError(
                f"hydra.launcher.submit_commands.{key} is set by the launcher itself: use "
                f"hydra.launcher.{RESERVED_COMMANDS[key.lower()]} instead"
            )
    environment = _names("environment", conf.environment, _ENV_NAME, "an environment variable name")

    batch_name = conf.batch_name
    if not batch_name.strip() or '"' in batch_name:
        raise _bad("batch_name", batch_name, "a non-empty string without double quotes")

    checkpoint_exit_code = conf.checkpoint_exit_code
    if checkpoint_exit_code is not None and (
        not 1 <= checkpoint_exit_code <= 255 or checkpoint_exit_code in WORKER_EXIT_CODES
    ):
        taken = ", ".join(f"{code} ({what})" for code, what in WORKER_EXIT_CODES.items())
        raise _bad(
            "checkpoint_exit_code",
            checkpoint_exit_code,
            f"an exit code 1-255 other than those the launcher reserves for itself ({taken}), or null",
        )
    if conf.retry_on_task_error and bounded["max_retries"] == 0:
        raise ConfigError(
            "hydra.launcher.retry_on_task_error=true needs hydra.launcher.max_retries >= 1 (it is 0)"
        )
    getenv = _getenv(conf.getenv)
    try:
        on_interrupt = OnInterrupt(conf.on_interrupt)  # also takes the plain string of a hand-built config
    except ValueError:
        raise _bad("on_interrupt", conf.on_interrupt, "'remove' or 'keep'") from None

    try:
        code_snapshot = CodeSnapshot(conf.code_snapshot)
    except ValueError:
        raise _bad("code_snapshot", conf.code_snapshot, "'auto', 'always' or 'off'") from None
    code_modules = None
    if conf.code_modules is not None:
        code_modules = _str_list("code_modules", conf.code_modules)
        bad = [name for name in code_modules if not _MODULE_NAME.match(name)]
        if bad:
            raise _bad("code_modules", bad[0], "a top-level module or package name (as in `import NAME`)")
        if code_snapshot == CodeSnapshot.off:
            raise ConfigError(
                "hydra.launcher.code_modules is only used with code_snapshot=auto or always (it is off)"
            )

    values = {f.name: getattr(conf, f.name) for f in dataclasses.fields(conf)}
    values.update(bounded)
    values.update(
        request_memory=_size("request_memory", conf.request_memory),
        request_disk=_size("request_disk", conf.request_disk),
        requirements=_str_list("requirements", conf.requirements),
        env_mode=env_mode,
        container_image=container_image,
        python=python,
        packed_env=packed_env,
        packed_unpack=packed_unpack,
        transfer_input_files=inputs,
        htcondor_dir=htcondor_dir,
        submit_commands=submit_commands,
        environment=environment,
        batch_name=batch_name.strip(),
        schedd=_opt_str("schedd", conf.schedd),
        collector=_opt_str("collector", conf.collector),
        getenv=getenv,
        on_interrupt=on_interrupt,
        code_snapshot=code_snapshot,
        code_modules=code_modules,
    )
    settings = Settings(**values)
    network = settings.docker_network
    if env_mode == EnvMode.container and network is not None and network.strip().lower() != CHIRP_NETWORK:
        log.warning(
            "hydra.launcher.submit_commands.%s=%r: the jobs' reports (reporting.report, what a pruning "
            "sweeper reads) cannot reach HTCondor's chirp server, which listens on the execute machine's "
            "loopback only, reachable from a docker container on the host's network (%s, the launcher's "
            "choice when unset); they are dropped",
            DOCKER_NETWORK,
            network,
            CHIRP_NETWORK,
        )
    return settings
