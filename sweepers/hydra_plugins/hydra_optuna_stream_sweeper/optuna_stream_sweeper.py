"""The Hydra ``Sweeper`` plugin class. Light on purpose: Hydra imports this module at every start-up, so
Optuna and the streaming loop load only inside ``sweep`` (``_impl``)."""

from __future__ import annotations

from typing import Any

from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig


class OptunaStreamSweeper(Sweeper):
    """Runs an Optuna study with n_jobs trials in flight, pruning from the trials' reports, and continues
    the study stored in the sweep folder when the same command runs again."""

    def __init__(self, **params: Any) -> None:
        # Hydra passes the composed OptunaStreamSweeperConf field by field (sampler and pruner as configs
        # with a _target_, instantiated when the sweep starts).
        self.params = params
        self.impl: Any = None

    def setup(
        self,
        *,
        hydra_context: HydraContext,
        task_function: TaskFunction,
        config: DictConfig,
    ) -> None:
        from ._impl import StreamSweeperImpl

        self.impl = StreamSweeperImpl.create(
            self.params, hydra_context=hydra_context, task_function=task_function, config=config
        )

    def sweep(self, arguments: list[str]) -> None:
        assert self.impl is not None, "setup() first"
        self.impl.sweep(arguments)
