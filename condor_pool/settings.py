"""Every ``CONDOR_POOL_*`` environment variable, read in this one place."""

from __future__ import annotations

import dataclasses
import os
import pwd
from collections.abc import Mapping
from pathlib import Path

from condor_pool.errors import PoolError

PROG = "condor-pool"

# name -> one-line meaning; `help` prints it, and tests keep docs/condor-pool.md's table in step with it.
VARIABLES: dict[str, str] = {
    "CONDOR_POOL_DIR": "folder (default ${XDG_CACHE_HOME:-~/.cache}/mnist-app/condor-pool)",
    "CONDOR_POOL_PORT": "collector port on 127.0.0.1 (default 9618)",
    "CONDOR_POOL_GPUS": "simulated GPUs (default 1; 0 for none)",
    "CONDOR_POOL_CPUS": "CPUs of the partitionable slot (default: all)",
    "CONDOR_POOL_MEMORY": "MiB of memory the partitionable slot offers (default: all physical)",
    "CONDOR_POOL_USER": "pool account when run as root (default htcondor)",
    "CONDOR_POOL_CAPS": "1 (default): give the pool ambient DAC-override caps when run as root",
    "CONDOR_POOL_KEEP_STATE": "1: keep queue/logs across start (default: fresh)",
    "CONDOR_POOL_START_TIMEOUT": "seconds to wait for the daemons (default 60)",
    "CONDOR_POOL_STOP_TIMEOUT": "seconds to wait for a graceful master shutdown (default 20)",
    "CONDOR_POOL_USE_SYSTEM": "0: download even if condor_master is on PATH",
    "CONDOR_POOL_MIRROR": "Debian mirror for install (default http://deb.debian.org/debian)",
    "CONDOR_POOL_SUITE": "Debian suite for install (default trixie)",
}


@dataclasses.dataclass(frozen=True)
class Settings:
    """The pool's knobs, from the environment."""

    dir: Path
    port: int
    gpus: int
    cpus: int  # 0: let the startd count them
    memory: int  # MiB; 0: let the startd measure it
    caps: bool
    user: str
    is_root: bool
    keep_state: bool
    start_timeout: int
    stop_timeout: int
    use_system: bool
    mirror: str
    suite: str

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ

        def integer(name: str, default: int) -> int:
            raw = env.get(name, "")
            if raw == "":
                return default
            try:
                return int(raw)
            except ValueError:
                raise PoolError(f"{name}={raw!r} is not an integer") from None

        port = integer("CONDOR_POOL_PORT", 9618)
        if not 1 <= port <= 65535:
            raise PoolError(f"CONDOR_POOL_PORT={port} is not a TCP port (1-65535)")
        is_root = os.geteuid() == 0
        pool_user = env.get("CONDOR_POOL_USER", "htcondor")  # only used when run as root
        if env.get("CONDOR_POOL_DIR"):
            pool_dir = Path(env["CONDOR_POOL_DIR"]).expanduser().absolute()
        else:
            cache = env.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
            pool_dir = Path(cache).absolute() / "mnist-app" / "condor-pool"
        return cls(
            dir=pool_dir,
            port=port,
            gpus=integer("CONDOR_POOL_GPUS", 1),
            cpus=integer("CONDOR_POOL_CPUS", 0),
            memory=integer("CONDOR_POOL_MEMORY", 0),
            caps=integer("CONDOR_POOL_CAPS", 1) != 0,
            user=pool_user if is_root else pwd.getpwuid(os.geteuid()).pw_name,
            is_root=is_root,
            keep_state=env.get("CONDOR_POOL_KEEP_STATE") == "1",
            start_timeout=integer("CONDOR_POOL_START_TIMEOUT", 60),
            stop_timeout=integer("CONDOR_POOL_STOP_TIMEOUT", 20),
            use_system=env.get("CONDOR_POOL_USE_SYSTEM", "1") != "0",
            mirror=env.get("CONDOR_POOL_MIRROR", "http://deb.debian.org/debian"),
            suite=env.get("CONDOR_POOL_SUITE", "trixie"),
        )
