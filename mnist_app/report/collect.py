"""Read a sweep folder into one row per job: swept parameters, status, final metrics, HTCondor facts.

Sources, all in the sweep folder: ``multirun.yaml`` (what was swept, the optimised metric), each job
folder's ``.hydra/`` (its overrides and number), ``metrics.json`` (the app's final metrics),
``job_status.json`` (written by the report's Hydra callback at the end of each job: done or failed, and the
error), Lightning's CSV log (the per-epoch curves), and for HTCondor sweeps what the launcher's reading
interface (``hydra_plugins.hydra_htcondor_launcher.view``) says of each job: its state, submissions, host,
times and files. The report has no event-log reader of its own: its job states are the launcher's.
A search's Optuna study (the streaming sweeper's journal in the sweep folder, or the storage its config
names) gives each job its trial: state (COMPLETE, PRUNED, FAIL, RUNNING), intermediate values and cause of
failure; trial number == job number.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import re
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
# A job whose Optuna trial the sweeper pruned (its HTCondor job removed, or its task stopped in-process):
# no failure, a decision of the search.
PRUNED = "pruned"
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
class Trial:
    """One trial of the sweep's Optuna study (trial number == job number)."""

    number: int
    state: str  # Optuna's TrialState name: COMPLETE, PRUNED, FAIL, RUNNING, WAITING
    values: list[float] | None = None  # a COMPLETE trial's objective value(s)
    intermediate: dict[int, float] = field(default_factory=dict)  # what the job reported, by step
    failure: str | None = None  # a FAIL's cause, as the sweeper recorded it
    started: float | None = None  # epoch seconds
    completed: float | None = None  # when the sweeper told the study it ended (a pruned one: pruned)

    @property
    def last_step(self) -> int | None:
        return max(self.intermediate) if self.intermediate else None

    @property
    def last_value(self) -> float | None:
        step = self.last_step
        return None if step is None else self.intermediate[step]

    def describe(self) -> str:
        """The state as the report's table shows it: a pruned trial with its last report."""
        step = self.last_step
        if self.state == "PRUNED" and step is not None:
            return f"PRUNED at step {step} ({_short_number(self.intermediate[step])})"
        if self.state == "COMPLETE" and self.values:
            return f"COMPLETE ({', '.join(_short_number(v) for v in self.values)})"
        if self.state == "RUNNING" and step is not None:  # how it is going
            return f"RUNNING (step {step}: {_short_number(self.intermediate[step])})"
        return self.state


def _short_number(value: float) -> str:
    return f"{value:.4g}"


@dataclass
class Study:
    """The sweep's Optuna study as read now."""

    name: str
    directions: list[str]  # "maximize" / "minimize", one per objective
    trials: list[Trial]  # by number
    # What the task returns, where the sweep's config names it (optimized_metric).
    objective: str | None = None

    def finished(self) -> list[Trial]:
        """Trials that ended (COMPLETE, PRUNED, FAIL) in the order they ended."""
        done = [t for t in self.trials if t.state in ("COMPLETE", "PRUNED", "FAIL")]
        return sorted(done, key=lambda t: (t.completed is None, t.completed or 0.0, t.number))


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
    trial: Trial | None = None  # its Optuna trial, when the sweep's study is readable

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
    study: Study | None = None  # the sweep's Optuna study, when it stored one

    def score(self, job: Job) -> float | None:
        """What ranks a job: the optimised metric it wrote, else (an app that writes no metrics.json) its
        COMPLETE trial's value in a single-objective study: what the task returned."""
        value = job.metric(self.metric)
        trial = job.trial
        if value is None and self.study is not None and len(self.study.directions) == 1 and trial is not None:
            if trial.state == "COMPLETE" and trial.values:
                return trial.values[0]
        return value

    def ranked(self) -> list[Job]:
        """Jobs best first by their score; jobs without one last, in job order."""
        scored = [(value, j) for j in self.jobs if (value := self.score(j)) is not None]
        rest = [j for j in self.jobs if self.score(j) is None]
        scored.sort(key=lambda pair: -pair[0] if self.maximize else pair[0])  # stable: ties in job order
        return [j for _, j in scored] + rest

    def best(self) -> Job | None:
        ranked = self.ranked()
        return ranked[0] if ranked and self.score(ranked[0]) is not None else None

    def counts(self) -> dict[str, int]:
        out = {DONE: 0, FAILED: 0, PRUNED: 0, RUNNING: 0, HELD: 0, DISCONNECTED: 0, PENDING: 0}
        for job in self.jobs:
            out[job.status] += 1
        return out


@dataclass
class Run:
    """One run of an HTCondor job on an execute slot (epoch seconds; ``end`` None: still on it)."""

    num: int  # the job
    slot: str  # the slot's name as the event log gave it (``slot1_3@node``)
    start: float
    end: float | None
    state: JobState  # RUNNING, or DISCONNECTED while HTCondor lost touch with the slot
    # What followed it (IDLE: evicted or requeued, HELD, DONE, FAILED, REMOVED...); None while it runs.
    then: JobState | None = None
    latest: bool = True  # a run of the job's latest submission (a re-run may have submitted it again)


@dataclass
class SlotRow:
    """One row of the slot view: runs one after another on one execute slot (in time order)."""

    label: str
    runs: list[Run]


# A dynamic slot carved out of a partitionable one: `slot1_3@node` is a share of `slot1@node`.
_DYNAMIC_SLOT = re.compile(r"^(?P<slot>slot\d+)_\d+@(?P<host>.+)$")


