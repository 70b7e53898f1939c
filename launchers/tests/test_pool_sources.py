"""A script app with ``@hydra.main(config_path=".")``, on the real pool: its config folder is the whole
project, old sweeps and runs included. The snapshot of its config sources holds its config files only, so it
launches however many old sweeps piled up, its hash stays the same while no config changes, and a resumed
sweep reuses its results instead of running them again."""

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.condor

APP = """
import hydra


@hydra.main(version_base=None, config_path=".", config_name="config")
def main(cfg):
    return f"{cfg.greeting}:{cfg.x}"


if __name__ == "__main__":
    main()
"""
OLD_SWEEPS = 30
JOBS_PER_OLD_SWEEP = 700  # 30 x 700 job folders: more than the 20,000 entries a snapshot may hold


def _project(root: Path) -> None:
    (root / "app.py").write_text(APP)
    (root / "config.yaml").write_text("greeting: hello\nx: 0\n")
    for i in range(OLD_SWEEPS):
        sweep = root / "multirun" / "2026-01-01" / f"12-00-{i:02d}"
        sweep.mkdir(parents=True)
        (sweep / "multirun.yaml").write_text("hydra: {}\n")
        for num in range(JOBS_PER_OLD_SWEEP):
            (sweep / str(num) / ".hydra").mkdir(parents=True)
        (sweep / "0" / ".hydra" / "config.yaml").write_text("greeting: old\n")
        (sweep / "0" / "metrics.yaml").write_text(f"loss: {i}\n")


def _sweep(root: Path, sweep_dir: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            str(root / "app.py"),
            "-m",
            "hydra/launcher=htcondor",
            "hydra.launcher.request_memory=256MB",
            "hydra.launcher.poll_interval=0.2",
            f"hydra.sweep.dir={sweep_dir}",
            *args,
        ],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=300,
    )


def _results(out: str) -> list[str]:
    """The launcher's summary lines' values, e.g. 'hello:1'."""
    return sorted(
        line.split(" -> ")[1].strip() for line in out.splitlines() if " -> " in line and "] " in line
    )


def _configs_hashes(root: Path, sweep_dir: str) -> set[str]:
    manifest = json.loads((root / sweep_dir / ".htcondor" / "manifest.json").read_text())
    return {job["configs"] for job in manifest["jobs"].values()}


def _snapshots(root: Path, sweep_dir: str) -> list[str]:
    return sorted(p.name for p in (root / sweep_dir / ".htcondor").glob("config-sources-*"))


def test_config_path_dot_with_many_old_sweeps_launches_and_keeps_its_snapshot(tmp_path: Path) -> None:
    _project(tmp_path)
    first = _sweep(tmp_path, "multirun/new/first", "x=1,2")
    out = first.stdout + first.stderr
    assert first.returncode == 0, out[-3000:]
    assert _results(out) == ["'hello:1'", "'hello:2'"]
    snapshot = _snapshots(tmp_path, "multirun/new/first")
    assert len(snapshot) == 1
    shipped = {p.name for p in (tmp_path / "multirun/new/first/.htcondor" / snapshot[0]).rglob("*.yaml")}
    assert "config.yaml" in shipped and "multirun.yaml" not in shipped and "metrics.yaml" not in shipped

    # Another sweep of the same project (its first sweep's results are now under ".", too): the same snapshot.
    second = _sweep(tmp_path, "multirun/new/second", "x=3")
    out = second.stdout + second.stderr
    assert second.returncode == 0 and _results(out) == ["'hello:3'"], out[-3000:]
    assert _snapshots(tmp_path, "multirun/new/second") == snapshot
    assert _configs_hashes(tmp_path, "multirun/new/second") == _configs_hashes(tmp_path, "multirun/new/first")

    # A changed config is a new snapshot, and the jobs compose with it.
    (tmp_path / "config.yaml").write_text("greeting: hi\nx: 0\n")
    third = _sweep(tmp_path, "multirun/new/third", "x=4")
    out = third.stdout + third.stderr
    assert third.returncode == 0 and _results(out) == ["'hi:4'"], out[-3000:]
    assert _snapshots(tmp_path, "multirun/new/third") != snapshot


def test_a_resumed_config_path_dot_sweep_reuses_its_results(tmp_path: Path) -> None:
    _project(tmp_path)
    first = _sweep(tmp_path, "multirun/resumed", "x=1,2")
    assert first.returncode == 0, (first.stdout + first.stderr)[-3000:]
    # The first run wrote multirun.yaml, the job folders' .hydra/*.yaml and the snapshot under ".".
    again = _sweep(tmp_path, "multirun/resumed", "x=1,2")
    out = again.stdout + again.stderr
    assert again.returncode == 0, out[-3000:]
    assert "resuming sweep: 2 reused, 0 re-attached, 0 resubmitted" in out, out[-3000:]
    assert "changed since" not in out and "submitted as cluster" not in out
    assert _results(out) == ["'hello:1'", "'hello:2'"]


SCHEMA_APP = """
import hydra
from hydra.core.config_store import ConfigStore

import zipped_schema

ConfigStore.instance().store(name="limits_schema", node=zipped_schema.Limits)


@hydra.main(version_base=None, config_path=".", config_name="config")
def main(cfg):
    return cfg.level


if __name__ == "__main__":
    main()
"""


def test_a_config_class_the_worker_cannot_import_fails_the_job_in_one_line(tmp_path: Path) -> None:
    # The schema module is importable on the submit side only: from a zip on PYTHONPATH, which the launcher
    # does not hand to the workers (it sends folders; getenv=false keeps PYTHONPATH here), as a module
    # missing from a worker image would be.
    with zipfile.ZipFile(tmp_path / "schemas.zip", "w") as zf:
        zf.writestr(
            "zipped_schema.py",
            "import dataclasses, enum\n"
            "class Level(enum.Enum):\n    low = 1\n    high = 2\n"
            "@dataclasses.dataclass\nclass Limits:\n    level: Level = Level.low\n",
        )
    (tmp_path / "app.py").write_text(SCHEMA_APP)
    (tmp_path / "config.yaml").write_text("defaults:\n  - limits_schema\n  - _self_\nlevel: high\n")
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "schemas.zip")}
    proc = subprocess.run(
        [
            sys.executable,
            str(tmp_path / "app.py"),
            "-m",
            "hydra/launcher=htcondor",
            "hydra.launcher.request_memory=256MB",
            "hydra.launcher.poll_interval=0.2",
            f"hydra.sweep.dir={tmp_path / 'sweep'}",
            "hydra.launcher.getenv=false",
            "level=low,high",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out[-3000:]
    # Hydra's own report of the failed job: the error, one line.
    lines = [
        line for line in out.splitlines() if line.startswith("zipped_schema.Limits, a class of the sweep")
    ]
    assert len(lines) == 1, out[-3000:]
    assert "install 'zipped_schema' where the jobs run" in lines[0] and "transfer_input_files" in lines[0]
    assert "Error executing job with overrides: ['level=low']" in out
