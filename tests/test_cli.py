"""The command line as users run it: `python -m mnist_app ...` in a fresh directory."""

from __future__ import annotations

import json
import site
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

FAST = ["data.source=bundled", "trainer.progress_bar=false", "trainer.tensorboard=false"]

# Runs the app's entry point and reports, at exit, whether torch got imported.
_PROBE = (
    "import atexit, runpy, sys\n"
    "atexit.register(lambda: sys.stderr.write('TORCH_IMPORTED=%s\\n' % ('torch' in sys.modules)))\n"
    "sys.argv = ['mnist_app', *sys.argv[1:]]\n"
    "runpy.run_module('mnist_app', run_name='__main__')\n"
)


@pytest.mark.parametrize(
    "args", [["--help"], ["--cfg", "job"], ["--cfg", "job", "model=lenet5", "device=cuda"]]
)
def test_help_and_cfg_do_not_import_torch(tmp_path, app_env, args):
    proc = subprocess.run(
        [sys.executable, "-c", _PROBE, *args],
        cwd=tmp_path,
        env=app_env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "TORCH_IMPORTED=False" in proc.stderr
    if args[0] == "--help":
        assert "model: cnn, cnn_large_batch, lenet5, mlp" in proc.stdout
    else:
        assert yaml.safe_load(proc.stdout)["seed"] == 1
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_single_run(run_app, tmp_path):
    proc = run_app("trainer.max_epochs=1", *FAST)
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = list((tmp_path / "outputs" / "runs").glob("*/*"))
    assert len(runs) == 1
    run = runs[0]
    for name in [
        ".hydra/config.yaml",
        ".hydra/overrides.yaml",
        "mnist_app.log",
        "csv/metrics.csv",
        "checkpoints/last.ckpt",
        "metrics.json",
    ]:
        assert (run / name).is_file(), name
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["test/acc"] > 0.85 and metrics["epochs"] == 1
    log = (run / "mnist_app.log").read_text()
    assert "data: bundled MNIST" in log and "done: cnn on bundled MNIST" in log
    assert sorted(p.name for p in tmp_path.iterdir()) == ["outputs"]


def test_two_job_sweep(run_app, tmp_path):
    proc = run_app("-m", "model.lr=0.5,1.0", "trainer.max_epochs=1", "trainer.limit_train_batches=20", *FAST)
    assert proc.returncode == 0, proc.stderr[-3000:]
    sweeps = list((tmp_path / "outputs" / "sweeps").glob("*/*"))
    assert len(sweeps) == 1
    sweep = sweeps[0]
    assert (sweep / "multirun.yaml").is_file()
    lrs = []
    for job in ("0", "1"):
        metrics = json.loads((sweep / job / "metrics.json").read_text())
        assert metrics["test/acc"] > 0.5
        # Lightning's hparams.yaml holds the resolved config the job trained with.
        hparams = yaml.safe_load((sweep / job / "csv" / "hparams.yaml").read_text())
        lrs.append(hparams["model"]["optimizer"]["lr"])
    assert lrs == [0.5, 1.0]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["device=tpu"], "Could not find 'device/tpu'"),
        (["model.lr=abc"], "model.lr"),
        (["data.source=web"], "expected one of [auto, full, bundled]"),
        (["data.source=full", "data.download=false", "data.root=missing"], "data.source=full but "),
        (["device=cuda"], "device=cuda but no usable CUDA GPU"),
    ],
)
def test_bad_input_is_one_clear_line(run_app, tmp_path, args, message):
    if args == ["device=cuda"]:
        import torch

        if torch.cuda.is_available():
            pytest.skip("a GPU is present")
    proc = run_app(*FAST, *args)
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert message in output
    assert "Traceback" not in output
    # The only thing written is the run folder (for errors found after composition).
    assert {p.name for p in tmp_path.iterdir()} <= {"outputs"}
    assert not (tmp_path / "missing").exists()


def _probe_wheel_route(python: Path, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(python), "-c", "import mnist_app.config as c; print(c.config_dir())"],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.slow
def test_wheel_carries_the_configs(tmp_path, app_env):
    import zipfile

    repo = Path(__file__).resolve().parents[1]
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", str(repo), "-w", str(tmp_path / "dist")],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if build.returncode != 0 and "hatchling" in build.stderr and "No matching distribution" in build.stderr:
        pytest.skip("cannot fetch the hatchling build backend")
    assert build.returncode == 0, build.stderr[-3000:]
    (wheel,) = (tmp_path / "dist").glob("mnist_app-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "mnist_app/conf/config.yaml" in names
    assert "mnist_app/conf/model/cnn.yaml" in names and "mnist_app/conf/device/cuda.yaml" in names
    # Installed into its own venv (sharing this one's packages), the app finds the packaged configs.
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    # The new venv sees this one's packages (hydra, torch, ...) after its own: its mnist_app is the wheel's.
    (site_dir,) = (venv / "lib").glob("python3*/site-packages")
    (site_dir / "parent_env.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--no-deps", str(wheel)],
        check=True,
        timeout=300,
    )
    env = {k: v for k, v in app_env.items() if k != "PYTHONPATH"}
    proc = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "mnist_app", "--cfg", "job", "model=mlp"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "name: mlp" in proc.stdout
    where = _probe_wheel_route(venv / "bin" / "python", tmp_path, env)
    assert where.stdout.strip().startswith(str(venv)), where
