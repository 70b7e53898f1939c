"""``HParamsSummary``: a Lightning callback that gives TensorBoard's HParams dashboard one entry per job,
with the job's command-line parameters (what a sweep varies) and its final metrics, logged at the end of
training through Lightning's ``TensorBoardLogger``.

TensorBoard keeps only the first HParams summary of a run, so Lightning's own one at fit start (a placeholder
``hp_metric`` of -1) would hide this one: ``conf/logger/tensorboard.yaml`` sets the logger's public
``default_hp_metric: false``, which makes Lightning write none.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import lightning as L

log = logging.getLogger(__name__)

DEFAULT_METRICS = ("val/acc", "val/loss", "test/acc", "test/loss")
# Command-line overrides that choose where or how a job runs, not what it learns.
_NOT_HPARAMS = ("hydra.", "hydra/", "launcher", "hparams_search", "callbacks.")


def job_overrides_params() -> dict[str, Any]:
    """The running Hydra job's own overrides as {key: value} (a sweep job's swept values among them)."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return {}
    from mnist_app.report.collect import job_params

    params = job_params([str(o) for o in HydraConfig.get().overrides.task])
    return {k: v for k, v in params.items() if not k.startswith(_NOT_HPARAMS)}


def _tb_value(value: Any) -> int | float | str | bool:
    return value if isinstance(value, int | float | str | bool) else str(value)


class HParamsSummary(L.Callback):
    """Log ``params`` (default: the Hydra job's overrides) and the final ``metrics`` as an HParams summary.

    ``after_test``: log after ``trainer.test`` (with the test metrics) rather than after ``fit``.
    """

    def __init__(
        self,
        metrics: Sequence[str] = DEFAULT_METRICS,
        after_test: bool = True,
        params: dict[str, Any] | None = None,
    ) -> None:
        self.metrics = list(metrics)
        self.after_test = after_test
        self.params = params
        self._fit_metrics: dict[str, float] = {}

    @staticmethod
    def _tensorboard_loggers(trainer: L.Trainer) -> list[Any]:
        try:
            from lightning.pytorch.loggers import TensorBoardLogger
        except ImportError:
            return []
        return [lg for lg in trainer.loggers if isinstance(lg, TensorBoardLogger)]

    def _collect(self, trainer: L.Trainer) -> dict[str, float]:
        out = {}
        for key in self.metrics:
            value = trainer.callback_metrics.get(key)
            if value is not None:
                out[key] = float(value)
        return out

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._fit_metrics = self._collect(trainer)
        if not self.after_test:
            self._log(trainer, self._fit_metrics)

    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.after_test:
            self._log(trainer, {**self._fit_metrics, **self._collect(trainer)})

    def _log(self, trainer: L.Trainer, metrics: dict[str, float]) -> None:
        loggers = self._tensorboard_loggers(trainer)
        params = self.params if self.params is not None else job_overrides_params()
        if not loggers or not metrics:
            return
        if not params:  # TensorBoard lists a session by its parameters: name the job at least
            params = {"run": str(trainer.default_root_dir)}
        params = {k: _tb_value(v) for k, v in params.items()}
        for tb in loggers:
            tb.log_hyperparams(params, metrics=metrics, step=trainer.global_step)
            tb.save()
        log.debug("HParams summary: %s -> %s", params, metrics)
