"""Runs that stop and start again (app.resume, SIGTERM, app.max_minutes_per_start): real training on the
bundled images through real command lines, compared with one uninterrupted run of the same seed."""

from __future__ import annotations

import csv
import json
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import torch
from _app_helpers import app_command, app_env

from mnist_app.errors import MnistAppError
from mnist_app.resume import (
    DEFAULT_CHECKPOINT_EXIT_CODE,
    SIGTERM_EXIT_CODE,
    AtomicCheckpointIO,
    RestartRequested,
    checkpoint_exit_code,
)
from mnist_app.train import train

# Three short epochs of the CNN (dropout: the RNG states matter), val every epoch, test on the best weights.
RUN = (
    "data.source=bundled",
    "trainer.enable_progress_bar=false",
    "logger=csv",
    "trainer.max_epochs=3",
    "trainer.limit_train_batches=20",
    "trainer.log_every_n_steps=5",
)
# What must not depend on how many starts a run took.
SAME = ("val/acc", "val/loss", "val/acc_best", "test/acc", "test/loss", "epochs", "test_weights")


def _cmd(run_dir: Path, *extra: str) -> list[str]:
    return app_command(*RUN, f"hydra.run.dir={run_dir}", *extra)


def _run(cwd: Path, run_dir: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        _cmd(run_dir, *extra), cwd=cwd, env=app_env(), capture_output=True, text=True, timeout=600
    )


def _metrics(run_dir: Path) -> dict[str, Any]:
    metrics: dict[str, Any] = json.loads((run_dir / "metrics.json").read_text())
    return metrics


def _csv_rows(run_dir: Path) -> list[dict[str, str]]:
    with (run_dir / "csv" / "metrics.csv").open(newline="") as f:
        return list(csv.DictReader(f))


def _same(metrics: dict[str, Any]) -> dict[str, Any]:
    same = {k: metrics[k] for k in SAME}
    same["best"] = Path(metrics["best_checkpoint"]).name  # names the epoch and its val/acc
    return same


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("uninterrupted")
    proc = _run(tmp, tmp / "run")
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = _metrics(tmp / "run")
    assert metrics["starts"] == 1 and metrics["resumed_from_epochs"] == []
    assert metrics["start_history"][0]["from_epoch"] == 0
    metrics["csv"] = _csv_rows(tmp / "run")
    return metrics


@pytest.mark.slow
def test_time_limit_forces_restarts_with_the_same_result(tmp_path, uninterrupted):
    run_dir = tmp_path / "run"
    codes = []
    # What the launcher does with exit code 85: run the same command again, in the same run folder.
    while not (run_dir / "metrics.json").exists() and len(codes) < 5:
        proc = _run(tmp_path, run_dir, "app.max_minutes_per_start=0.001")
        codes.append(proc.returncode)
        if proc.returncode == DEFAULT_CHECKPOINT_EXIT_CODE:
            # One clear line on how to go on.
            assert (
                f"continues when the same command is run again with hydra.run.dir={run_dir}"
                in proc.stdout + proc.stderr
            )
        else:
            assert proc.returncode == 0, proc.stderr[-3000:]
    # Every start trains at least one epoch: a limit shorter than an epoch still makes progress.
    assert codes == [85, 85, 0]
    metrics = _metrics(run_dir)
    assert metrics["starts"] == 3 and metrics["resumed_from_epochs"] == [1, 2]
    assert _same(metrics) == _same(uninterrupted)
    assert json.loads((run_dir / "starts.json").read_text())["starts"] == metrics["start_history"]
    # The CSV log holds every epoch once, as the uninterrupted run's does.
    assert _csv_rows(run_dir) == uninterrupted["csv"]


