"""What surviving evictions costs: saving ``last.ckpt`` every epoch, and restarting from it.

1. Checkpointing, in this process, CPU, the bundled 3,600 training images: each model trains ``--epochs``
   epochs with the app's Trainer (validation every epoch, the model_checkpoint callback as configured), and
   every checkpoint write (``AtomicCheckpointIO``: ``torch.save`` to a temp file, fsync, rename) is timed. The
   table gives the median time of a ``last.ckpt`` write, the median epoch (training + validation +
   checkpoints), and the write as a fraction of the epoch; also of a full-MNIST epoch (54,000 images, the
   training part scaled by the measured images/s). An A/B check: epochs with ``save_last: true`` vs
   ``false``, alternating, ``--repeats`` times (median difference; noisy on a shared machine).
2. Restart, as subprocesses (``python -m mnist_app``, what a restarted HTCondor job runs): wall time from
   ``Popen`` to the first training step, fresh (empty run folder) vs resumed (a copy of a run folder whose
   first start stopped after epoch 1 with ``app.max_minutes_per_start``), alternating, median of
   ``--repeats``.

    python benchmarks/bench_resume.py
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra import compose, initialize_config_dir

from mnist_app.config import config_dir
from mnist_app.data import load_mnist
from mnist_app.resume import AtomicCheckpointIO
from mnist_app.train import build_datamodule, build_model, build_trainer, prepare_runtime, with_run_dir

REPO = Path(__file__).resolve().parents[1]
FULL_MNIST_TRAIN = 54_000
QUIET = ("data.source=bundled", "trainer.enable_progress_bar=false", "logger=csv")


class FirstStepStamp(L.Callback):
    """Writes the wall-clock times of the Trainer's set-up and of the first training step into ``path`` (the
    restart benchmark); a resume loads and restores the checkpoint in between."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.done = False
        self.setup_at = 0.0

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self.setup_at = time.time()

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, i: int
    ) -> None:
        if not self.done:
            Path(self.path).write_text(json.dumps({"setup": self.setup_at, "first_step": time.time()}))
            self.done = True


