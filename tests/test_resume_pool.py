"""Training jobs that survive the real HTCondor test pool: a job vacated after its first checkpoint resumes
from that epoch, and ``app.max_minutes_per_start`` restarts a job through the launcher's checkpoint exit code;
both on a shared filesystem and with HTCondor file transfer, both ending with the result of one uninterrupted
run of the same seed."""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import cloudpickle
import pytest
from _app_helpers import app_command, app_env, run_app
from hydra.core.utils import JobStatus

pytestmark = [pytest.mark.condor, pytest.mark.slow]

# Four epochs, long enough (~2-4 s each on one core) to vacate a job between its first checkpoint and end.
RUN = (
    "data.source=bundled",
    "trainer.enable_progress_bar=false",
    "logger=csv",
    "trainer.max_epochs=4",
    "trainer.limit_train_batches=40",
)
SAME = ("val/acc", "val/loss", "val/acc_best", "test/acc", "test/loss", "epochs", "test_weights")
TRANSFER = pytest.mark.parametrize("transfer", [False, True], ids=["shared_fs", "transfer"])


def _same(metrics: dict[str, Any]) -> dict[str, Any]:
    return {**{k: metrics[k] for k in SAME}, "best": Path(metrics["best_checkpoint"]).name}


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One local run, on one thread as a 1-CPU pool job runs (HTCondor sets OMP_NUM_THREADS=1)."""
    tmp = tmp_path_factory.mktemp("pool_reference")
    proc = run_app(tmp, *RUN, f"hydra.run.dir={tmp / 'run'}", env=app_env(OMP_NUM_THREADS="1"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics: dict[str, Any] = json.loads((tmp / "run" / "metrics.json").read_text())
    return metrics


def _sweep(tmp_path: Path, transfer: bool, *extra: str) -> tuple[subprocess.Popen[str], Path, str]:
    sweep = tmp_path / "sweep"
    tag = f"resume-{uuid.uuid4().hex[:12]}"
    proc = subprocess.Popen(
        app_command(
            "-m",
            "launcher=htcondor_cpu",
            *RUN,
            *extra,
            f"hydra.sweep.dir={sweep}",
            f"hydra.launcher.transfer_files={str(transfer).lower()}",
            f"hydra.launcher.batch_name={tag}",
            "hydra.launcher.status_interval=2",
            f"+probe={tag}",  # finds the job folder in the worker's scratch folder
        ),
        cwd=tmp_path,
        env=app_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    return proc, sweep, tag


def _job_folder(sweep: Path, tag: str, transfer: bool) -> Path | None:
    """The running job's folder: in the sweep folder, or (file transfer) in its scratch folder on the
    execute side of the pool (this machine)."""
    if not transfer:
        return sweep / "0"
    import htcondor2

    for overrides in Path(htcondor2.param["EXECUTE"]).glob("*/**/.hydra/overrides.yaml"):
        try:
            if tag in overrides.read_text():
                return overrides.parent.parent
        except OSError:  # a scratch folder that went away
            continue
    return None


def _wait_for_checkpoint(proc: subprocess.Popen[str], sweep: Path, tag: str, transfer: bool) -> Path:
    deadline = time.monotonic() + 400
    while time.monotonic() < deadline and proc.poll() is None:
        folder = _job_folder(sweep, tag, transfer)
        if folder is not None and (folder / "checkpoints" / "last.ckpt").is_file():
            return folder
        time.sleep(0.2)
    out = proc.communicate(timeout=60)[0] if proc.poll() is not None else ""
    pytest.fail(f"no checkpoint seen in the job folder (sweep exit {proc.poll()}): {out[-3000:]}")


def _job_id(tag: str) -> str:
    import htcondor2

    ads = htcondor2.Schedd().query(constraint=f'JobBatchName == "{tag}"', projection=["ClusterId", "ProcId"])
    assert len(ads) == 1, ads
    return f"{ads[0]['ClusterId']}.{ads[0]['ProcId']}"


def _finish(proc: subprocess.Popen[str], sweep: Path) -> tuple[str, dict[str, Any]]:
    out = proc.communicate(timeout=600)[0]
    assert proc.returncode == 0, out[-4000:]
    metrics = json.loads((sweep / "0" / "metrics.json").read_text())
    with open(sweep / ".htcondor" / "0.result.pkl", "rb") as f:
        ret = cloudpickle.load(f)
    assert ret.status == JobStatus.COMPLETED, ret._return_value
    assert ret.return_value == metrics["test/acc"]  # optimized_metric, back from the pool
    return out, metrics


def _event_names(sweep: Path) -> list[str]:
    import htcondor2

    (log,) = (sweep / ".htcondor").glob("batch-*.log")
    return [event.type.name for event in htcondor2.JobEventLog(str(log)).events(stop_after=0)]


@TRANSFER
def test_vacated_training_job_resumes_from_its_checkpoint(tmp_path, transfer, uninterrupted):
    import htcondor2

    proc, sweep, tag = _sweep(tmp_path, transfer)
    folder = _wait_for_checkpoint(proc, sweep, tag, transfer)
    # As a pool reclaiming the machine would: SIGTERM to the job, which goes back to the queue.
    htcondor2.Schedd().act(htcondor2.JobAction.Vacate, _job_id(tag))
    out, metrics = _finish(proc, sweep)

    assert metrics["starts"] == 2, metrics["start_history"]
    (resumed,) = metrics["resumed_from_epochs"]
    assert 1 <= resumed < 4  # from the checkpoint's epoch, not from 0
    task_log = (sweep / "0" / "mnist_app.log").read_text()  # both starts' lines
    assert "SIGTERM at epoch" in task_log  # the app saw the eviction's SIGTERM and stopped
    assert f"resumed from {metrics['start_history'][1]['checkpoint']} at epoch {resumed}" in task_log
    assert _same(metrics) == _same(uninterrupted)
    events = _event_names(sweep)
    assert events.count("JOB_EVICTED") == 1 and events.count("EXECUTE") == 2, events
    assert "evicted x1" in out  # the live status table showed the eviction
    if transfer:
        assert not str(folder).startswith(str(sweep))  # it ran in a scratch folder, which travelled


@TRANSFER
def test_time_limit_restarts_the_job_through_the_checkpoint_exit_code(tmp_path, transfer, uninterrupted):
    proc, sweep, _ = _sweep(tmp_path, transfer, "app.max_minutes_per_start=0.001")
    _, metrics = _finish(proc, sweep)
    # One epoch per start: four starts, each resumed from where the last one stopped.
    assert metrics["starts"] == 4 and metrics["resumed_from_epochs"] == [1, 2, 3]
    assert _same(metrics) == _same(uninterrupted)
    events = _event_names(sweep)
    # Restarts through exit code 85 are not evictions: one execution, no eviction event.
    assert events.count("EXECUTE") == 1 and "JOB_EVICTED" not in events, events