@pytest.mark.slow
def test_sigterm_mid_training_then_rerun_gives_the_same_result(tmp_path, uninterrupted):
    run_dir = tmp_path / "run"
    last = run_dir / "checkpoints" / "last.ckpt"
    proc = subprocess.Popen(
        _cmd(run_dir),
        cwd=tmp_path,
        env=app_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.monotonic() + 300
    while not last.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert proc.poll() is None, "the run ended before its first checkpoint"
    saved = last.read_bytes()
    proc.send_signal(signal.SIGTERM)  # what HTCondor sends at an eviction; mid-epoch 2 here
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == SIGTERM_EXIT_CODE, out[-3000:]
    assert "SIGTERM at epoch 1: stopped" in out
    assert not (run_dir / "metrics.json").exists()
    # The half-done epoch is not saved: last.ckpt is the completed epoch's, whole.
    assert last.read_bytes() == saved
    assert torch.load(last, weights_only=True)["epoch"] == 0

    again = _run(tmp_path, run_dir)
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"resumed from {last} at epoch 1" in again.stdout + again.stderr
    metrics = _metrics(run_dir)
    assert metrics["starts"] == 2 and metrics["resumed_from_epochs"] == [1]
    assert _same(metrics) == _same(uninterrupted)
    # Rows of the half-done epoch are gone; the validation rows are the uninterrupted run's.
    val = [
        {k: r[k] for k in ("epoch", "step", "val/acc", "val/loss")}
        for r in _csv_rows(run_dir)
        if r["val/acc"]
    ]
    assert val == [
        {k: r[k] for k in ("epoch", "step", "val/acc", "val/loss")}
        for r in uninterrupted["csv"]
        if r["val/acc"]
    ]


@pytest.mark.slow
def test_moved_run_folder_resumes_with_its_best_checkpoint(tmp_path, compose_cfg, uninterrupted):
    """HTCondor file transfer gives every start a new scratch folder: the checkpoint's paths move with it."""
    cfg = compose_cfg(*RUN, "app.max_minutes_per_start=0.001")
    first = tmp_path / "first"
    with pytest.raises(RestartRequested) as stopped:
        train(cfg, output_dir=first)
    assert stopped.value.code == DEFAULT_CHECKPOINT_EXIT_CODE
    here = first
    for n in range(3):
        moved = tmp_path / f"start{n}"
        shutil.copytree(here, moved)
        shutil.rmtree(here)  # the old folder is gone, as a finished job's scratch folder is
        here = moved
        try:
            metrics = train(cfg, output_dir=here)
            break
        except RestartRequested:
            continue
    assert metrics["resumed_from_epochs"] == [1, 2]
    assert Path(metrics["best_checkpoint"]).parent == here / "checkpoints"
    assert Path(metrics["best_checkpoint"]).is_file()
    # The in-process runs match the subprocess one: same seed, same CPU.
    assert _same(metrics) == _same(uninterrupted)


def test_resume_never_starts_fresh_in_a_used_folder(tmp_path, compose_cfg):
    overrides = (*RUN[:3], "trainer.max_epochs=1", "trainer.limit_train_batches=5", "app.test=false")
    train(compose_cfg(*overrides), output_dir=tmp_path)
    again = train(compose_cfg(*overrides), output_dir=tmp_path)
    assert again["starts"] == 2 and again["resumed_from_epochs"] == [1]  # nothing left to train
    assert again["val/acc"] is not None  # the checkpoint's own validation metrics
    fresh = train(compose_cfg(*overrides, "app.resume=never"), output_dir=tmp_path)
    assert fresh["starts"] == 1 and fresh["resumed_from_epochs"] == []
    assert fresh["val/acc"] == again["val/acc"]


def test_bad_resume_settings_are_one_line_errors(tmp_path, compose_cfg, run_app):
    with pytest.raises(MnistAppError, match=r"app.max_minutes_per_start=0.0: must be > 0"):
        train(compose_cfg(*RUN, "app.max_minutes_per_start=0"), output_dir=tmp_path)
    with pytest.raises(MnistAppError, match=re.escape("needs last.ckpt: keep the model_checkpoint callback")):
        train(
            compose_cfg(*RUN, "app.max_minutes_per_start=1", "trainer.enable_checkpointing=false"),
            output_dir=tmp_path,
        )
    for override, message in [
        ("app.resume=sometimes", "app.resume=sometimes: choose one of auto, never"),
        ("app.max_minutes_per_start=abc", "app.max_minutes_per_start=abc: expected a float or null"),
        # The name for it; Trainer arguments are trainer.*, the app's switches app.*.
        ("trainer.resume=auto", "unknown key 'trainer.resume': the app's switch is app.resume"),
    ]:
        proc = run_app(override)
        assert proc.returncode == 2
        (line,) = proc.stderr.strip().splitlines()
        assert line.startswith(f"mnist_app: error: {message}"), line


def test_checkpoint_exit_code_without_a_launcher_is_85():
    assert checkpoint_exit_code() == DEFAULT_CHECKPOINT_EXIT_CODE == 85


class _Unpicklable:
    def __reduce__(self) -> Any:
        raise RuntimeError("killed mid-write")


def test_atomic_checkpoint_write_keeps_the_previous_file_whole(tmp_path):
    path = tmp_path / "checkpoints" / "last.ckpt"
    io = AtomicCheckpointIO()
    io.save_checkpoint({"epoch": 1, "w": torch.ones(1000)}, path)
    # A write that dies after torch.save has written part of the file.
    with pytest.raises(RuntimeError, match="killed mid-write"):
        io.save_checkpoint({"w": torch.zeros(1000), "z": _Unpicklable()}, path)
    assert torch.load(path, weights_only=True)["epoch"] == 1
    assert [p.name for p in path.parent.iterdir()] == ["last.ckpt"]  # no temporary file left behind
