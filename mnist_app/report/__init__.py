"""Sweep results people can read: ``summary.csv``, a ranked table in the log and a self-contained
``report.html`` in every sweep folder, rebuilt on demand by ``python -m mnist_app.report SWEEP_DIR``.

Light at import (no torch, no matplotlib): the Hydra callback is instantiated in every multirun.
"""

from __future__ import annotations

import logging
from pathlib import Path

from mnist_app.report.collect import NotASweepError, Sweep, load_sweep

__all__ = ["NotASweepError", "Sweep", "build_report", "load_sweep"]

log = logging.getLogger(__name__)


def build_report(sweep_dir: str | Path) -> Sweep:
    """Read ``sweep_dir`` and (re)write its ``summary.csv`` and ``report.html``. Raises ``NotASweepError``."""
    from mnist_app.report.render import write_all

    sweep = load_sweep(sweep_dir)
    write_all(sweep)
    return sweep
