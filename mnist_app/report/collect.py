"""Read a sweep folder into one row per job: swept parameters, status, final metrics, HTCondor facts.

Sources, all in the sweep folder: ``multirun.yaml`` (what was swept, the optimised metric), each job
folder's ``.hydra/`` (its overrides and number), ``metrics.json`` (the app's final metrics),
``job_status.json`` (written by the report's Hydra callback at the end of each job: done or failed, and the
error), Lightning's CSV log (the per-epoch curves), and for HTCondor sweeps what the launcher's reading
interface (``hydra_plugins.hydra_htcondor_launcher.view``) says of each job: its state, submissions, host,
times and files. The report has no event-log reader of its own: its job states are the launcher's.
"""

from __future__ import annotations

import csv
import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hydra_plugins.hydra_htcondor_launcher.view import JobState, JobView, SweepView, read_sweep
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)

MULTIRUN_YAML = "multirun.yaml"
JOB_STATUS = "job_status.json"
METRICS = "metrics.json"
OPTUNA_RESULTS = "optimization_results.yaml"
DONE, FAILED, RUNNING, PENDING = "done", "failed", "running", "pending"
# An HTCondor job may also be HELD, or DISCONNECTED: running, but HTCondor lost touch with its machine.
HELD, DISCONNECTED = "held", "disconnected"
# The report's status of an HTCondor job in each state of the launcher (removed jobs count as failed, as in
# the launcher's counts line).
STATUS_OF = {
    JobState.IDLE: PENDING,
    JobState.RUNNING: RUNNING,
    JobState.DISCONNECTED: DISCONNECTED,
    JobState.HELD: HELD,
    JobState.DONE: DONE,
    JobState.FAILED: FAILED,
    JobState.REMOVED: FAILED,
}
# Final metrics shown for every job (metrics.json keys), after the optimised one.
FINAL_METRICS = ("val/acc", "val/loss", "test/acc", "test/loss")


class NotASweepError(ValueError):
    """The folder is not a Hydra multirun (sweep) folder."""


@dataclass
class Job:
    num: int
    params: dict[str, Any]
    status: str
    job_dir: Path | None
    metrics: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    condor: JobView | None = None  # the launcher's view of an HTCondor job
    # Lightning's CSV log: validation accuracy per epoch, [(epoch, acc)].
    val_curve: list[tuple[int, float]] = field(default_factory=list)

    def metric(self, key: str) -> float | None:
        value = self.metrics.get(key)
        if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
            return None
        return float(value)


@dataclass
class Sweep:
    sweep_dir: Path
    swept: list[str]
    metric: str
    maximize: bool
    jobs: list[Job]
    on_htcondor: bool
    optuna: dict[str, Any] | None = None  # optimization_results.yaml, when the Optuna sweeper wrote it

    def ranked(self) -> list[Job]:
        """Jobs best first by the optimised metric; jobs without it last, in job order."""
        scored = [(value, j) for j in self.jobs if (value := j.metric(self.metric)) is not None]
        rest = [j for j in self.jobs if j.metric(self.metric) is None]
        scored.sort(key=lambda pair: -pair[0] if self.maximize else pair[0])  # stable: ties in job order
        return [j for _, j in scored] + rest

    def best(self) -> Job | None:
        ranked = self.ranked()
        return ranked[0] if ranked and ranked[0].metric(self.metric) is not None else None

    def counts(self) -> dict[str, int]:
        out = {DONE: 0, FAILED: 0, RUNNING: 0, HELD: 0, DISCONNECTED: 0, PENDING: 0}
        for job in self.jobs:
            out[job.status] += 1
        return out


