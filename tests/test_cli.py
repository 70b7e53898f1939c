"""The command line as users run it: `python -m mnist_app ...` in a fresh directory."""

from __future__ import annotations

import json
import site
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from mnist_app.cli import override_error
from mnist_app.config import config_dir

# Runs the app's entry point and reports, at exit, whether torch got imported.
_PROBE = (
    "import atexit, runpy, sys\n"
    "atexit.register(lambda: sys.stderr.write('TORCH_IMPORTED=%s\\n' % ('torch' in sys.modules)))\n"
    "sys.argv = ['mnist_app', *sys.argv[1:]]\n"
    "runpy.run_module('mnist_app', run_name='__main__')\n"
)


@pytest.mark.parametrize(
    "args",
    [
        ["--help"],
        ["--cfg", "job"],
        ["--cfg", "job", "model=lenet5", "device=cuda"],
        # Overrides: the pre-check composes them first (mnist_app.cli).
        ["--cfg", "job", "+extra=1", "model.net.dropout1=0.3"],
        ["--cfg", "job", "trainer.accumulate_grad_batches=2", "+trainer.val_check_interval=0.5"],
        ["--info", "defaults", "model=mlp"],
    ],
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
        groups = proc.stdout.split("== Configuration groups ==")[1].split("== Config ==")[0]
        assert "model: cnn, cnn_large_batch, lenet5, mlp" in groups
        assert "device: cpu, cuda" in groups
        assert "schema" not in groups  # the dataclass schemas are plumbing, not a choice
    elif args[0] == "--info":
        assert "model/mlp" in proc.stdout
    else:
        assert yaml.safe_load(proc.stdout)["seed"] == 1
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_single_run(run_app, tmp_path, fast):
    proc = run_app("trainer.max_epochs=1", *fast)
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


def test_two_job_sweep(run_app, tmp_path, fast):
    proc = run_app("-m", "model.lr=0.5,1.0", "trainer.max_epochs=1", "trainer.limit_train_batches=20", *fast)
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
        (["data.source=full", "data.download=false", "data.root=missing"], "data.source=full but "),
        (["device=cuda"], "device=cuda but no usable CUDA GPU"),
    ],
)
def test_bad_input_is_one_clear_line(run_app, tmp_path, fast, args, message):
    if args == ["device=cuda"]:
        import torch

        if torch.cuda.is_available():
            pytest.skip("a GPU is present")
    proc = run_app(*fast, *args)
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert message in output
    assert "Traceback" not in output
    # The only thing written is the run folder (for errors found after composition).
    assert {p.name for p in tmp_path.iterdir()} <= {"outputs"}
    assert not (tmp_path / "missing").exists()


