"""A tiny Hydra app with a synthetic objective, for the sweeper's tests (any Hydra app works the same).

    python objective.py -m hydra/sweeper=optuna_stream 'hydra.sweeper.params.x=interval(-5,5)'

It reports ``steps`` intermediate values (a curve that falls to its final value), sleeps ``sleep_s`` (a
run time that may depend on x: ``sleep_per_x``), fails when x > ``fail_above``, and returns its value (two
with ``multi``).
"""

import time

import hydra
from hydra_plugins.hydra_htcondor_launcher.reporting import report
from omegaconf import DictConfig


def objective(x: float, y: float) -> float:
    return (x - 2.0) ** 2 + (y + 1.0) ** 2


@hydra.main(version_base=None, config_path=".", config_name="config")
def main(cfg: DictConfig) -> object:
    x, y = float(cfg.x), float(cfg.y)
    if cfg.fail_above is not None and x > cfg.fail_above:
        raise ValueError(f"x={x} is above fail_above={cfg.fail_above}")
    value = objective(x, y)
    for step in range(cfg.steps):
        report(step, value + (cfg.steps - step))
        time.sleep(cfg.step_s)
    time.sleep(cfg.sleep_s + cfg.sleep_per_x * abs(x))
    if cfg.multi:
        return [value, x + y]
    return value


if __name__ == "__main__":
    main()
