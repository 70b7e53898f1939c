"""mnist_app end to end on the local HTCondor pool: real command lines, real training, real results."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import cloudpickle
import optuna
import pytest
import yaml
from _app_helpers import FAST as APP_FAST
from _app_helpers import only_sweep_dir, run_app
from hydra.core.utils import JobStatus
from optuna.storages.journal import JournalFileBackend, JournalStorage
from optuna.trial import TrialState

pytestmark = [pytest.mark.condor, pytest.mark.slow]

# Small and offline (bundled MNIST sample), as the app's own tests run.
FAST = [*APP_FAST, "trainer.max_epochs=1"]


def _run(tmp_path: Path, *args: str, timeout: float = 480) -> subprocess.CompletedProcess[str]:
    return run_app(tmp_path, *args, timeout=timeout)  # CONDOR_CONFIG comes from the condor_pool fixture


def test_cpu_sweep_trains_both_jobs_on_the_pool(tmp_path):
    proc = _run(
        tmp_path,
        "-m",
        "launcher=htcondor",
        "device=cpu",
        "hydra.launcher.request_gpus=0",
        "model.lr=0.5,1.0",
        *FAST,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "submitted as cluster" in proc.stdout + proc.stderr
    sweep = only_sweep_dir(tmp_path)
    for num, lr in ((0, 0.5), (1, 1.0)):
        job = sweep / str(num)
        metrics = json.loads((job / "metrics.json").read_text())
        # One epoch on the bundled sample measured 0.906 (lr 0.5) and 0.915 (lr 1.0) on the pool.
        assert 0.8 < metrics["test/acc"] <= 1.0
        assert (job / "checkpoints" / "last.ckpt").exists()
        assert (job / "mnist_app.log").exists()
        assert yaml.safe_load((job / ".hydra" / "config.yaml").read_text())["model"]["lr"] == lr
        # The real return value came back: the app returns optimized_metric (test/acc).
        with open(sweep / ".htcondor" / f"{num}.result.pkl", "rb") as f:
            ret = cloudpickle.load(f)
        assert ret.status == JobStatus.COMPLETED
        assert ret.return_value == pytest.approx(metrics["test/acc"])
        # ... and the launcher's closing summary shows it to the user.
        summary = [line for line in proc.stdout.splitlines() if line.endswith(f" -> {ret.return_value!r}")]
        assert len(summary) == 1 and f"model.lr={lr} " in summary[0], proc.stdout[-2000:]
    assert "2 of 2 job(s) completed" in proc.stdout + proc.stderr
    # The launcher's last job-status table: both jobs done, each on the slot its EXECUTE event names.
    import htcondor2
    from hydra_plugins.hydra_htcondor_launcher._jobstate import short_host

    slots = {
        ev.proc: short_host(ev.get("SlotName"), ev.get("ExecuteHost"))
        for ev in htcondor2.JobEventLog(str(sweep / ".htcondor" / "batch-0-1.log")).events(stop_after=0)
        if ev.type == htcondor2.JobEventType.EXECUTE
    }
    cluster = int(proc.stdout.split("submitted as cluster")[1].split()[0])
    counts = f"HTCondor cluster {cluster}: 0 idle, 0 running, 0 held, 2 done, 0 failed of 2 jobs"
    final = proc.stdout[proc.stdout.rindex(counts) :]
    # The final table lists jobs that just ended latest first (launchers/README.md): take them by number.
    rows = sorted((line.split() for line in final.splitlines()[2:4]), key=lambda row: row[0])
    for row, num, lr in zip(rows, (0, 1), (0.5, 1.0), strict=True):  # proc n is job n: one batch
        assert row[:4] == [f"#{num}", f"{cluster}.{num}", "done", slots[num]], final
        assert row[5:7] == ["exit", "0"] and f"model.lr={lr}" in row, final


def test_cuda_on_the_simulated_gpu_fails_with_the_apps_one_line_error(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a real GPU would make this job succeed")
    proc = _run(tmp_path, "-m", "launcher=htcondor", "device=cuda", *FAST)
    assert proc.returncode == 1
    assert "device=cuda but no usable CUDA GPU" in proc.stderr
    sweep = only_sweep_dir(tmp_path)
    with open(sweep / ".htcondor" / "0.result.pkl", "rb") as f:
        ret = cloudpickle.load(f)
    assert ret.status == JobStatus.FAILED
    assert type(ret._return_value).__name__ == "MnistAppError"
    assert "CUDA_VISIBLE_DEVICES=0" in str(ret._return_value)  # it ran on the pool's GPU slot
    assert "\n" not in str(ret._return_value).split("\n[remote traceback")[0]


@pytest.mark.shares("pool_optuna_sweep")
def test_optuna_sweeper_gets_real_values_from_the_pool(pool_optuna_sweep):
    # The search tests/test_report.py reads too (tests/conftest.py): maximize val/acc, some trials pruned
    # (no metrics.json); the best value is the best the completed jobs wrote.
    sweep = pool_optuna_sweep
    accs = [json.loads(p.read_text())["val/acc"] for p in sweep.glob("*/metrics.json")]
    assert accs, "no trial of the search completed"
    best = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    assert best["best_value"] == pytest.approx(max(accs))


def test_the_search_on_the_pool_prunes_with_asha_by_epoch(tmp_path):
    # The app's search with the asha preset (min_resource 1, reduction_factor 3) on its epoch reports (the
    # number of epochs trained, from 1), one trial at a time: the seed alone orders the trials. With fewer
    # than 3 trials at a rung, ASHA promotes only the best so far: a trial worse after epoch 1 than every
    # earlier one stops there, its job removed with "pruned at epoch 1"; the others train both epochs, none
    # judged at epoch 2 (the next rung is epoch 3).
    proc = _run(
        tmp_path,
        "-m",
        "hparams_search=optuna",
        "launcher=htcondor_cpu",
        "hydra/sweeper/pruner=asha",
        "hydra.sweeper.n_trials=3",
        "hydra.sweeper.n_jobs=1",
        "hydra.sweeper.sampler.seed=1",
        "model.lr=choice(0.001, 1.0)",  # seed 1 asks 1.0, 1.0, 0.001: the last is far behind after epoch 1
        "data.batch_size=64",
        "model.scheduler.gamma=0.7",
        *APP_FAST,
        # Whole epochs (~3 s): a pruned trial's job is still training epoch 2 when the sweeper removes it.
        "trainer.max_epochs=2",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    sweep = only_sweep_dir(tmp_path)
    storage = JournalStorage(JournalFileBackend(str(sweep / "optuna_journal.log")))
    trials = optuna.load_study(study_name="mnist_app", storage=storage).get_trials()
    assert len(trials) == 3
    manifest = json.loads((sweep / ".htcondor" / "manifest.json").read_text())
    first: list[float] = []  # each trial's val/acc after epoch 1, in trial order
    for t in trials:
        first.append(t.intermediate_values[1])
        if first[-1] < max(first):
            assert t.state == TrialState.PRUNED and list(t.intermediate_values) == [1], t
            entry = manifest["jobs"][str(t.number)]
            assert entry["abort_reason"] == "pruned at epoch 1", entry
            assert f"trial {t.number} (job #{t.number}): pruned at epoch 1" in proc.stdout + proc.stderr
        else:
            assert t.state == TrialState.COMPLETE and list(t.intermediate_values) == [1, 2], t
            metrics = json.loads((sweep / str(t.number) / "metrics.json").read_text())
            assert t.value == pytest.approx(metrics["val/acc"]) and metrics["epochs"] == 2
    assert any(t.state == TrialState.PRUNED for t in trials), "the test needs a pruned trial"
