"""A third-party-style Hydra app swept in HTCondor's container universe on the local pool.

The app lives in files of its own (a script, a helper module, config groups) and is run as a real command
line, as a user would. Its jobs run in the worker test image, which holds Hydra, cloudpickle and the
launcher but not the app and not the other Hydra plugins of the submitting environment.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf

pytestmark = [pytest.mark.condor, pytest.mark.container, pytest.mark.usefixtures("container_worker")]

IMAGE = "docker://mnist-app-test-worker:latest"
MISSING_IMAGE = "mnist-app-no-such-image:1"
# The worker's scratch folder for transferred output (the launcher's TRANSFER_ROOT): a saved file that names
# it names the execute side instead of the submit side.
SCRATCH_MARKER = "_hydra_out"

APP = """
from pathlib import Path

import hydra
from omegaconf import DictConfig

import shapes  # the task's own code in a file of its own: the image does not have it


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> float:
    if cfg.fail:
        raise ValueError(f"refusing shape {cfg.shape.name} on purpose")
    area = shapes.area(cfg.shape)
    Path("area.txt").write_text(f"{cfg.shape.name} {area:g}\\n")  # into the job folder (chdir)
    return area


if __name__ == "__main__":
    main()
"""
SHAPES = """
import math


def area(shape) -> float:
    if shape.kind == "circle":
        return math.pi * shape.size ** 2
    return float(shape.size ** 2)
"""
CONFIG = {
    "config.yaml": "defaults:\n  - shape: square\n  - _self_\nfail: false\nhydra:\n  job:\n    chdir: true\n",
    "shape/square.yaml": "name: square\nkind: square\nsize: 2\n",
    "shape/circle.yaml": "name: circle\nkind: circle\nsize: 1\n",
}


def _write_app(root: Path) -> Path:
    app = root / "app"
    (app / "conf" / "shape").mkdir(parents=True)
    (app / "my_app.py").write_text(APP)
    (app / "shapes.py").write_text(SHAPES)
    for name, text in CONFIG.items():
        (app / "conf" / name).write_text(text)
    return app


def _sweep(
    app: Path, sweep_dir: Path, *overrides: str, container: bool = True, image: str = IMAGE
) -> subprocess.CompletedProcess[str]:
    launcher = [
        "hydra/launcher=htcondor",
        "hydra.launcher.poll_interval=0.1",
        "hydra.launcher.request_memory=256MB",
        "hydra.launcher.timeout_min=5",
        "hydra.launcher.status_interval=1",
    ]
    if container:
        launcher += [
            "hydra.launcher.env_mode=container",
            f"hydra.launcher.container_image={image}",
            "hydra.launcher.transfer_files=true",
            "hydra.launcher.transfer_input_files=[shapes.py]",
        ]
    cmd = [sys.executable, "my_app.py", "-m", f"hydra.sweep.dir={sweep_dir}", *launcher, *overrides]
    return subprocess.run(
        cmd, cwd=app, capture_output=True, text=True, timeout=600, env={**os.environ, "HYDRA_FULL_ERROR": "1"}
    )


def _files(sweep_dir: Path) -> set[str]:
    """The sweep folder's files, as paths relative to it, without the launcher's own folder."""
    return {
        p.relative_to(sweep_dir).as_posix()
        for p in sweep_dir.rglob("*")
        if p.is_file() and ".htcondor" not in p.relative_to(sweep_dir).parts
    }


def test_app_sweep_in_containers_matches_shared_mode(tmp_path: Path) -> None:
    app = _write_app(tmp_path)
    shared, contained = tmp_path / "shared", tmp_path / "contained"
    ref = _sweep(app, shared, "shape=square,circle", container=False)
    assert ref.returncode == 0, ref.stdout + ref.stderr
    run = _sweep(app, contained, "shape=square,circle")
    assert run.returncode == 0, run.stdout + run.stderr

    # The same job folders and files come back as in shared mode ...
    assert _files(contained) == _files(shared)
    assert {"0/area.txt", "1/area.txt", "0/.hydra/hydra.yaml", "0/my_app.log"} <= _files(contained)
    assert (contained / "0" / "area.txt").read_text() == "square 4\n"
    assert (contained / "1" / "area.txt").read_text() == "circle 3.14159\n"
    for name in ("0/.hydra/config.yaml", "0/.hydra/overrides.yaml", "1/.hydra/config.yaml"):
        assert (contained / name).read_text() == (shared / name).read_text(), name

    # ... and what was saved names the submit side, never the worker's scratch folder.
    for num in ("0", "1"):
        saved = OmegaConf.load(contained / num / ".hydra" / "hydra.yaml").hydra
        assert saved.sweep.dir == str(contained)
        assert saved.runtime.output_dir == str(contained / num)
        assert saved.runtime.cwd == str(app)
    for name in _files(contained):
        assert SCRATCH_MARKER not in (contained / name).read_text(errors="replace"), name


def test_task_exception_in_container_is_reported_with_remote_traceback(tmp_path: Path) -> None:
    app = _write_app(tmp_path)
    sweep = tmp_path / "sweep"
    run = _sweep(app, sweep, "fail=false,true")
    out = run.stdout + run.stderr
    assert run.returncode != 0, out
    assert "ValueError: refusing shape square on purpose" in out
    assert "[remote traceback, HTCondor job" in out  # the worker's traceback, with the app's own file
    assert 'my_app.py", line' in out
    assert "ModuleNotFoundError" not in out
    assert (sweep / "0" / "area.txt").read_text() == "square 4\n"  # the other job's result still came back


def test_missing_image_holds_the_job_and_fails_it_with_the_hold_reason(tmp_path: Path) -> None:
    app = _write_app(tmp_path)
    run = _sweep(app, tmp_path / "sweep", "shape=square", image=f"docker://{MISSING_IMAGE}")
    out = run.stdout + run.stderr
    assert run.returncode != 0, out
    # The FAILED result's error, as Hydra prints it: one line with HTCondor's hold reason.
    errors = [ln for ln in out.splitlines() if "hold reason:" in ln and "removed" in ln]
    assert errors, out
    assert f"Unable to find image '{MISSING_IMAGE}' locally" in errors[-1]
    # The live job table has the job's row with the hold reason in its note column.
    rows = [ln for ln in out.splitlines() if ln.lstrip().startswith("#0 ") and "held:" in ln]
    assert rows, out
    assert "Unable to find image" in rows[-1]


def test_container_on_shared_filesystem_is_refused_before_submitting(tmp_path: Path) -> None:
    app = _write_app(tmp_path)
    sweep = tmp_path / "sweep"
    cmd = [
        sys.executable,
        "my_app.py",
        "-m",
        f"hydra.sweep.dir={sweep}",
        "hydra/launcher=htcondor",
        "hydra.launcher.env_mode=container",
        f"hydra.launcher.container_image={IMAGE}",
        "hydra.launcher.transfer_files=false",
        "hydra.launcher.timeout_min=2",
        "shape=square",
    ]
    run = subprocess.run(cmd, cwd=app, capture_output=True, text=True, timeout=300)
    out = run.stdout + run.stderr
    assert run.returncode != 0, out
    lines = [ln for ln in out.splitlines() if "transfer_files=true" in ln]
    assert lines, out
    assert "env_mode=container" in lines[0]
    assert not list(sweep.rglob("*.spec.pkl")), "a job was prepared although the launcher should refuse"
