"""The LightningModule and DataModule of the app, and a callback that times training throughput."""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Callable
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import TQDMProgressBar
from lightning.pytorch.profilers import PassThroughProfiler
from torch import nn

from mnist_app.data import MnistArrays, make_loader, normalize

log = logging.getLogger(__name__)


class MnistClassifier(L.LightningModule):
    """Wraps a ``net`` (log-probabilities out) with NLL loss, accuracy, and configurable optimizer/scheduler.

    Batches arrive normalised (``MnistDataModule`` converts the uint8 images on the training device).
    Only the training loss is logged on step (and only on steps that a logger or the progress bar reads);
    accuracy is averaged on the device and reduced once per epoch, so no step forces a device sync.
    """

    def __init__(
        self,
        net: nn.Module,
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[..., Any] | None = None,
        scheduler_interval: str = "epoch",
        channels_last: bool = False,
        hparams: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.net = net
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        if scheduler_interval not in ("epoch", "step"):
            raise ValueError(f"scheduler_interval must be 'epoch' or 'step', got {scheduler_interval!r}")
        self.scheduler_interval = scheduler_interval
        self.channels_last = channels_last
        self._log_every = 1
        # Kept out of nn.Module registration so checkpoints hold the plain net's keys.
        self.__dict__["_compiled"] = None
        if channels_last:
            self.net = self.net.to(memory_format=torch.channels_last)
        self.save_hyperparameters(hparams or {})

    def __setattr__(self, name: str, value: Any) -> None:
        # Lightning sets `_current_fx_name` around every hook it calls, about 40 times a step; nn.Module's
        # generic __setattr__ (parameter/buffer/module checks) made that ~0.1 ms of host time per step, which
        # a GPU step at batch 64 cannot hide. A plain attribute needs none of those checks.
        if name == "_current_fx_name":
            object.__setattr__(self, name, value)
        else:
            super().__setattr__(name, value)

    def compile_net(self, mode: str | None = None) -> None:
        """Use ``torch.compile`` for forward passes (compiled lazily on the first step)."""
        self.__dict__["_compiled"] = torch.compile(self.net, mode=mode)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        compiled = self.__dict__["_compiled"]
        return compiled(x) if compiled is not None else self.net(x)

    def on_train_start(self) -> None:
        # Each self.log() costs Lightning ~1-2 ms of bookkeeping (5% of a CPU step at batch 64), so the
        # training loss is logged only on the steps a logger writes or the progress bar redraws.
        trainer = self.trainer
        every = max(int(trainer.log_every_n_steps), 1)
        bar = trainer.progress_bar_callback
        refresh = int(getattr(bar, "refresh_rate", 0) or 0) if bar is not None else 0
        self._log_every = math.gcd(every, refresh) if refresh > 0 else every

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch
        loss = F.nll_loss(self(x), y)
        if (self.global_step + 1) % self._log_every == 0:
            self.log("train/loss", loss, on_step=True, on_epoch=False, prog_bar=True, batch_size=len(y))
        return loss

    def _evaluate(self, batch: tuple[torch.Tensor, torch.Tensor], stage: str) -> None:
        x, y = batch
        out = self(x)
        loss = F.nll_loss(out, y)
        acc = (out.argmax(dim=1) == y).float().mean()
        n = len(y)
        self.log(f"{stage}/loss", loss, on_step=False, on_epoch=True, batch_size=n)
        self.log(f"{stage}/acc", acc, on_step=False, on_epoch=True, prog_bar=True, batch_size=n)

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self._evaluate(batch, "val")

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self._evaluate(batch, "test")

    def configure_optimizers(self) -> Any:
        optimizer = self.optimizer_factory(self.parameters())
        if self.scheduler_factory is None:
            return optimizer
        kwargs = {}
        # Schedules over the whole run (OneCycleLR) say `total_steps: null`; Lightning knows the length.
        keywords = getattr(self.scheduler_factory, "keywords", {})
        if "total_steps" in keywords and keywords["total_steps"] is None:
            # At least a few steps: OneCycleLR divides by its warm-up length (a 1-epoch try of a large batch
            # on 3,600 images is only 4 steps); a longer schedule than the run is harmless.
            kwargs["total_steps"] = max(int(self.trainer.estimated_stepping_batches), 16)
        scheduler = self.scheduler_factory(optimizer, **kwargs)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": self.scheduler_interval},
        }


class MnistDataModule(L.LightningDataModule):
    """Serves the three splits of ``MnistArrays`` as uint8 batches and normalises them on the training device.

    With ``data_on_device`` (and no workers) each split is moved to the training device once, so per step
    there is neither a host-to-device copy nor Lightning's generic batch walk.
    """

    def __init__(
        self,
        arrays: MnistArrays,
        batch_size: int = 64,
        test_batch_size: int = 1000,
        num_workers: int = 0,
        pin_memory: bool = False,
        data_on_device: bool = True,
        seed: int = 0,
        mean: float = 0.1307,
        std: float = 0.3081,
        channels_last: bool = False,
    ) -> None:
        super().__init__()
        self.mean, self.std, self.channels_last = mean, std, channels_last
        self.arrays = arrays
        self.batch_size, self.test_batch_size = batch_size, test_batch_size
        self.num_workers, self.pin_memory = num_workers, pin_memory
        self.data_on_device, self.seed = data_on_device, seed
        self._loaders: dict[str, Any] = {}

    def _device(self) -> torch.device | None:
        if self.num_workers > 0 or not self.data_on_device or self.trainer is None:
            return None
        device = self.trainer.strategy.root_device
        return device if device.type != "cpu" else None

    def _loader(self, split: str) -> Any:
        if split not in self._loaders:
            a = self.arrays
            images, labels = {
                "train": (a.train_images, a.train_labels),
                "val": (a.val_images, a.val_labels),
                "test": (a.test_images, a.test_labels),
            }[split]
            train = split == "train"
            self._loaders[split] = make_loader(
                images,
                labels,
                self.batch_size if train else self.test_batch_size,
                shuffle=train,
                seed=self.seed,
                num_workers=self.num_workers,
                pin_memory=self.pin_memory,
                device=self._device(),
            )
        return self._loaders[split]

    def train_dataloader(self) -> Any:
        return self._loader("train")

    def val_dataloader(self) -> Any:
        return self._loader("val")

    def test_dataloader(self) -> Any:
        return self._loader("test")

    def transfer_batch_to_device(self, batch: Any, device: torch.device, dataloader_idx: int) -> Any:
        # Already on the training device (the in-memory path): nothing to move.
        if isinstance(batch, (tuple, list)) and all(
            isinstance(t, torch.Tensor) and t.device == device for t in batch
        ):
            return batch
        return super().transfer_batch_to_device(batch, device, dataloader_idx)

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        images, labels = batch
        if images.dtype == torch.uint8:
            images = normalize(images, self.mean, self.std, self.channels_last)
        return images, labels


_NO_OP = contextlib.nullcontext()


class NoProfiler(PassThroughProfiler):
    """Lightning's default (no profiling) without its cost: the Trainer enters ``profile()`` around every
    hook, about 80 times a step, and the default builds a generator-based context manager each time."""

    def profile(self, action_name: str) -> contextlib.AbstractContextManager[None]:
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
