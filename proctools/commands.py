"""Running a command: its result, or one exception saying in one line why it failed."""

from __future__ import annotations

import logging
import os
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO

log = logging.getLogger(__name__)

# The repository: the shims in scripts/ put it first on PYTHONPATH to reach the packages.
REPO = str(Path(__file__).resolve().parents[1])


def inherited_env(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """`environ` (default os.environ) as it was before a shim in scripts/ added the repository to
    PYTHONPATH: what the tools this process runs (pip, dockerd, apt) get, as when the scripts were files."""
    env = dict(os.environ if environ is None else environ)
    entries = env.get("PYTHONPATH", "").split(os.pathsep)
    if entries[0] and os.path.realpath(entries[0]) == REPO:
        rest = os.pathsep.join(entries[1:])
        if rest:
            env["PYTHONPATH"] = rest
        else:
            del env["PYTHONPATH"]
    return env


def last_line(text: str, default: str = "?") -> str:
    """The last non-empty line of a tool's output, for a one-line error; `default` when there is none."""
    lines = [ln for ln in text.splitlines() if ln.strip()]
    return lines[-1].strip() if lines else default


class CommandError(Exception):
    """A command that did not run to a zero exit code; `str()` is one line naming `what` it was."""

    def __init__(self, cmd: Sequence[str], what: str, message: str) -> None:
        super().__init__(message)
        self.cmd = [str(c) for c in cmd]
        self.what = what


class CommandNotRun(CommandError):
    """The program could not be started (missing, not executable)."""

    def __init__(self, cmd: Sequence[str], what: str, error: OSError) -> None:
        super().__init__(cmd, what, f"{what}: cannot run {cmd[0]}: {error}")
        self.error = error


class CommandTimeout(CommandError):
    def __init__(self, cmd: Sequence[str], what: str, timeout: float) -> None:
        super().__init__(cmd, what, f"{what} did not finish in {timeout:g} s: {' '.join(map(str, cmd))}")
        self.timeout = timeout


class CommandFailed(CommandError):
    """A non-zero exit code; `output` is its stderr then stdout (empty when they were not captured)."""

    def __init__(self, cmd: Sequence[str], what: str, returncode: int, output: str) -> None:
        super().__init__(cmd, what, f"{what} failed (exit {returncode}): {last_line(output, '')}")
        self.returncode = returncode
        self.output = output


def run(
    cmd: Sequence[str | Path],
    *,
    what: str | None = None,
    timeout: float | None = None,
    capture: bool = True,
    check: bool = True,
    env: Mapping[str, str] | None = None,
    cwd: Path | str | None = None,
    stdin: IO[bytes] | int | None = None,
    echo: logging.Logger | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run `cmd` to its end; its CompletedProcess (text; stdout and stderr captured unless `capture` is
    false, then they go to ours).

    Raises CommandNotRun or CommandTimeout, and CommandFailed on a non-zero exit code when `check` is true.
    `what` names the command in those messages (default: the program); `echo` logs ``$ cmd`` first.
    `env` defaults to inherited_env().
    """
    args = [str(c) for c in cmd]
    name = what or args[0]
    if echo is not None:
        echo.info("$ %s", " ".join(args))
    try:
        # errors="replace": a tool's odd byte must not turn its result into a UnicodeDecodeError.
        proc = subprocess.run(
            args,
            capture_output=capture,
            text=True,
            errors="replace",
            timeout=timeout,
            env=dict(env) if env is not None else inherited_env(),
            cwd=cwd,
            stdin=stdin,
        )
    except subprocess.TimeoutExpired:
        raise CommandTimeout(args, name, timeout or 0) from None
    except OSError as exc:
        raise CommandNotRun(args, name, exc) from None
    if check and proc.returncode != 0:
        raise CommandFailed(args, name, proc.returncode, (proc.stderr or "") + (proc.stdout or ""))
    return proc
