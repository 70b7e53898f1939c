"""Validation of the launcher config: a bad value is one line naming the field, the value and what fits."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ._errors import ConfigError

ENV_MODES = ("shared", "container", "packed")
UNIVERSES = ("vanilla", "container")
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
    "universe": "universe",
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
}
_SIZE = re.compile(r"^\s*\d+(\.\d+)?\s*([KMGT]i?B?)?\s*$", re.IGNORECASE)
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_COMMAND_NAME = re.compile(r"^[+A-Za-z_][A-Za-z0-9_.+]*$")
_ARCHIVE_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.xz", ".txz", ".tar.bz2", ".tar.zst", ".sh")


@dataclass(frozen=True)
class Settings:
    """The launcher config after validation (plain Python values, paths made absolute)."""

    request_cpus: int = 1
    request_gpus: int = 0
    request_memory: str = "2GB"
    request_disk: str = "2GB"
    gpus_minimum_capability: float | None = None
    gpus_minimum_memory: int | None = None
    requirements: tuple[str, ...] = ()
    universe: str = "vanilla"
    env_mode: str = "shared"
    container_image: str | None = None
    python: str = ""
    packed_env: str | None = None
    packed_unpack: str | None = None
    transfer_files: bool = False
    transfer_input_files: tuple[str, ...] = ()
    htcondor_dir: str = ""
    submit_commands: dict[str, str] = field(default_factory=dict)
    environment: dict[str, str] = field(default_factory=dict)
    batch_name: str = ""
    schedd: str | None = None
    collector: str | None = None
    poll_interval: float = 0.5
    status_interval: float = 15.0
    timeout_min: float = 1440.0
    max_releases: int = 0


def _bad(name: str, value: Any, expected: str) -> ConfigError:
    return ConfigError(f"hydra.launcher.{name}={value!r} is invalid: expected {expected}")


def _int(params: Mapping[str, Any], name: str, minimum: int) -> int:
    value = params.get(name)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise _bad(name, value, f"an integer >= {minimum}")
    return value


def _positive(params: Mapping[str, Any], name: str) -> float:
    value = params.get(name)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise _bad(name, value, "a number > 0")
    return float(value)


def _size(params: Mapping[str, Any], name: str) -> str:
    value = params.get(name)
    if isinstance(value, bool) or not isinstance(value, (int, str)) or not _SIZE.match(str(value)):
        raise _bad(name, value, 'an integer in MiB or a number with a unit KB/MB/GB/TB, e.g. "4GB"')
    return str(value).strip()


def _opt_str(params: Mapping[str, Any], name: str) -> str | None:
    value = params.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise _bad(name, value, "a non-empty string or null")
    return value.strip()


def _str_list(params: Mapping[str, Any], name: str) -> tuple[str, ...]:
    value = params.get(name) or []
    if isinstance(value, str) or not isinstance(value, (list, tuple)):
        raise _bad(name, value, "a list of strings")
    for item in value:
        if not isinstance(item, str) or not item.strip():
            raise _bad(name, value, "a list of non-empty strings")
    return tuple(item.strip() for item in value)


def _str_dict(params: Mapping[str, Any], name: str, key_pattern: re.Pattern[str], key_desc: str) -> dict:
    value = params.get(name) or {}
    if not isinstance(value, Mapping):
        raise _bad(name, value, "a mapping of names to values")
    out: dict[str, str] = {}
    for key, item in value.items():
        if not isinstance(key, str) or not key_pattern.match(key):
            raise ConfigError(f"hydra.launcher.{name} has a bad key {key!r}: expected {key_desc}")
        if item is None or isinstance(item, (Mapping, list, tuple)):
            raise ConfigError(
                f"hydra.launcher.{name}.{key}={item!r} is invalid: expected a string, number or boolean"
            )
        out[key] = str(item).lower() if isinstance(item, bool) else str(item)
    return out


def validate(params: Mapping[str, Any], *, cwd: str, default_python: str) -> Settings:
    """Check every launcher setting; raise ConfigError with one line for the first bad one."""
    known = set(Settings.__dataclass_fields__) | {"_target_"}
    for key in params:
        if key not in known:
            raise ConfigError(
                f"hydra.launcher.{key} is not a setting of the htcondor launcher: expected one of "
                + ", ".join(sorted(known - {"_target_"}))
            )

    request_gpus = _int(params, "request_gpus", 0)
    capability = params.get("gpus_minimum_capability")
    if capability is not None:
        if isinstance(capability, bool) or not isinstance(capability, (int, float)) or capability <= 0:
            raise _bad("gpus_minimum_capability", capability, "a compute capability such as 7.0, or null")
        capability = float(capability)
    gpu_memory = params.get("gpus_minimum_memory")
    if gpu_memory is not None:
        if isinstance(gpu_memory, bool) or not isinstance(gpu_memory, int) or gpu_memory <= 0:
            raise _bad("gpus_minimum_memory", gpu_memory, "an integer number of MiB > 0, or null")
    for name, value in (("gpus_minimum_capability", capability), ("gpus_minimum_memory", gpu_memory)):
        if value is not None and request_gpus == 0:
            raise ConfigError(
                f"hydra.launcher.{name}={value!r} needs hydra.launcher.request_gpus >= 1 (it is 0)"
            )

    env_mode = params.get("env_mode", "shared")
    if env_mode not in ENV_MODES:
        raise _bad("env_mode", env_mode, "one of " + ", ".join(ENV_MODES))
    universe = params.get("universe", "vanilla")
    if universe not in UNIVERSES:
        raise _bad("universe", universe, "one of " + ", ".join(UNIVERSES))
    container_image = _opt_str(params, "container_image")
    if env_mode == "container":
        universe = "container"
        if container_image is None:
            raise ConfigError(
                "hydra.launcher.container_image is not set: env_mode=container needs an image "
                "(docker://..., oras://... or a .sif path)"
            )
    else:
        if universe == "container":
            raise ConfigError(
                f"hydra.launcher.universe='container' needs env_mode=container (it is {env_mode!r})"
            )
        if container_image is not None:
            raise ConfigError(
                f"hydra.launcher.container_image={container_image!r} is only used with env_mode=container "
                f"(it is {env_mode!r})"
            )

    python = _opt_str(params, "python")
    packed_env = _opt_str(params, "packed_env")
    packed_unpack = _opt_str(params, "packed_unpack")
    if env_mode == "shared":
        python = python or default_python
        if not os.path.isabs(python):
            raise _bad("python", python, "an absolute path valid on the workers (env_mode=shared)")
    elif env_mode == "container":
        python = python or "python3"
    else:
        python = python or "env/bin/python"
    if env_mode == "packed":
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
            f"hydra.launcher.packed_env/packed_unpack are only used with env_mode=packed (it is {env_mode!r})"
        )

    transfer_files = params.get("transfer_files", False)
    if not isinstance(transfer_files, bool):
        raise _bad("transfer_files", transfer_files, "true or false")
    inputs = []
    for item in _str_list(params, "transfer_input_files"):
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

    htcondor_dir = _opt_str(params, "htcondor_dir")
    if htcondor_dir is None:
        raise _bad("htcondor_dir", params.get("htcondor_dir"), "a folder path")
    htcondor_dir = os.path.abspath(os.path.join(cwd, htcondor_dir))

    submit_commands = _str_dict(
        params, "submit_commands", _COMMAND_NAME, "a submit command name such as +WantGPULab"
    )
    for key in submit_commands:
        if key.lower() in RESERVED_COMMANDS:
            raise ConfigError(
                f"hydra.launcher.submit_commands.{key} is set by the launcher itself: use "
                f"hydra.launcher.{RESERVED_COMMANDS[key.lower()]} instead"
            )
    environment = _str_dict(params, "environment", _ENV_NAME, "an environment variable name")

    batch_name = params.get("batch_name")
    if not isinstance(batch_name, str) or not batch_name.strip() or '"' in batch_name:
        raise _bad("batch_name", batch_name, "a non-empty string without double quotes")

    return Settings(
        request_cpus=_int(params, "request_cpus", 1),
        request_gpus=request_gpus,
        request_memory=_size(params, "request_memory"),
        request_disk=_size(params, "request_disk"),
        gpus_minimum_capability=capability,
        gpus_minimum_memory=gpu_memory,
        requirements=_str_list(params, "requirements"),
        universe=universe,
        env_mode=env_mode,
        container_image=container_image,
        python=python,
        packed_env=packed_env,
        packed_unpack=packed_unpack,
        transfer_files=transfer_files,
        transfer_input_files=tuple(inputs),
        htcondor_dir=htcondor_dir,
        submit_commands=submit_commands,
        environment=environment,
        batch_name=batch_name.strip(),
        schedd=_opt_str(params, "schedd"),
        collector=_opt_str(params, "collector"),
        poll_interval=_positive(params, "poll_interval"),
        status_interval=_positive(params, "status_interval"),
        timeout_min=_positive(params, "timeout_min"),
        max_releases=_int(params, "max_releases", 0),
    )