MODELS = ", ".join(sorted(p.stem for p in (config_dir() / "model").glob("*.yaml")))
LAUNCHERS = ", ".join(sorted(p.stem for p in (config_dir() / "launcher").glob("*.yaml")))
MODEL_KEYS = "_target_, name, lr, batch_size, net, optimizer, scheduler, scheduler_interval, channels_last"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        # An unknown config group option, also as one value of a sweep.
        (["device=tpu"], "unknown device 'tpu' (choose one of: cpu, cuda)"),
        (["model=resnet"], f"unknown model 'resnet' (choose one of: {MODELS})"),
        (["model=lenet"], f"unknown model 'lenet' (choose one of: {MODELS}); did you mean 'lenet5'?"),
        (["launcher=slurm"], f"unknown launcher 'slurm' (choose one of: {LAUNCHERS})"),
        (["-m", "model=cnn,resnet"], f"unknown model 'resnet' (choose one of: {MODELS})"),
        (["hydra/launcher=slurm"], "unknown hydra/launcher 'slurm' (choose one of: basic, "),
        # A value of the wrong type for a typed field.
        (["model.lr=abc"], "model.lr=abc: expected a float"),
        (["trainer.max_epochs=many"], "trainer.max_epochs=many: expected an integer"),
        (["data.download=maybe"], "data.download=maybe: expected a boolean (true or false)"),
        (["trainer.gradient_clip_val=x"], "trainer.gradient_clip_val=x: expected a float or null"),
        (["-m", "model.lr=0.5,abc"], "model.lr=abc: expected a float"),
        (["--help", "model.lr=abc"], "model.lr=abc: expected a float"),
        # An unknown key: the node's keys, and the close one.
        (["model.lrr=0.1"], f"unknown key 'model.lrr' (model has: {MODEL_KEYS}); did you mean 'model.lr'?"),
        (["--cfg", "job", "model.lrr=0.1"], f"unknown key 'model.lrr' (model has: {MODEL_KEYS});"),
        (
            ["model.net.dropout=0.1"],
            "unknown key 'model.net.dropout' (model.net has: _target_, dropout1, "
            "dropout2); did you mean 'model.net.dropout2'? or, to add a new key: +model.net.dropout=0.1",
        ),
        (["sede=2"], "unknown key 'sede' (the top level has: "),
        # A value outside an Enum.
        (["data.source=web"], "data.source=web: choose one of auto, full, bundled"),
        (["model.scheduler_interval=daily"], "model.scheduler_interval=daily: choose one of epoch, step"),
        (["app.test_ckpt=first"], "app.test_ckpt=first: choose one of best, last"),
        (["device.accelerator=tpu"], "device.accelerator=tpu: choose one of cpu, cuda, gpu"),
        (["trainer.profiler=fast"], "trainer.profiler=fast: choose one of simple, advanced, pytorch or null"),
        # Trainer arguments: those listed are typed; others are added with +.
        (["trainer.accumulate_grad_batches=x"], "trainer.accumulate_grad_batches=x: expected an integer"),
        (
            ["trainer.val_check_interval=0.5"],
            "unknown key 'trainer.val_check_interval' (trainer has: _target_, ",
        ),
        (
            ["data.source=bundle"],
            "data.source=bundle: choose one of auto, full, bundled; did you mean 'bundled'?",
        ),
    ],
)
def test_bad_override_is_one_line(run_app, tmp_path, args, message):
    proc = run_app(*args, timeout=120)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith(f"mnist_app: error: {message}"), lines[0]
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert list(tmp_path.iterdir()) == []  # checked before Hydra makes a run or sweep folder


def test_hydra_full_error_still_gives_the_traceback(run_app, app_env):
    app_env["HYDRA_FULL_ERROR"] = "1"
    proc = run_app("--cfg", "job", "device=tpu", timeout=120)
    assert proc.returncode != 0
    assert "Traceback" in proc.stderr and "MissingConfigException" in proc.stderr
    assert "mnist_app: error" not in proc.stderr


