"""``SweepReport``: the Hydra callback that leaves a readable result in every sweep folder.

At the end of each job (in the job's process: locally, or on the HTCondor worker) it writes
``job_status.json`` into the job folder: done or failed, and the error's first line, which otherwise only
reaches the console. At the end of the multirun it writes ``summary.csv`` and ``report.html`` and logs the
ranked table. Hydra skips ``on_multirun_end`` when a job fails (the sweeper re-raises its error), so the
report is then written at exit.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
from pathlib import Path
from typing import Any

from hydra.core.utils import JobReturn, JobStatus
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from mnist_app.report.collect import DONE, FAILED, JOB_STATUS, MULTIRUN_YAML

log = logging.getLogger(__name__)


def _first_line(exc: BaseException) -> str:
    lines = [line for line in str(exc).splitlines() if line.strip()]
    return f"{type(exc).__name__}: {lines[0].strip()}" if lines else type(exc).__name__


class SweepReport(Callback):
    """Hydra callback (``hydra.callbacks``): summary.csv, the log table and report.html of each multirun."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self._sweep_dir: Path | None = None
        self._written = False

    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        if not self.enabled or config.hydra.mode != RunMode.MULTIRUN:  # a single run has no sweep folder
            return
        out_dir = config.hydra.runtime.output_dir
        if not out_dir or not os.path.isdir(out_dir):
            return
        record: dict[str, Any] = {"job": config.hydra.job.num, "status": DONE, "error": None}
        if job_return.status != JobStatus.COMPLETED:
            record["status"] = FAILED
            try:
                _ = job_return.return_value  # re-raises the job's exception (the public way to get it)
            except BaseException as exc:
                record["error"] = _first_line(exc)
        else:
            value = job_return.return_value
            record["return_value"] = value if isinstance(value, int | float | str | bool) else repr(value)
        path = Path(out_dir) / JOB_STATUS
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(json.dumps(record, indent=2) + "\n")
        tmp.replace(path)

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        if not self.enabled:
            return
        self._sweep_dir = Path(str(config.hydra.sweep.dir)).absolute()
        self._written = False
        # Hydra's basic sweeper saves the sweep's config as multirun.yaml, the Optuna sweeper does not: the
        # report reads what was swept and the optimised metric from it (same content as the basic sweeper's).
        multirun = self._sweep_dir / MULTIRUN_YAML
        if not multirun.exists():
            self._sweep_dir.mkdir(parents=True, exist_ok=True)
            tmp = multirun.with_name(f".{multirun.name}.tmp")
            OmegaConf.save(config, tmp)
            tmp.replace(multirun)
        atexit.register(self._at_exit)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        if self.enabled:
            self._write()

    def _at_exit(self) -> None:
        # A failed job ends the multirun with its exception: Hydra never calls on_multirun_end.
        if not self._written:
            self._write()

    def _write(self) -> None:
        if self._sweep_dir is None or not self._sweep_dir.is_dir():
            return
        self._written = True
        from mnist_app.report import NotASweepError, build_report
        from mnist_app.report.render import REPORT_HTML, table_text

        try:
            sweep = build_report(self._sweep_dir)
        except NotASweepError as err:
            log.warning("no sweep report: %s", err)
            return
        except Exception:  # the report must never hide the sweep's own outcome
            log.exception("could not write the sweep report of %s", self._sweep_dir)
            return
        log.info("%s\nreport: %s", table_text(sweep), self._sweep_dir / REPORT_HTML)
