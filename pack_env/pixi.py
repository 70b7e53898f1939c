"""``--mode pixi-pack``: a Pixi environment of this workspace as a self-extracting archive, with the
project's two distributions built as wheels and injected."""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

from pack_env.common import LOCAL_PROJECTS, ROOT, PackError, has_pip, run


def pack_pixi(environment: str, platform: str, output: Path) -> Path:
    if output.suffix != ".sh":
        raise PackError(f"--output {output}: the pixi-pack archive is a self-extracting script, name it *.sh")
    pixi = shutil.which("pixi")
    pixi_pack_exe = shutil.which("pixi-pack")
    pixi_pack = [pixi_pack_exe] if pixi_pack_exe else None
    if pixi_pack is None:
        if pixi is None:
            raise PackError("neither pixi-pack nor pixi is on PATH (https://pixi.sh); use --mode standalone")
        pixi_pack = [pixi, "exec", "pixi-pack"]
    if not (ROOT / "pixi.lock").exists():
        if pixi is None:
            raise PackError(f"{ROOT / 'pixi.lock'} is missing and pixi is not on PATH to write it")
        run([pixi, "lock", "--manifest-path", str(ROOT / "pixi.toml")])
    with tempfile.TemporaryDirectory(prefix="pack-env-") as tmp:
        wheels = Path(tmp)
        build = [sys.executable, "-m", "pip"] if has_pip(sys.executable) else None
        if build is None:
            if pixi is None:
                raise PackError(
                    f"{sys.executable} has no pip and pixi is not on PATH: cannot build the wheels"
                )
            build = [pixi, "exec", "--spec", "python=3.11", "--spec", "pip", "python", "-m", "pip"]
        run([*build, "wheel", "--no-deps", "--wheel-dir", str(wheels), *map(str, LOCAL_PROJECTS)])
        inject = [arg for whl in sorted(wheels.glob("*.whl")) for arg in ("--inject", str(whl))]
        output.parent.mkdir(parents=True, exist_ok=True)
        run(
            [
                *pixi_pack,
                "--environment",
                environment,
                "--platform",
                platform,
                # The editable path dependencies are not wheels: skip them and inject the wheels just built.
                "--ignore-pypi-non-wheel",
                *inject,
                "--create-executable",
                "--output-file",
                str(output),
                str(ROOT / "pixi.toml"),
            ]
        )
    return output
