"""The pool's condor_config and mapfile, rendered from the package's templates/ folder.

A template's placeholders are ``@{name}`` (string.Template with ``@``), so HTCondor's own ``$(MACRO)``
references stay verbatim. An optional piece of configuration is a template in FRAGMENTS, appended to
condor_config when its setting turns it on: a new knob is a Settings field, a template and one line here.
Knobs switched on a running pool (`docker on`) go to a file of their own in etc/config.d/ instead.
"""

from __future__ import annotations

import string
from collections.abc import Callable, Mapping
from importlib import resources
from pathlib import Path

from condor_pool.settings import Settings


class ConfigTemplate(string.Template):
    delimiter = "@"


def render(name: str, values: Mapping[str, object]) -> str:
    """templates/<name> with its placeholders filled; a missing value raises KeyError."""
    text = (resources.files("condor_pool") / "templates" / name).read_text(encoding="utf-8")
    return ConfigTemplate(text).substitute({key: str(value) for key, value in values.items()})


# Appended to condor_config in this order, each only when its predicate holds.
FRAGMENTS: tuple[tuple[str, Callable[[Settings], bool]], ...] = (
    ("num_cpus.config.in", lambda s: s.cpus > 0),
    ("memory.config.in", lambda s: s.memory > 0),
    ("gpus.config.in", lambda s: s.gpus > 0),
)


def condor_config(
    settings: Settings,
    *,
    release: str,
    bin_dir: str,
    sbin: str,
    libexec: str,
    etc: Path,
    local: Path,
    uid: int,
    gid: int,
) -> str:
    """The text of etc/condor_config for an HTCondor release (its release/bin/sbin/libexec folders)."""
    values = {
        "release": release,
        "bin": bin_dir,
        "sbin": sbin,
        "libexec": libexec,
        "etc": etc,
        "local": local,
        "port": settings.port,
        "uid": uid,
        "gid": gid,
        "user": settings.user,
        "cpus": settings.cpus,
        "memory": settings.memory,
        "gpus": settings.gpus,
    }
    return render("condor_config.in", values) + "".join(
        render(name, values) for name, wanted in FRAGMENTS if wanted(settings)
    )


def docker_config(client: str) -> str:
    """etc/config.d/50-docker.conf for `docker on`: container jobs through the docker client `client`."""
    return render("docker.config.in", {"docker": client})


def mapfile(settings: Settings) -> str:
    """FS-auth map: root becomes the pool user (the schedd never accepts jobs owned by root)."""
    return render("mapfile.in", {"user": settings.user})
