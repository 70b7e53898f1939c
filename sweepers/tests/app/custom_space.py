"""A custom search space for the test app (hydra.sweeper.custom_search_space=custom_space.add_y)."""

import optuna
from omegaconf import DictConfig


def add_y(cfg: DictConfig, trial: optuna.trial.Trial) -> None:
    trial.suggest_float("y", -2.0, 0.0)
