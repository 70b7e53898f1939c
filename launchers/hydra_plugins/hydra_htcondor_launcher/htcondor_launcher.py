"""The Hydra ``Launcher`` plugin class. Light on purpose: Hydra imports this module at every start-up, so the
HTCondor bindings, cloudpickle and the launching logic load only inside ``launch``."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from hydra.core.utils import JobReturn
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf

from .config import HTCondorLauncherConf

log = logging.getLogger(__name__)


class HTCondorLauncher(Launcher):
    """Runs every job of a sweep batch as one proc of one HTCondor cluster and returns the real JobReturns."""

    def __init__(self, **params: Any) -> None:
        # Hydra passes the composed (type-checked) HTCondorLauncherConf field by field; interpolations such
        # as ${hydra.sweep.dir} are already resolved. Lists and dicts become plain Python values.
        plain: dict[str, Any] = {
            key: OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value
            for key, value in params.items()
        }
        self.conf = HTCondorLauncherConf(**plain)
        self.config: DictConfig | None = None
        self.task_function: TaskFunction | None = None
        self.hydra_context: HydraContext | None = None
        # The sweep's manifest (_manifest.Manifest) once the first batch (or Sweep) opened it: later ones of
        # the same sweep add to it (resume=false starts afresh once per process, not at every batch).
        self.manifest: Any = None

    def setup(
        self,
        *,
        hydra_context: HydraContext,
        task_function: TaskFunction,
        config: DictConfig,
    ) -> None:
        self.config = config
        self.hydra_context = hydra_context
        self.task_function = task_function

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        """The batch submitted, waited for and returned: the sweep interface (``sweep.Sweep``) driven to
        completion."""
        from . import _sweep

        return _sweep.launch(self, job_overrides, initial_job_idx)