@pytest.mark.parametrize(
    ("args", "hydra_says"),
    [
        (["+model.lr=1"], "Could not append to config. An item is already at 'model.lr'."),
        (["~model.foo"], "Could not delete from config. 'model.foo' does not exist."),
        (["model.lr=["], "no viable alternative at input '['"),
    ],
)
def test_other_override_errors_keep_hydras_report(run_app, tmp_path, args, hydra_says):
    proc = run_app("--cfg", "job", *args, timeout=120)
    assert proc.returncode == 1
    assert hydra_says in proc.stderr and "mnist_app: error" not in proc.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "argv",
    [
        ["-m", "model.lr=0.1,1.0"],
        ["-m", "model=cnn,mlp", "model.lr=choice(0.1,0.2)", "seed=range(0,20)", "data.source=full,bundled"],
        # The app's sampling sweeper, as conf/hparams_search/optuna.yaml names it (issue 22: optuna_stream).
        ["-m", "hparams_search=optuna", "model.lr=interval(0.1,1.0)", "hydra.sweeper.n_trials=3"],
        ["-m", "hparams_search=optuna", "model.lr=tag(log,interval(0.001,1))", "model=mlp,lenet5"],
        ["-m", "launcher=htcondor", "model.lr=0.5,1.0"],
        ["-m", "model=glob(*)"],
        ["-m", "+extra=1,2", "++model.lr=0.2,0.3", "~optimized_metric"],
        ["-m", "hydra.sweep.dir=sweeps", "hydra.job.chdir=false", "model.net.dropout1=0.2,0.3"],
        ["-m", "model=mlp,lenet5", "model.net._target_=mnist_app.models.MLP"],
        ["+extra=1", "model.optimizer._target_=torch.optim.SGD", "model.lr=${seed}", "data.root=/tmp/x"],
        ["seed=3", "optimized_metric=val/acc", "trainer.max_epochs=2", "device=cuda", "model=lenet5"],
        ["--cfg", "hydra", "hydra.run.dir=here"],
        # Hydra reports these itself (or composes them differently): the pre-check stays out of the way.
        ["-cn", "config", "model=resnet"],
        ["--shell-completion", "model=resnet"],
    ],
)
def test_valid_or_unclassified_command_lines_pass_the_override_check(monkeypatch, argv):
    monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)  # it turns the check off
    if any("htcondor" in arg for arg in argv):
        pytest.importorskip("hydra_plugins.hydra_htcondor_launcher")
    assert override_error(argv) is None


def test_override_check_composes_each_sweep_value_once(monkeypatch):
    monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)
    composed: list[list[str]] = []
    monkeypatch.setattr("mnist_app.cli._composition_error", lambda jobs: composed.extend(jobs))
    argv = ["-m", "model=mlp,lenet5", "seed=3", "model.lr=0.1,1.0,2.0", "+x=interval(0,1)"]
    assert override_error(argv) is None
    # Job i takes the i-th value of each sweep (the first of shorter ones), in command-line order; sweeps
    # that cannot be enumerated are the sweeper's.
    assert composed == [
        ["model=mlp", "seed=3", "model.lr=0.1"],
        ["model=lenet5", "seed=3", "model.lr=1.0"],
        ["model=mlp", "seed=3", "model.lr=2.0"],
    ]
    composed.clear()
    assert override_error(["--cfg", "job"]) is None
    assert composed == []  # no overrides: nothing to compose


def test_help_lists_groups_through_the_config_loaders_repository():
    """config_groups_help asks the config loader's `repository` (not public) instead of the loader, which
    deep-copies it per query: this fails when Hydra drops it (--help would then be slower, never wrong)."""
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.object_type import ObjectType

    from mnist_app.cli import config_groups_help

    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        loader = GlobalHydra.instance().config_loader()
        repository = loader.repository  # type: ignore[attr-defined]
        for group in ("model", "device", "logger"):
            assert repository.get_group_options(group, ObjectType.CONFIG) == loader.get_group_options(group)
        listing = config_groups_help()
    assert "model: cnn, cnn_large_batch, lenet5, mlp\n" in listing and "schema" not in listing


def test_hydras_argument_parser_is_the_one_hydra_main_uses():
    """mnist_app.cli splits the command line with hydra._internal.utils.get_args_parser, not a public API:
    this fails when Hydra moves or changes it (the pre-check would otherwise go quiet, never wrong)."""
    import importlib

    from hydra._internal.utils import get_args_parser

    assert importlib.import_module("hydra.main").get_args_parser is get_args_parser
    args = get_args_parser().parse_args(["-m", "--cfg", "job", "-cn", "other", "model.lr=0.5,1.0"])
    assert args.overrides == ["model.lr=0.5,1.0"] and args.multirun and args.cfg == "job"
    assert args.config_name == "other"
    # The flags mnist_app.cli reads to stay out of the way.
    for flag in ("config_path", "config_dir", "shell_completion", "hydra_help", "experimental_rerun"):
        assert hasattr(args, flag), flag


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
