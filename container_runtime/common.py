"""Names and places every command shares, and running the host's tools with a one-line error."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import IO

from proctools import commands

PROG = "container-runtime"
REPO = Path(__file__).resolve().parents[1]
RECIPE = REPO / "containers" / "test-worker"
LAUNCHER = REPO / "launchers"
IMAGE = "mnist-app-test-worker:latest"
BASE_REPO = "mnist-app-test-base"
KEY_LABEL = "org.mnist-app.test-worker.key"
# Debian's client, not the newer stand-alone one some machines have first on PATH (/usr/local/bin).
DOCKER = "/usr/bin/docker"
DOCKERD = "/usr/sbin/dockerd"
SOCKET = "/var/run/docker.sock"
MIRROR = os.environ.get("CONTAINER_RUNTIME_MIRROR", "http://deb.debian.org/debian")
# No docker0 bridge, no iptables chains or NAT rule, no ip_forward sysctl: containers get `lo` only.
ENGINE_FLAGS = ("--bridge=none", "--iptables=false", "--ip-forward=false", "--ip-masq=false")
# Files the engine writes outside its own folders, each before its folder: on its first start (key.json,
# dockerd's plugin socket folder) and at its first container (containerd's shim sockets). `stop` removes
# those it created.
ENGINE_LEFTOVERS = (
    Path("/etc/docker/key.json"),
    Path("/etc/docker"),
    Path("/run/docker/plugins"),
    Path("/run/docker"),
    Path("/run/containerd/s"),
    Path("/run/containerd"),
)
# The engine's programs (by executable name): none may outlive `stop`.
ENGINE_PROGRAMS = (
    "dockerd",
    "docker-proxy",
    "containerd",
    "containerd-shim",
    "containerd-shim-runc-v1",
    "containerd-shim-runc-v2",
    "runc",
)
TOOL_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"
# The engine must never reach the network: a missing image would otherwise make it resolve and contact
# registry-1.docker.io through the host's resolver (a private-range address here). A proxy on a closed
# loopback port makes every pull fail at once, without a DNS query.
NO_NETWORK_PROXY = "http://127.0.0.1:9"


class RuntimeFailure(Exception):
    """A failure reported to the user as one line."""


def run_dir() -> Path:
    """The engine's folder: data and exec roots, pidfile, log, holders."""
    if os.environ.get("MNIST_APP_DOCKER_DIR"):
        return Path(os.environ["MNIST_APP_DOCKER_DIR"]).absolute()
    # In memory where there is a tmpfs: loading the image and removing the engine's ~6000 layer files at
    # `stop` take seconds there, and up to 15 s on a busy VM disk.
    shm = Path("/dev/shm")
    return (shm if shm.is_dir() and os.access(shm, os.W_OK) else Path("/tmp")) / "mnist-app-docker"


def cache_dir() -> Path:
    """Where built images and fetched wheels are kept between engines."""
    if os.environ.get("MNIST_APP_TEST_CACHE"):
        return Path(os.environ["MNIST_APP_TEST_CACHE"]).expanduser().absolute()
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "mnist-app" / "test-worker"


def tool_env() -> dict[str, str]:
    """The environment of every tool run: Debian's tools first, our engine's socket."""
    # apt-get (install) and debootstrap (image) must never ask a question.
    return {
        **commands.inherited_env(),
        "PATH": TOOL_PATH,
        "DOCKER_HOST": f"unix://{SOCKET}",
        "DEBIAN_FRONTEND": "noninteractive",
    }


def run(
    cmd: list[str], *, timeout: float, what: str, check: bool = True, stdin: IO[bytes] | None = None
) -> subprocess.CompletedProcess[str]:
    """`cmd` in tool_env(); a RuntimeFailure naming `what` if it cannot run, times out or (`check`) fails."""
    try:
        return commands.run(cmd, what=what, timeout=timeout, check=check, env=tool_env(), stdin=stdin)
    except commands.CommandError as exc:
        raise RuntimeFailure(str(exc)) from None


def docker(*args: str, timeout: float = 120, what: str = "docker") -> str:
    """Debian's docker client on our engine; its stdout, stripped."""
    return run([DOCKER, *args], timeout=timeout, what=what).stdout.strip()