def job_params(overrides: list[str]) -> dict[str, Any]:
    """``key=value`` overrides as a {key: value} dict (``+``/``++``/``~`` prefixes dropped)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    params: dict[str, Any] = {}
    for override in OverridesParser.create().parse_overrides(overrides):
        if override.is_delete():
            continue
        value = override.value()
        if not (isinstance(value, int | float | str | bool) or value is None):
            value = override.get_value_element_as_str()  # a list or dict value: as written
        params[override.key_or_group] = value
    return params


def swept_keys(multirun_cfg: DictConfig) -> list[str]:
    """The keys a sweep varies: sweep overrides on the command line (``a=1,2``, ``choice()``, ``range()``,
    ``interval()``) and the Optuna sweeper's ``hydra.sweeper.params``."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    keys: list[str] = []
    task = list(OmegaConf.select(multirun_cfg, "hydra.overrides.task", default=[]) or [])
    for override in OverridesParser.create().parse_overrides(task):
        if override.is_sweep_override():
            keys.append(override.key_or_group)
    params = OmegaConf.select(multirun_cfg, "hydra.sweeper.params", default=None)
    if isinstance(params, DictConfig):
        keys.extend(str(k) for k in params if str(k) not in keys)
    return keys


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _val_curve(job_dir: Path) -> list[tuple[int, float]]:
    """Validation accuracy per epoch from Lightning's CSVLogger file(s) in the job folder."""
    curve: dict[int, float] = {}
    for path in sorted(job_dir.rglob("metrics.csv")):
        try:
            with path.open(newline="") as f:
                for row in csv.DictReader(f):
                    acc, epoch = row.get("val/acc"), row.get("epoch")
                    if acc and epoch:
                        curve[int(float(epoch))] = float(acc)
        except (OSError, ValueError) as exc:
            log.warning("cannot read %s: %s", path, exc)
    return sorted(curve.items())


