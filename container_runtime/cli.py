"""``scripts/container-runtime COMMAND``: results and progress on stdout, errors on stderr as one line."""

from __future__ import annotations

import json
import sys

import container_runtime
from container_runtime import engine
from container_runtime.common import PROG, REPO, RuntimeFailure
from container_runtime.hoststate import host_state
from container_runtime.image import image
from proctools.cli import log_lines

COMMANDS = ("install", "start", "stop", "status", "image", "host-state", "help", "-h", "--help")


def _option(args: list[str], name: str) -> str | None:
    """The value of the first `--name=VALUE` in args."""
    return next((a.split("=", 1)[1] for a in args if a.startswith(f"--{name}=")), None)


def help_text() -> str:
    return (
        (container_runtime.__doc__ or "").strip()
        + "\n\nstart/stop option: --holder=PID (the engine keeps running while a live holder is left)"
        + "\nimage options: --python=PATH (whose package versions the image pins; default .venv), "
        "--rebuild"
    )


def _run(cmd: str, rest: list[str]) -> tuple[int, str]:
    """One of COMMANDS; (exit code, text for stdout)."""
    if cmd == "install":
        return 0, engine.install()
    if cmd in ("start", "stop"):
        holder = _option(rest, "holder")
        if holder is not None and not holder.isdigit():
            raise RuntimeFailure(f"--holder={holder!r} is invalid: expected a process id")
        return 0, (engine.start if cmd == "start" else engine.stop)(int(holder) if holder else None)
    if cmd == "status":
        return engine.status()
    if cmd == "image":
        python = _option(rest, "python")
        if python is None:
            venv = REPO / ".venv" / "bin" / "python"
            python = str(venv) if venv.exists() else sys.executable
        return 0, image(python, rebuild="--rebuild" in rest)
    if cmd == "host-state":
        return 0, json.dumps(host_state(), indent=1, sort_keys=True)
    return 0, help_text()


def main(argv: list[str] | None = None) -> int:
    """Run one command (argv without the program name); the exit code."""
    args = sys.argv[1:] if argv is None else argv
    cmd = args[0] if args else "help"
    if cmd not in COMMANDS:
        print(
            f"{PROG}: unknown command {cmd!r}: expected install, start, stop, status, image, host-state or "
            "help",
            file=sys.stderr,
        )
        return 2
    # Progress lines (how long debootstrap took) go where the results go, in order.
    stop_logging = log_lines("container_runtime", PROG, sys.stdout)
    try:
        code, text = _run(cmd, args[1:])
    except RuntimeFailure as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 1
    finally:
        stop_logging()
    print(text)
    return code
