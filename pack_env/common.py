"""What both ways of packing share: the projects to install, the one-line error, running a tool."""

from __future__ import annotations

import logging
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

from proctools import commands

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[1]
LOCAL_PROJECTS = [ROOT / "launchers", ROOT]


class PackError(Exception):
    """A one-line, user-facing reason why no archive was built."""


def run(
    cmd: Sequence[str | Path], *, capture: bool = False, env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Log and run `cmd` (its output goes to ours unless `capture`); a PackError if it fails."""
    try:
        return commands.run(cmd, capture=capture, env=env, echo=log)
    except commands.CommandNotRun as err:
        reason = "not found" if isinstance(err.error, FileNotFoundError) else str(err.error)
        raise PackError(f"{cmd[0]}: {reason}") from err
    except commands.CommandFailed as err:
        raise PackError(f"{' '.join(err.cmd)} failed with exit code {err.returncode}") from err


def has_pip(python: str) -> bool:
    try:
        return commands.run([python, "-m", "pip", "--version"], check=False).returncode == 0
    except commands.CommandError:
        return False
