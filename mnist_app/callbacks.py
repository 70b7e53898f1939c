"""What keeps Lightning's per-step cost low, measures speed and reports progress: the callbacks
(``conf/callbacks``) and the no-op profiler that the Trainer gets when ``trainer.profiler`` is null."""

from __future__ import annotations

import contextlib
import logging
import math
import time
from typing import Any

import lightning as L
import torch
from hydra_plugins.hydra_htcondor_launcher.reporting import report
from lightning.pytorch.callbacks import TQDMProgressBar
from lightning.pytorch.profilers import PassThroughProfiler

log = logging.getLogger(__name__)

_NO_OP = contextlib.nullcontext()


class NoProfiler(PassThroughProfiler):
    """Lightning's default (no profiling) without its cost: the Trainer enters ``profile()`` around every
    hook, about 80 times a step, and the default builds a generator-based context manager each time."""

    # Lightning types profile() as its generator-based context manager; any context manager does.
    def profile(self, action_name: str) -> contextlib.AbstractContextManager[None]:  # type: ignore[override]
        return _NO_OP


class ThrottledProgressBar(TQDMProgressBar):
    """Lightning's progress bar, redrawn every ``refresh_rate`` batches but at most every ``min_interval_s``.

    Each redraw reads the logged loss back from the device (a GPU sync) and formats the bar. At GPU speeds
    (~1,000 steps/s at batch 64) a fixed batch count would mean ~100 syncs and redraws a second.
    """

    def __init__(self, refresh_rate: int = 10, min_interval_s: float = 0.25, **kwargs: Any) -> None:
        super().__init__(refresh_rate=refresh_rate, **kwargs)
        self.min_interval_s = min_interval_s
        self._last_draw = -math.inf

    def due(self, current: int, total: float, now: float) -> bool:
        """Whether batch ``current`` (1-based) of ``total`` redraws the bar at time ``now``."""
        if current == total:
            return True
        return current % self.refresh_rate == 0 and now - self._last_draw >= self.min_interval_s

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        now = time.monotonic()
        if not self.due(batch_idx + 1, self.train_progress_bar.total, now):
            return
        self._last_draw = now
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)


class ThroughputTimer(L.Callback):
    """Training images per second, excluding validation and the first step (compilation, autotuning).

    The clock stops at each epoch's validation (or end), with a device sync there, so the numbers are true
    wall time on GPU too; ``first_step_s`` is the first training step alone (the compile time with
    ``device.compile=true``).
    """

    def __init__(self) -> None:
        self.train_time_s = 0.0
        self.train_images = 0
        self.first_step_s: float | None = None
        self._t0: float | None = None
        self._images = 0
        self._first_start: float | None = None

    @staticmethod
    def _sync(trainer: L.Trainer) -> None:
        device = trainer.strategy.root_device
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._sync(trainer)
        self._t0, self._images = time.perf_counter(), 0

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        if self.first_step_s is None and self._first_start is None:
            self._sync(trainer)
            self._first_start = time.perf_counter()

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if self.first_step_s is None and self._first_start is not None:
            self._sync(trainer)
            now = time.perf_counter()
            self.first_step_s = now - self._first_start
            self._t0, self._images = now, 0  # steady state starts after the first step
            return
        self._images += len(batch[1])

    def _stop(self, trainer: L.Trainer) -> None:
        if self._t0 is None:
            return
        self._sync(trainer)
        self.train_time_s += time.perf_counter() - self._t0
        self.train_images += self._images
        self._t0 = None

    def on_validation_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.sanity_checking:
            self._stop(trainer)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._stop(trainer)

    @property
    def images_per_sec(self) -> float:
        return self.train_images / self.train_time_s if self.train_time_s > 0 else float("nan")


class ReportMetric(L.Callback):
    """The optimized metric at the end of every validation epoch, as ``report(epochs, value)``: a sweeper
    that prunes (HTCondor launcher jobs, or a handler in-process) sees how a run is going. The step is the
    number of epochs trained, from 1 (Lightning's ``current_epoch`` + 1), so a pruner's resource counts
    epochs (ASHA's ``min_resource: 1`` judges a trial after its first epoch) and "pruned at epoch 3" means
    three epochs were trained. A test metric, known only after training, is reported by its validation
    counterpart (``test/acc`` -> ``val/acc``). Nobody listening (a plain run) costs nothing but the call."""

    def __init__(self, metric: str) -> None:
        self.metric = metric
        self.reported_metric = "val/" + metric.removeprefix("test/") if metric.startswith("test/") else metric
        self._missing_said = False

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # After the module's own epoch-end logging (a callback's on_validation_epoch_end runs before it);
        # one report per run, from rank 0.
        if trainer.sanity_checking or not trainer.is_global_zero:
            return
        value = trainer.callback_metrics.get(self.reported_metric)
        if value is None:
            if not self._missing_said:
                self._missing_said = True
                log.warning(
                    "%s is not logged at validation (logged: %s): nothing to report",
                    self.reported_metric,
                    ", ".join(sorted(trainer.callback_metrics)) or "none",
                )
            return
        report(trainer.current_epoch + 1, float(value))
