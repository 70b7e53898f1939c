"""Runs that survive evictions and time limits: resume from the run folder, stop on time, save atomically.

The contract with a launcher (``launchers/README.md``, "Checkpoints and evictions"): the run folder survives
restarts; a start that finds ``checkpoints/last.ckpt`` there continues from it (``app.resume=auto``); a task
asks for a restart by exiting with the launcher's ``checkpoint_exit_code``; an eviction sends SIGTERM.

Restarts happen at epoch boundaries only: ``last.ckpt`` is written at each epoch end (the model_checkpoint
callback), and a SIGTERM mid-epoch stops the run at the next batch without saving the half-done epoch, which
the next start trains again. That way a resumed run is the same computation as an uninterrupted one: the
checkpoint holds, besides Lightning's state (weights, optimizer, scheduler, loop progress, best checkpoint),
the RNG states (torch, NumPy, Python) and the training split's shuffle generator (``MnistDataModule``), so the
next epoch draws the same permutation and the same dropout masks; the final metrics are equal to the last bit
on CPU (``tests/test_resume.py``).
"""

from __future__ import annotations

import csv
import json
import logging
import os
import random
import signal
import socket
import time
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.plugins.io import TorchCheckpointIO
from lightning.pytorch.utilities.exceptions import SIGTERMException

from mnist_app.errors import MnistAppError

log = logging.getLogger(__name__)

# What a task exits with to ask the launcher for a restart when the launcher does not say (its default, and
# CHTC's convention).
DEFAULT_CHECKPOINT_EXIT_CODE = 85
# The status of a process ended by SIGTERM (128 + 15), so a local caller sees the run did not finish.
SIGTERM_EXIT_CODE = 128 + int(signal.SIGTERM)
# The start history, next to metrics.json.
STARTS_FILE = "starts.json"


class RestartRequested(SystemExit):
    """Raised by ``train`` after ``app.max_minutes_per_start``: ``last.ckpt`` is saved; the exit status is the
    launcher's checkpoint code. A ``SystemExit``: Hydra's ``run_job`` lets it through, so it becomes the
    process's exit status (in a launcher's worker as in a local run)."""


class Interrupted(SystemExit):
    """Raised by ``train`` after a SIGTERM stopped training: exit status 143; ``last.ckpt`` holds the last
    completed epoch."""


def checkpoint_exit_code() -> int | None:
    """The exit code that asks the launcher for a restart: ``hydra.launcher.checkpoint_exit_code`` when the
    launcher has that setting (the HTCondor launcher; null there means restarts are off), else 85."""
    from hydra.core.hydra_config import HydraConfig

    if HydraConfig.initialized():
        launcher = HydraConfig.get().launcher
        if "checkpoint_exit_code" in launcher:
            code = launcher.checkpoint_exit_code
            return None if code is None else int(code)
    return DEFAULT_CHECKPOINT_EXIT_CODE


