"""``scripts/condor-pool COMMAND``: results on stdout, progress and errors on stderr, one line each."""

from __future__ import annotations

import json
import os
import sys

from condor_pool.errors import PoolError
from condor_pool.pool import DEFAULT_DOCKER, Pool
from condor_pool.settings import PROG, VARIABLES
from proctools.cli import log_lines

COMMANDS = """\
  install   download/relocate HTCondor into the pool folder (or use one on PATH); idempotent
  start     start a fresh personal pool (collector, negotiator, schedd, startd) and wait until ready
  stop      stop it (recorded PIDs only: graceful, then forced) and reap leftover processes
  status    running or not, pool address, slots (exit 0 running, 3 not running)
  env       print export lines: eval "$(scripts/condor-pool env)"; --json: one JSON object
  docker    on [--docker PATH] | off: let the running pool run container jobs on the local engine
            (config.d/50-docker.conf, then reconfigure; `on` waits for a slot with HasContainer)
  help      this text
"""


def help_text() -> str:
    width = max(map(len, VARIABLES)) + 2
    env = "".join(f"  {name:<{width}} {meaning}\n" for name, meaning in VARIABLES.items())
    return f"usage: scripts/condor-pool COMMAND\n\n{COMMANDS}\nenvironment:\n{env}"


def _docker_args(args: list[str]) -> tuple[bool, str]:
    """`on [--docker PATH|--docker=PATH]` or `off`: (enable, client)."""
    usage = "expected `docker on [--docker PATH]` or `docker off`"
    if not args or args[0] not in ("on", "off"):
        got = f"docker {args[0]!r} is not understood" if args else "docker needs on or off"
        raise PoolError(f"{got}: {usage}")
    rest, client = args[1:], DEFAULT_DOCKER
    if rest and args[0] == "on":
        if rest[0].startswith("--docker="):
            client, rest = rest[0].split("=", 1)[1], rest[1:]
        elif rest[0] == "--docker" and len(rest) > 1:
            client, rest = rest[1], rest[2:]
    if rest:
        raise PoolError(f"docker {args[0]}: unexpected {' '.join(rest)!r}: {usage}")
    return args[0] == "on", client


def main(argv: list[str] | None = None) -> int:
    """Run one command (argv without the program name); the exit code."""
    args = sys.argv[1:] if argv is None else argv
    cmd = args[0] if args else "help"
    if cmd in ("help", "-h", "--help"):
        print(help_text(), end="")
        return 0
    stop_logging = log_lines("condor_pool", PROG, sys.stderr)
    try:
        pool = Pool()
        if cmd == "install":
            info = pool.install()
            print(f"{PROG}: HTCondor {info.get('version')} ready in {pool.dir}; CONDOR_CONFIG={pool.config}")
            return 0
        if cmd == "start":
            print(pool.start())
            return 0
        if cmd == "stop":
            print(pool.stop())
            return 0
        if cmd == "status":
            code, text = pool.status()
            print(text)
            return code
        if cmd == "env":
            print(json.dumps(pool.env_json()) if "--json" in args[1:] else pool.env_exports())
            return 0
        if cmd == "docker":
            enable, client = _docker_args(args[1:])
            print(pool.docker(enable, client))
            return 0
        print(
            f"{PROG}: unknown command {cmd!r}; use one of install, start, stop, status, env, docker, help",
            file=sys.stderr,
        )
        return 2
    except PoolError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # e.g. `status | head`
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    finally:
        stop_logging()
