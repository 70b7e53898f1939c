"""Hydra's own Optuna sweeper (hydra-optuna-sweeper 1.3.0, optuna<3) with our launcher, on the real pool.

That sweeper cannot share the main environment (Optuna >= 4.9), so these tests run a trivial app
(``optuna2_app.py``, copied to tmp_path) with the python of the second environment ``.venv-optuna2``
(``make venv-optuna2``, declared in envs/optuna2/requirements.txt; ``make test`` builds it first).
"""

import json
import subprocess
from pathlib import Path

import optuna2_app
import pytest
import yaml
from _launch_helpers import run_script_app
from hydra_plugins.hydra_htcondor_launcher._layout import manifest_path

pytestmark = pytest.mark.condor

APP = Path(optuna2_app.__file__).read_text()
SEARCH = ("+x=interval(-1,1)", "+n=range(0,3)", "+kind=choice(flat,steep)")
LAUNCHER = ("hydra.launcher.request_memory=256MB", "hydra.launcher.poll_interval=0.2")


def _sweep(python: Path, folder: Path, sweep: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run_script_app(
        folder,
        APP,
        "hydra/sweeper=optuna",
        f"hydra.sweep.dir={sweep}",
        *LAUNCHER,
        *args,
        python=python,
    )


def test_the_environment_is_hydras_optuna_sweeper_on_optuna_2(optuna2_python):
    # What the other tests of this module rely on: the combination users of that sweeper have.
    probe = (
        "import importlib.metadata as m, optuna, hydra_plugins.hydra_optuna_sweeper, htcondor2; "
        "print(m.version('hydra-optuna-sweeper'), optuna.__version__)"
    )
    proc = subprocess.run([str(optuna2_python), "-c", probe], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    sweeper, optuna = proc.stdout.split()
    assert sweeper == "1.3.0" and optuna.split(".")[0] == "2", proc.stdout


def test_hydras_optuna_sweeper_gets_the_jobs_real_values(optuna2_python, tmp_path):
    sweep = tmp_path / "sweep"
    proc = _sweep(
        optuna2_python,
        tmp_path,
        sweep,
        "hydra.sweeper.n_trials=4",
        "hydra.sweeper.n_jobs=2",
        "hydra.sweeper.direction=minimize",
        "hydra.sweeper.sampler.seed=7",
        *SEARCH,
    )
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    manifest = json.loads(Path(manifest_path(str(sweep))).read_text())["jobs"]
    values = {}
    for num in range(4):
        job = sweep / str(num)
        cfg = yaml.safe_load((job / ".hydra" / "config.yaml").read_text())
        ran = json.loads((job / optuna2_app.OBJECTIVE_FILE).read_text())
        # The job's folder holds the config it ran with; it ran as the HTCondor job the launcher submitted.
        assert ran["params"] == {k: cfg[k] for k in ("x", "n", "kind")}, (cfg, ran)
        assert ran["value"] == optuna2_app.objective(cfg["x"], cfg["n"], cfg["kind"])
        assert ran["condor_job"] == f"{manifest[str(num)]['cluster']}.{manifest[str(num)]['proc']}"
        values[num] = ran["value"]
    # Two batches of n_jobs=2: one HTCondor cluster each.
    assert len({manifest[str(n)]["cluster"] for n in range(4)}) == 2, manifest
    # The sweeper told Optuna what the jobs returned: its best trial is the best job, and its value is the
    # objective of its parameters (a None or a stale value would fail here).
    best = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    assert best["best_value"] == pytest.approx(min(values.values()))
    params = {key.lstrip("+"): value for key, value in best["best_params"].items()}  # as overridden: +x
    expected = optuna2_app.objective(params["x"], params["n"], params["kind"])
    assert best["best_value"] == pytest.approx(expected)


def test_optuna_refuses_resume_and_detach_in_one_line(optuna2_python, tmp_path):
    # Optuna's persistent storage (hydra.sweeper.storage) is how such a study resumes; it is not exercised
    # here: optuna 2.10, which this sweeper needs, cannot create an RDB storage with SQLAlchemy 2.x
    # (envs/optuna2/requirements.txt).
    sweep = tmp_path / "sweep"
    search = ("hydra.sweeper.n_trials=2", "hydra.sweeper.n_jobs=2", *SEARCH)

    def run(folder: Path, *extra: str) -> subprocess.CompletedProcess[str]:
        return _sweep(optuna2_python, tmp_path, folder, *search, *extra)

    first = run(sweep)
    assert first.returncode == 0, first.stderr[-3000:]
    # Re-running in the same folder is refused in one line: a sampler's job #0 is another trial each run.
    again = run(sweep)
    assert again.returncode == 1
    noise = ("HYDRA_FULL_ERROR", "A new study created")  # Hydra's hint, Optuna's own log line
    lines = [line for line in again.stderr.splitlines() if line.strip() and not any(n in line for n in noise)]
    assert len(lines) == 1 and "not supported with the Optuna sweeper" in lines[0], again.stderr
    assert "hydra.sweeper.storage" in lines[0]
    other = tmp_path / "other"
    detached = run(other, "hydra.launcher.detach=true")
    assert detached.returncode == 1 and "hydra.launcher.detach=true is not supported" in detached.stderr
    assert not Path(manifest_path(str(other))).exists()
    # resume=false starts afresh in the folder.
    afresh = run(sweep, "hydra.launcher.resume=false")
    assert afresh.returncode == 0, afresh.stderr[-3000:]