def _natural(text: str) -> list[Any]:
    """Sort key: slot2 before slot10."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text)]


def _slot_group(slot: str) -> str:
    match = _DYNAMIC_SLOT.match(slot)
    return f"{match['slot']}@{match['host']}" if match else slot


def slot_rows(sweep: Sweep) -> list[SlotRow]:
    """Every run of the sweep's HTCondor jobs, one row per execute slot, so that job after job on the same
    slot shows how the sweep kept it busy. A static slot is one row. The dynamic slots of a partitionable
    slot get a new name per claim (slot1_1, slot1_2, ...), so they are packed into rows: a run goes on the
    first row of its partitionable slot that is free when it starts (rows ``slot1@node #1``, ``#2``, ...:
    as many as runs overlapped there)."""
    runs: list[Run] = []
    for job in sweep.jobs:
        if job.condor is None:
            continue
        for attempt in job.condor.attempts:
            timeline = attempt.timeline
            for i, seg in enumerate(timeline):
                if seg.slot is not None:
                    # A removal of a running job logs an eviction first, in the same second: its end is
                    # the removal.
                    after = [x for x in timeline[i + 1 :] if x.state.final or x.end != x.start]
                    then = after[0].state if after else None
                    latest = attempt is job.condor.latest
                    runs.append(Run(job.num, seg.slot, seg.start, seg.end, seg.state, then, latest))
    groups: dict[str, list[list[Run]]] = {}
    for run in sorted(runs, key=lambda r: (r.start, r.num)):
        lanes = groups.setdefault(_slot_group(run.slot), [])
        # A run's next stretch (disconnected, then reconnected) stays on its row; else the first row whose
        # last run ended.
        same = [lane for lane in lanes if lane[-1].num == run.num and lane[-1].slot == run.slot]
        free = [lane for lane in lanes if lane[-1].end is not None and lane[-1].end <= run.start]
        if same and same[0][-1].end == run.start:
            same[0].append(run)
        elif free:
            free[0].append(run)
        else:
            lanes.append([run])
    rows = []
    for group in sorted(groups, key=_natural):
        lanes = groups[group]
        for k, lane in enumerate(lanes, 1):
            rows.append(SlotRow(group if len(lanes) == 1 else f"{group} #{k}", lane))
    return rows


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


def _epoch(when: Any) -> float | None:
    return None if when is None else float(when.timestamp())


def read_study(sweep_dir: Path, cfg: DictConfig) -> Study | None:
    """The study the sweep's Optuna sweeper stored (found from the sweep's config as the sweeper finds it:
    ``hydra.sweeper.storage``, ``study_name``), or None: no study stored (another sweeper, or an Optuna
    sweeper that kept it in memory), or one that cannot be read (said in the log)."""
    try:
        from hydra_plugins.hydra_optuna_stream_sweeper.study import load_study
    except ImportError:  # the streaming sweeper is not installed: no study to read
        return None
    try:
        loaded = load_study(sweep_dir, cfg)
        if loaded is None:
            return None
        frozen = loaded.get_trials(deepcopy=False)
    except Exception as exc:
        log.warning("cannot read the Optuna study of %s: %s", sweep_dir, " ".join(str(exc).split()))
        return None
    from hydra_plugins.hydra_optuna_stream_sweeper.study import ATTR_FAILURE

    trials = [
        Trial(
            number=t.number,
            state=t.state.name,
            values=None if t.values is None else [float(v) for v in t.values],
            intermediate={int(k): float(v) for k, v in sorted(t.intermediate_values.items())},
            failure=None if t.user_attrs.get(ATTR_FAILURE) is None else str(t.user_attrs[ATTR_FAILURE]),
            started=_epoch(t.datetime_start),
            completed=_epoch(t.datetime_complete),
        )
        for t in frozen
    ]
    return Study(loaded.study_name, [d.name.lower() for d in loaded.directions], trials)


def _with_trial(status: str, error: str | None, trial: Trial | None, guessed: bool) -> tuple[str, str | None]:
    """A job's status and error once its trial is known: a pruned trial's ended job is PRUNED, not failed;
    a FAIL trial's job failed, with the sweeper's cause where the job itself left none. ``guessed``: the
    status is a guess (a local job without its status file: running), which the study overrules."""
    if trial is None:
        return status, error
    ended = status in (DONE, FAILED) or (guessed and status == RUNNING)
    if trial.state == "PRUNED" and ended:
        return PRUNED, None
    if trial.state == "FAIL" and ended:
        return FAILED, error or trial.failure
    return status, error


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
    if OmegaConf.is_list(direction) and len(direction) == 1:  # a one-objective study given as a list
        direction = direction[0]
    if isinstance(direction, str):
        maximize = direction.lower().startswith("max")
    else:  # the basic sweeper has no direction: losses go down, everything else up
        maximize = "loss" not in metric

    study = read_study(sweep_dir, cfg)
    if study is not None and OmegaConf.select(cfg, "optimized_metric", default=None) is not None:
        study.objective = metric
    trials = {t.number: t for t in study.trials} if study is not None else {}
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
        trial = trials.get(num)
        status, error = _with_trial(status, error, trial, guessed=cj is None and status_file is None)
        jobs.append(Job(num, params, status, job_dir, metrics, error, cj, curve, trial))
    if not swept:  # e.g. a sweep whose multirun.yaml lacks the overrides: what differs between jobs
        keys = sorted({k for j in jobs for k in j.params})
        swept = [k for k in keys if len({repr(j.params.get(k)) for j in jobs}) > 1]
    optuna = None
    if (sweep_dir / OPTUNA_RESULTS).is_file():
        loaded = OmegaConf.to_container(OmegaConf.load(sweep_dir / OPTUNA_RESULTS))
        optuna = loaded if isinstance(loaded, dict) else None
    return Sweep(sweep_dir, swept, metric, maximize, jobs, bool(condor.jobs), optuna, study)  # type: ignore[arg-type]