class TimedCheckpointIO(AtomicCheckpointIO):
    """The app's checkpoint writer, timing each write by file name (``last`` or ``best-...``)."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[tuple[str, float, int]] = []

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None
    ) -> None:
        t0 = time.perf_counter()
        super().save_checkpoint(checkpoint, path, storage_options)
        self.writes.append((Path(path).stem, time.perf_counter() - t0, Path(path).stat().st_size))


class EpochClock(L.Callback):
    """Wall time of each epoch: training, validation and the checkpoints written at its end."""

    def __init__(self) -> None:
        self.epochs: list[float] = []
        self.images_per_s: list[float] = []
        self._t0 = 0.0
        self._train_end = 0.0
        self._images = 0

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._t0, self._images = time.perf_counter(), 0

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, out: Any, batch: Any, i: int
    ) -> None:
        self._images += len(batch[1])
        self._train_end = time.perf_counter()

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.epochs.append(time.perf_counter() - self._t0)
        self.images_per_s.append(self._images / (self._train_end - self._t0))


def compose_cfg(*overrides: str) -> Any:
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides))


def fit(model_name: str, epochs: int, save_last: bool) -> tuple[EpochClock, TimedCheckpointIO]:
    """One run of ``epochs`` epochs; the epoch clock and the checkpoint writes."""
    cfg = compose_cfg(
        *QUIET,
        f"model={model_name}",
        f"trainer.max_epochs={epochs}",
        "trainer.num_sanity_val_steps=0",
        f"callbacks.model_checkpoint.save_last={str(save_last).lower()}",
    )
    with tempfile.TemporaryDirectory() as tmp:
        cfg = with_run_dir(cfg, Path(tmp))
        prepare_runtime(cfg)
        arrays = load_mnist(cfg.data, Path(os.path.abspath(cfg.data.root)))
        clock, io = EpochClock(), TimedCheckpointIO()
        trainer = build_trainer(cfg, callbacks=[clock])
        trainer.strategy.checkpoint_io = io  # the app's writer, with a stopwatch
        trainer.fit(build_model(cfg), datamodule=build_datamodule(cfg, arrays))
    return clock, io


def checkpoint_cost(models: list[str], epochs: int, repeats: int) -> list[str]:
    rows = [
        "| model | last.ckpt MB | write ms (median) | epoch s (bundled, median) | write / epoch | "
        "write / full-MNIST epoch (est.) | A/B: epoch s with - without save_last (median of pairs) |",
        "|---|---|---|---|---|---|---|",
    ]
    for name in models:
        with_last, without = [], []
        writes: list[float] = []
        size = 0
        rates: list[float] = []
        for _ in range(repeats):
            clock, io = fit(name, epochs, save_last=True)
            with_last.append(statistics.median(clock.epochs[1:]))  # epoch 0 carries warm-up
            writes += [s for stem, s, _ in io.writes if stem == "last"]
            size = max(n for stem, _, n in io.writes if stem == "last")
            rates += clock.images_per_s[1:]
            clock, _ = fit(name, epochs, save_last=False)
            without.append(statistics.median(clock.epochs[1:]))
        write = statistics.median(writes)
        epoch = statistics.median(with_last)
        full_epoch = FULL_MNIST_TRAIN / statistics.median(rates) + (epoch - 3600 / statistics.median(rates))
        diff = statistics.median(a - b for a, b in zip(with_last, without, strict=True))
        rows.append(
            f"| {name} | {size / 1e6:.2f} | {write * 1e3:.1f} | {epoch:.2f} | {write / epoch:.2%} | "
            f"{write / full_epoch:.3%} | {diff * 1e3:+.0f} ms |"
        )
    return rows


def _start(run_dir: Path, stamp: Path, *extra: str) -> tuple[float, float]:
    """Seconds from Popen, and from the Trainer's set-up, to the first training step of
    ``python -m mnist_app`` in ``run_dir``."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    stamp.unlink(missing_ok=True)
    command = [
        sys.executable,
        "-m",
        "mnist_app",
        *QUIET,
        "trainer.max_epochs=2",
        "trainer.limit_train_batches=5",
        "trainer.limit_val_batches=2",
        "app.test=false",
        "app.max_minutes_per_start=0.001",  # one epoch per start
        f"hydra.run.dir={run_dir}",
        f"+callbacks.first_step_stamp={{_target_: bench_resume.FirstStepStamp, path: '{stamp}'}}",
        *extra,
    ]
    env["PYTHONPATH"] += os.pathsep + str(Path(__file__).parent)
    t0 = time.time()
    proc = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    if proc.returncode not in (0, 85):
        raise RuntimeError(f"exit {proc.returncode}: {proc.stderr[-2000:]}")
    times = json.loads(stamp.read_text())
    return times["first_step"] - t0, times["first_step"] - times["setup"]


def restart_cost(repeats: int) -> list[str]:
    fresh: list[tuple[float, float]] = []
    resumed: list[tuple[float, float]] = []
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        stamp = base / "stamp"
        _start(base / "stopped", stamp)  # first start: epoch 1, then exit 85 with last.ckpt
        assert (base / "stopped" / "checkpoints" / "last.ckpt").is_file()
        for n in range(repeats):
            fresh.append(_start(base / f"fresh{n}", stamp))
            shutil.copytree(base / "stopped", base / f"resumed{n}")
            resumed.append(_start(base / f"resumed{n}", stamp))

    def cells(runs: list[tuple[float, float]]) -> list[float]:
        total, fit = [t for t, _ in runs], [t for _, t in runs]
        return [min(total), statistics.median(total), min(fit), statistics.median(fit)]

    f, r = cells(fresh), cells(resumed)
    return [
        "| start | process start -> first step, s (min) | (median) | Trainer set-up -> first step, s (min) "
        "| (median) |",
        "|---|---|---|---|---|",
        "| fresh (empty run folder) | " + " | ".join(f"{x:.2f}" for x in f) + " |",
        "| resumed from last.ckpt (epoch 1) | " + " | ".join(f"{x:.2f}" for x in r) + " |",
        "| resume minus fresh | " + " | ".join(f"{b - a:+.2f}" for a, b in zip(f, r, strict=True)) + " |",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", default=["cnn", "lenet5", "mlp"])
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--restarts", type=int, default=7, help="runs of each kind in the restart benchmark")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    print(
        f"CPU: {platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
        f"lightning {L.__version__}, {torch.get_num_threads()} threads"
    )
    print("\n".join(checkpoint_cost(args.models, args.epochs, args.repeats)))
    print()
    print("\n".join(restart_cost(args.restarts)))


if __name__ == "__main__":
    main()
