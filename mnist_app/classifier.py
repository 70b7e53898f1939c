"""The LightningModule of the app: a ``net`` (log-probabilities out) trained with NLL loss."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn


class MnistClassifier(L.LightningModule):
    """Wraps a ``net`` with NLL loss, accuracy, and configurable optimizer/scheduler.

    Batches arrive normalised (``MnistDataModule`` converts the uint8 images on the training device).
    Only the training loss is logged on step (and only on steps that a logger or the progress bar reads);
    accuracy is averaged on the device and reduced once per epoch, so no step forces a device sync.
    ``torch.compile(model)`` compiles it as Lightning documents (``trainer.fit`` unwraps the compiled module).

    Built from a ``conf/model/*.yaml`` (its ``_target_``): the keyword arguments are that file's keys.
    ``name``, ``lr`` and ``batch_size`` are the recipe's: the config interpolates them into ``optimizer``,
    ``scheduler`` and ``data.batch_size``; the module only accepts them. ``hparams`` (the run's whole resolved
    config, given by ``train``) is what ``save_hyperparameters`` records: loggers' hparams and checkpoints
    hold it.
    """

    def __init__(
        self,
        net: nn.Module,
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[..., Any] | None = None,
        scheduler_interval: str = "epoch",
        channels_last: bool = False,
        name: str | None = None,
        lr: float | None = None,
        batch_size: int | None = None,
        hparams: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.net = net
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.scheduler_interval = scheduler_interval
        self.channels_last = channels_last
        self._log_every = 1
        if channels_last:
            self.net = self.net.to(memory_format=torch.channels_last)
        self.save_hyperparameters(hparams or {})

    def __setattr__(self, name: str, value: Any) -> None:
        # Lightning sets `_current_fx_name` around every hook it calls, about 40 times a step; nn.Module's
        # generic __setattr__ (parameter/buffer/module checks) made that ~0.1 ms of host time per step, which
        # a GPU step at batch 64 cannot hide. A plain attribute needs none of those checks.
        # tests/test_app_train.py counts Lightning's writes of this name in a real fit: it fails if they stop.
        if name == "_current_fx_name":
            object.__setattr__(self, name, value)
        else:
            super().__setattr__(name, value)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.net(x)
        return out

    def on_train_start(self) -> None:
        # Each self.log() costs Lightning ~1-2 ms of bookkeeping (5% of a CPU step at batch 64), so the
        # training loss is logged only on the steps a logger writes or the progress bar redraws.
        trainer = self.trainer
        # Set on the Trainer by Lightning's logger connector, not declared on the class; every training test
        # fails if it goes.
        every = max(int(trainer.log_every_n_steps), 1)  # type: ignore[attr-defined]
        bar = trainer.progress_bar_callback
        refresh = int(getattr(bar, "refresh_rate", 0) or 0) if bar is not None else 0
        self._log_every = math.gcd(every, refresh) if refresh > 0 else every

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch
        loss = F.nll_loss(self(x), y)
        self._log_train_loss(loss, len(y))
        return loss

    # The logging helpers stay out of torch.compile's graph (device.compile): self.log is Python bookkeeping,
    # and the step-count test would make a compiled training_step recompile at every step. Eager: ~0.4 us.
    @torch.compiler.disable
    def _log_train_loss(self, loss: torch.Tensor, n: int) -> None:
        if (self.global_step + 1) % self._log_every == 0:
            self.log("train/loss", loss, on_step=True, on_epoch=False, prog_bar=True, batch_size=n)

    @torch.compiler.disable
    def _log_eval(self, stage: str, loss: torch.Tensor, acc: torch.Tensor, n: int) -> None:
        self.log(f"{stage}/loss", loss, on_step=False, on_epoch=True, batch_size=n)
        self.log(f"{stage}/acc", acc, on_step=False, on_epoch=True, prog_bar=True, batch_size=n)

    def _evaluate(self, batch: tuple[torch.Tensor, torch.Tensor], stage: str) -> None:
        x, y = batch
        out = self(x)
        loss = F.nll_loss(out, y)
        acc = (out.argmax(dim=1) == y).float().mean()
        self._log_eval(stage, loss, acc, len(y))

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
