"""``scripts/pack-env [--mode ...] [-o ARCHIVE]``: progress and errors on stderr; exit 2 when no archive was
built."""

from __future__ import annotations

import argparse
import logging
import shutil
import sys
from pathlib import Path

import pack_env
from pack_env.common import ROOT, PackError
from pack_env.pixi import pack_pixi
from pack_env.standalone import pack_standalone

log = logging.getLogger(__name__)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="pack-env",
        description=(pack_env.__doc__ or "").split("\n\n", 1)[0],
        epilog="Details: docs/worker-environments.md",
    )
    parser.add_argument("--mode", choices=("auto", "pixi-pack", "standalone"), default="auto")
    parser.add_argument(
        "-e", "--environment", default="gpu", help="pixi-pack: the Pixi environment (default gpu)"
    )
    parser.add_argument(
        "--platform", default="linux-64", help="pixi-pack: target platform (default linux-64)"
    )
    parser.add_argument(
        "--python", help="standalone: interpreter of the venv to pack (default .venv/bin/python)"
    )
    parser.add_argument(
        "-o",
        "--output",
        type=Path,
        help="archive to write (default mnist-env-<environment>.sh / mnist-env.tar.gz)",
    )
    parser.add_argument(
        "--no-project",
        action="store_true",
        help="standalone: do not install mnist-app and the launcher into the archive",
    )
    parser.add_argument(
        "--exclude",
        action="append",
        default=[],
        metavar="GLOB",
        help="standalone: leave out site-packages entries matching GLOB (repeatable)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="pack-env: %(message)s")

    mode = args.mode
    if mode == "auto":
        has_pixi = shutil.which("pixi-pack") or shutil.which("pixi")
        mode = "pixi-pack" if has_pixi and args.python is None else "standalone"
    try:
        if mode == "pixi-pack":
            out = pack_pixi(
                args.environment,
                args.platform,
                (args.output or Path(f"mnist-env-{args.environment}.sh")).absolute(),
            )
        else:
            python = args.python or str(ROOT / ".venv" / "bin" / "python")
            if args.python is None and not Path(python).exists():
                python = sys.executable
            out = pack_standalone(
                python,
                (args.output or Path("mnist-env.tar.gz")).absolute(),
                project=not args.no_project,
                exclude=args.exclude,
            )
    except PackError as err:
        log.error("%s", err)
        return 2
    size = out.stat().st_size / 2**20
    log.info(
        "wrote %s (%.1f MiB): use hydra.launcher.env_mode=packed hydra.launcher.packed_env=%s", out, size, out
    )
    return 0