def last_checkpoint_path(checkpoint: ModelCheckpoint | None) -> Path | None:
    """Where the model_checkpoint callback writes ``last.ckpt``, or None when it writes none."""
    if checkpoint is None or not checkpoint.save_last or checkpoint.dirpath is None:
        return None
    return Path(checkpoint.dirpath) / f"{checkpoint.CHECKPOINT_NAME_LAST}{checkpoint.FILE_EXTENSION}"


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint writer, but atomic on the checkpoint's own filesystem: a temporary file in the
    same folder, fsync, then ``os.replace``. A kill (SIGKILL after an eviction's grace time) mid-write leaves
    the previous ``last.ckpt`` whole. (Lightning's own save goes through an fsspec transaction whose temporary
    file is in ``/tmp``: across filesystems that is a copy, not a rename.)"""

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None
    ) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options, got {storage_options!r}")
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.tmp.{os.getpid()}")
        try:
            with open(tmp, "wb") as f:
                torch.save(checkpoint, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)


def _rng_state() -> dict[str, Any]:
    # Plain lists and tensors: checkpoints are loaded with torch.load(weights_only=True).
    version, mt, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "python": [version, list(mt), gauss],
        "numpy": [
            str(name),
            torch.from_numpy(np.asarray(keys, dtype=np.int64)),
            int(pos),
            int(has_gauss),
            float(cached),
        ],
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    version, mt, gauss = state["python"]
    random.setstate((version, tuple(mt), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def read_starts(run_dir: Path) -> list[dict[str, Any]]:
    """The run's start history (``starts.json``): one entry per start that reached training."""
    path = run_dir / STARTS_FILE
    if not path.is_file():
        return []
    starts: list[dict[str, Any]] = json.loads(path.read_text())["starts"]
    return starts


def record_start(run_dir: Path, from_epoch: int, checkpoint: str | None) -> list[dict[str, Any]]:
    """Append this start to ``starts.json`` (temp file + rename) and return the whole history."""
    starts = [
        *read_starts(run_dir),
        {
            "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "from_epoch": from_epoch,
            "checkpoint": checkpoint,
            "host": socket.gethostname(),
        },
    ]
    tmp = run_dir / f".{STARTS_FILE}.tmp"
    tmp.write_text(json.dumps({"starts": starts}, indent=2) + "\n")
    tmp.replace(run_dir / STARTS_FILE)
    return starts


class ResumeState(L.Callback):
    """What a resumed run needs besides Lightning's own state, and the bookkeeping of starts.

    - Saves the RNG states and the last validation metrics in every checkpoint; restores the RNG states just
      before the first training step after a resume (after the sanity check and the loaders' set-up, which
      an uninterrupted run did long before).
    - Rewrites the model_checkpoint callback's paths when the run folder moved between starts (HTCondor file
      transfer gives each start a new scratch folder), so the best checkpoint is still known.
    - Records the start in ``starts.json`` once training begins (``from_epoch``: the epoch it begins with).
    - Keeps the CSV logger's rows of the epochs the checkpoint holds (Lightning's CSVLogger deletes an
      existing ``metrics.csv`` when it starts; rows of a half-done epoch are dropped, it is trained again).
    - Logs what a SIGTERM leaves behind.
    """

    def __init__(self, run_dir: Path, resume_from: Path | None) -> None:
        self.run_dir = run_dir
        self.resume_from = resume_from
        self.starts: list[dict[str, Any]] | None = None
        # Validation metrics of the checkpoint's epoch: a start that has no epoch left to train reports them.
        self.restored_metrics: dict[str, float] = {}
        self._metrics: dict[str, float] = {}
        self._pending_rng: dict[str, Any] | None = None
        self._csv_rows: dict[int, list[dict[str, str]]] = {}

    def keep_csv_rows(self, loggers: list[Any]) -> None:
        """Read the CSV loggers' ``metrics.csv`` before the Trainer starts them (which deletes it)."""
        for n, logger in enumerate(loggers):
            path = Path(logger.log_dir) / "metrics.csv" if isinstance(logger, CSVLogger) else None
            if path is not None and path.is_file():
                with path.open(newline="") as f:
                    self._csv_rows[n] = [
                        {k: v for k, v in row.items() if v != ""} for row in csv.DictReader(f)
                    ]

    def record(self, from_epoch: int) -> None:
        """Record this start, once."""
        if self.starts is None:
            ckpt = str(self.resume_from) if self.resume_from is not None else None
            self.starts = record_start(self.run_dir, from_epoch, ckpt)

    def state_dict(self) -> dict[str, Any]:
        return {"rng": _rng_state(), "metrics": dict(self._metrics)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._pending_rng = state_dict["rng"]
        self.restored_metrics = dict(state_dict.get("metrics", {}))

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # Runs before the checkpoint callbacks (Lightning orders them last), so their save includes these.
        if not trainer.sanity_checking:
            self._metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")}

    def on_load_checkpoint(
        self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        # Called before the callbacks' load_state_dict: ModelCheckpoint keeps its best path only when its
        # dirpath is the one it saved.
        for callback in trainer.checkpoint_callbacks:
            if not isinstance(callback, ModelCheckpoint) or callback.dirpath is None:
                continue
            state = checkpoint.get("callbacks", {}).get(callback.state_key)
            if not state or not state.get("dirpath") or state["dirpath"] == callback.dirpath:
                continue
            old, new = str(state["dirpath"]), str(callback.dirpath)
            log.info("run folder moved since the checkpoint: %s -> %s", old, new)

            def moved(path: Any, old: str = old, new: str = new) -> Any:
                if isinstance(path, str) and (path == old or path.startswith(old + os.sep)):
                    return new + path[len(old) :]
                return path

            for key in ("dirpath", "best_model_path", "kth_best_model_path", "last_model_path"):
                if key in state:
                    state[key] = moved(state[key])
            if "best_k_models" in state:
                state["best_k_models"] = {moved(k): v for k, v in state["best_k_models"].items()}

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.record(trainer.current_epoch)
        if self.resume_from is None:
            return
        log.info("resumed from %s at epoch %d", self.resume_from, trainer.current_epoch)
        for n, rows in self._csv_rows.items():
            kept = [row for row in rows if int(row.get("step", -1)) < trainer.global_step]
            logger = trainer.loggers[n]
            assert isinstance(logger, CSVLogger)
            # Written ahead of this start's rows at the logger's next save.
            logger.experiment.metrics[:0] = kept
        self._csv_rows = {}

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        if self._pending_rng is not None:
            _set_rng_state(self._pending_rng)
            self._pending_rng = None

    def on_exception(
        self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException
    ) -> None:
        if isinstance(exception, SIGTERMException):
            log.warning(
                "SIGTERM at epoch %d: stopped; %s keeps the last completed epoch, from which the next start "
                "in this run folder continues",
                trainer.current_epoch,
                last_checkpoint_path(trainer.checkpoint_callback)
                if isinstance(trainer.checkpoint_callback, ModelCheckpoint)
                else "no checkpoint",
            )


class StartTimeLimit(L.Callback):
    """``app.max_minutes_per_start``: at the end of an epoch past the limit, stop training. The epoch's
    ``last.ckpt`` is saved by then (the checkpoint callbacks run after this one, and with validation they
    saved at its end already); ``train`` then exits with the checkpoint code."""

    def __init__(self, max_minutes: float, t0: float) -> None:
        self.max_minutes = max_minutes
        self.t0 = t0
        self.stopped = False

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        minutes = (time.perf_counter() - self.t0) / 60
        if minutes >= self.max_minutes and trainer.current_epoch + 1 < (trainer.max_epochs or 0):
            log.info(
                "app.max_minutes_per_start=%g reached (%.2f min) after %d of %d epochs: stopping to restart",
                self.max_minutes,
                minutes,
                trainer.current_epoch + 1,
                trainer.max_epochs,
            )
            self.stopped = True
            trainer.should_stop = True


def check_settings(max_minutes: float | None, checkpoint: ModelCheckpoint | None) -> int | None:
    """The exit code for ``app.max_minutes_per_start`` (None when it is off); one line when it cannot work."""
    if max_minutes is None:
        return None
    if max_minutes <= 0:
        raise MnistAppError(f"app.max_minutes_per_start={max_minutes}: must be > 0 (or null: no limit)")
    if last_checkpoint_path(checkpoint) is None:
        raise MnistAppError(
            f"app.max_minutes_per_start={max_minutes} needs last.ckpt: keep the model_checkpoint callback "
            "with save_last: true and trainer.enable_checkpointing=true"
        )
    code = checkpoint_exit_code()
    if code is None:
        raise MnistAppError(
            f"app.max_minutes_per_start={max_minutes} but hydra.launcher.checkpoint_exit_code=null (restarts "
            "off): set one, or app.max_minutes_per_start=null"
        )
    return code
