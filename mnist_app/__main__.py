"""``python -m mnist_app`` / ``mnist-app``: the Hydra entry point.

Thin on purpose: composing the config, ``--help`` and ``--cfg job`` import only Hydra and this package's light
modules; torch and Lightning load inside ``train``. ``main`` checks the overrides first (``mnist_app.cli``) so
that bad input gets one line instead of Hydra's multi-line report, then hands over to Hydra.
"""

from __future__ import annotations

import logging
import sys

import hydra
from omegaconf import DictConfig

from mnist_app.cli import override_error, register_help_resolver
from mnist_app.config import config_dir

log = logging.getLogger("mnist_app")

# conf/config.yaml's hydra.help.template lists the config groups through it.
register_help_resolver()


@hydra.main(version_base="1.3", config_path=str(config_dir()), config_name="config")
def run(cfg: DictConfig) -> float | None:
    """Train once and return ``cfg.optimized_metric`` (test accuracy by default) for sweepers.

    Bad input raises ``MnistAppError``, a ``CompactHydraException``: Hydra prints its message as one line and
    exits 1 (in a sweep, the launcher records it as the job's error).
    """
    from mnist_app.train import train

    metrics = train(cfg)
    value = metrics.get(cfg.optimized_metric)
    if value is None:
        log.warning(
            "optimized_metric=%s is not among the metrics (%s)", cfg.optimized_metric, ", ".join(metrics)
        )
        return None
    return float(value)


def main() -> None:
    """The command line: ``python -m mnist_app`` and the ``mnist-app`` script."""
    message = override_error(sys.argv[1:])
    if message is not None:
        # argparse's form and exit status for a usage error; nothing is composed or written.
        sys.stderr.write(f"mnist_app: error: {message}\n")
        sys.exit(2)
    run()


if __name__ == "__main__":
    main()