def _last_line(path: Path) -> str | None:
    """The last non-empty line of a job's stderr: its error when it died before Hydra's callback ran."""
    try:
        lines = [line.strip() for line in path.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return None
    return lines[-1] if lines else None


def _job_folders(sweep_dir: Path, htcondor_dir: Path) -> dict[int, Path]:
    """Job folders by job number (any ``hydra.sweep.subdir`` layout): those holding ``.hydra/hydra.yaml``,
    the launcher's own folder left out."""
    found: dict[int, Path] = {}
    for hydra_yaml in sweep_dir.rglob(".hydra/hydra.yaml"):
        job_dir = hydra_yaml.parent.parent
        if job_dir == sweep_dir or job_dir.is_relative_to(htcondor_dir):
            continue
        try:
            num = OmegaConf.select(OmegaConf.load(hydra_yaml), "hydra.job.num")
        except Exception as exc:
            log.warning("cannot read %s: %s", hydra_yaml, exc)
            continue
        if isinstance(num, int):
            found[num] = job_dir
    return found


def _condor_error(cj: JobView) -> str:
    """Why an HTCondor job failed without the job's own word for it (job_status.json)."""
    rec = cj.record
    if rec.state is JobState.REMOVED:
        removed = f"removed ({rec.abort_reason or 'no reason given'})"
        # A hold is usually why a job was removed: keep both.
        return f"{removed} after being held: {rec.hold_reason}" if rec.holds else removed
    detail = f"exit code {rec.exit_code}" if rec.signal is None else f"signal {rec.signal}"
    err = Path(cj.paths.stderr)
    last = _last_line(err)
    return f"HTCondor job ended ({detail}) without results" + (f"; {err.name}: {last}" if last else "")


def _own_status(job_dir: Path, cj: JobView | None) -> dict[str, Any] | None:
    """The job's job_status.json, unless an earlier submission of an HTCondor job wrote it (a re-run
    submitted the job again since: the file is stale until the new run ends)."""
    path = job_dir / JOB_STATUS
    status = _read_json(path)
    if status is None or cj is None or cj.submitted is None:
        return status
    try:
        # The event log's times are whole seconds: a file of this submission is never older than it.
        stale = path.stat().st_mtime < cj.submitted
    except OSError:
        return None
    return None if stale else status


def _condor_status(
    cj: JobView, status_file: dict[str, Any] | None, metrics: dict[str, Any]
) -> tuple[str, str | None]:
    """An HTCondor job's status (the launcher's state, STATUS_OF) and error. A job that ended with exit code 0
    without leaving any result (no status file, no metrics, no result file) failed."""
    status = STATUS_OF[cj.state]
    if not cj.state.final:
        return status, None
    if status == DONE:
        if status_file is None and not metrics and not Path(cj.paths.result).exists():
            return FAILED, _condor_error(cj)
        return DONE, None
    told = status_file is not None and status_file.get("status") == FAILED
    own = status_file.get("error") if status_file is not None and told else None
    return FAILED, own or _condor_error(cj)


def _sweep_config(sweep_dir: Path, folders: dict[int, Path], condor: SweepView) -> DictConfig:
    """The sweep's config: Hydra's ``multirun.yaml``, else (a sweep made without it) the first job's."""
    try:
        if (sweep_dir / MULTIRUN_YAML).is_file():
            cfg = OmegaConf.load(sweep_dir / MULTIRUN_YAML)
        elif folders:
            hydra_dir = folders[min(folders)] / ".hydra"
            # A job's hydra.overrides.task holds its own values: swept keys then come from what differs.
            cfg = OmegaConf.merge(
                OmegaConf.load(hydra_dir / "config.yaml"), OmegaConf.load(hydra_dir / "hydra.yaml")
            )
        elif condor.jobs:  # HTCondor jobs that all died before Hydra made their folders
            cfg = OmegaConf.create({})
        else:
            raise NotASweepError(
                f"{sweep_dir} is not a sweep folder: no {MULTIRUN_YAML} and no job folders (expected the "
                "folder of a `-m` run, e.g. outputs/sweeps/<date>/<time>)"
            )
    except NotASweepError:
        raise
    except Exception as exc:
        raise NotASweepError(f"{sweep_dir}: unreadable sweep config ({' '.join(str(exc).split())})") from None
    if not isinstance(cfg, DictConfig):
        raise NotASweepError(f"{sweep_dir}: its sweep config is not a mapping")
    return cfg


def load_sweep(sweep_dir: str | Path) -> Sweep:
    """The sweep in ``sweep_dir`` (finished, partial, failed or still running). Raises ``NotASweepError``."""
    sweep_dir = Path(sweep_dir).resolve()
    if not sweep_dir.is_dir():
        raise NotASweepError(f"{sweep_dir}: no such folder (expected a sweep folder holding {MULTIRUN_YAML})")
    condor = read_sweep(str(sweep_dir))
    if condor.jobs:  # an HTCondor sweep the launcher could not read whole: say so (a local one has no jobs)
        for note in condor.all_notes():
            log.warning("%s", note)
    folders = _job_folders(sweep_dir, Path(condor.htcondor_dir))
    cfg = _sweep_config(sweep_dir, folders, condor)
    metric = str(OmegaConf.select(cfg, "optimized_metric", default=None) or "test/acc")
    direction = OmegaConf.select(cfg, "hydra.sweeper.direction", default=None)
    if isinstance(direction, str):
        maximize = direction.lower().startswith("max")
    else:  # the basic sweeper has no direction: losses go down, everything else up
        maximize = "loss" not in metric

    nums = sorted(set(folders) | set(condor.jobs))
    swept = swept_keys(cfg)
    jobs = []
    for num in nums:
        job_dir = folders.get(num)
        cj = condor.jobs.get(num)
        params: dict[str, Any] = {}
        metrics: dict[str, Any] = {}
        status_file: dict[str, Any] | None = None
        curve: list[tuple[int, float]] = []
        if job_dir is not None:
            try:
                overrides = OmegaConf.load(job_dir / ".hydra" / "overrides.yaml")
                params = job_params([str(o) for o in overrides])
            except Exception as exc:
                log.warning("cannot read the overrides of job %d: %s", num, exc)
            metrics = _read_json(job_dir / METRICS) or {}
            status_file = _own_status(job_dir, cj)
            curve = _val_curve(job_dir)
        if cj is not None:
            status, error = _condor_status(cj, status_file, metrics)
        elif status_file is not None:
            status = DONE if status_file.get("status") == DONE else FAILED
            error = status_file.get("error")
        else:  # a local job without its status file yet: running, unless it wrote its metrics
            status, error = (DONE if metrics else RUNNING), None
        jobs.append(Job(num, params, status, job_dir, metrics, error, cj, curve))
    if not swept:  # e.g. a sweep whose multirun.yaml lacks the overrides: what differs between jobs
        keys = sorted({k for j in jobs for k in j.params})
        swept = [k for k in keys if len({repr(j.params.get(k)) for j in jobs}) > 1]
    optuna = None
    if (sweep_dir / OPTUNA_RESULTS).is_file():
        loaded = OmegaConf.to_container(OmegaConf.load(sweep_dir / OPTUNA_RESULTS))
        optuna = loaded if isinstance(loaded, dict) else None
    return Sweep(sweep_dir, swept, metric, maximize, jobs, bool(condor.jobs), optuna)  # type: ignore[arg-type]
