"""The streaming search: an Optuna study with n_jobs trials in flight, told as each one ends.

The study is the state: it lives in its storage (Optuna's journal file in the sweep folder by default), so
running the same command again continues it. Trial number == ``hydra.job.num`` (both count from 0 in the
order trials are asked), which names the job of a trial across restarts: a RUNNING trial of an earlier run
is re-attached to its job (``Runner.reattach``), or told FAIL when the job is lost.
"""

from __future__ import annotations

import functools
import logging
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import optuna
from hydra.core.plugins import Plugins
from hydra.core.utils import JobReturn, JobStatus
from hydra.errors import CompactHydraException
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from hydra.utils import get_method
from hydra_plugins.hydra_htcondor_launcher._contract import write_atomic
from omegaconf import DictConfig, ListConfig, OmegaConf
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.storages import BaseStorage
from optuna.storages.journal import JournalFileBackend, JournalStorage
from optuna.trial import Trial, TrialState

from . import _space
from ._runners import Ended, Runner, make_runner
from .study import ATTR_FAILURE, ATTR_JOB, ATTR_LOST, ATTR_OVERRIDES, is_url, storage_location, study_name

log = logging.getLogger(__name__)

# The best trial's summary in the sweep folder (the study's journal and the trials' user attributes: .study).
RESULTS_FILE = "optimization_results.yaml"
DIRECTIONS = ("minimize", "maximize")


class SweeperConfigError(CompactHydraException):
    """A bad value of hydra.sweeper.* (one line: the value and what is accepted)."""


class SearchStoppedError(CompactHydraException):
    """The search stopped: too many failed trials, or nothing to report as best."""


def _one_line(text: object) -> str:
    return " ".join(str(text).split())


def _directions(direction: Any) -> list[str]:
    items = list(direction) if isinstance(direction, list | tuple | ListConfig) else [direction]
    names = [getattr(d, "name", d) for d in items]  # hydra-optuna-sweeper's Direction enum, or a str
    if not names or any(str(n).lower() not in DIRECTIONS for n in names):
        shown = OmegaConf.to_container(direction) if OmegaConf.is_config(direction) else direction
        raise SweeperConfigError(
            f"hydra.sweeper.direction={shown!r}: accepted: minimize, maximize, or a list of them (one per "
            "objective)"
        )
    return [str(n).lower() for n in names]


@dataclass
class Settings:
    """hydra.sweeper's values, checked."""

    sampler: Any
    pruner: optuna.pruners.BasePruner
    directions: list[str]
    storage: str | None
    study_name: str | None
    n_trials: int
    n_jobs: int
    max_failure_rate: float
    step_name: str
    params: dict[str, Any] | None
    custom_search_space: Any

    @classmethod
    def check(cls, params: Mapping[str, Any]) -> Settings:
        def whole(key: str, least: int) -> int:
            value = params.get(key)
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise SweeperConfigError(f"hydra.sweeper.{key}={value!r}: accepted: an integer >= {least}")
            return value

        rate = params.get("max_failure_rate", 0.0)
        if isinstance(rate, bool) or not isinstance(rate, int | float) or not 0.0 <= rate <= 1.0:
            raise SweeperConfigError(f"hydra.sweeper.max_failure_rate={rate!r}: accepted: a number in [0, 1]")
        pruner = params.get("pruner")
        if pruner is None:
            pruner = optuna.pruners.NopPruner()
        if not isinstance(pruner, optuna.pruners.BasePruner):
            raise SweeperConfigError(
                f"hydra.sweeper.pruner={pruner!r}: accepted: hydra/sweeper/pruner=none, asha, median or "
                "hyperband (or a config whose _target_ is an optuna.pruners class)"
            )
        directions = _directions(params.get("direction", "minimize"))
        if len(directions) > 1 and not isinstance(pruner, optuna.pruners.NopPruner):
            raise SweeperConfigError(
                f"hydra.sweeper.pruner={type(pruner).__name__} with {len(directions)} directions: Optuna "
                "prunes single-objective studies only; accepted: hydra/sweeper/pruner=none"
            )
        storage = params.get("storage")
        if storage is not None and (not isinstance(storage, str) or not storage.strip()):
            raise SweeperConfigError(
                f"hydra.sweeper.storage={storage!r}: accepted: null (a journal file in the sweep folder), an "
                "Optuna storage URL (sqlite:///study.db) or a journal file's path"
            )
        study_name = params.get("study_name")
        step_name = params.get("step_name", "step")
        if not isinstance(step_name, str) or not step_name.strip():
            raise SweeperConfigError(
                f"hydra.sweeper.step_name={step_name!r}: accepted: a word for what a report's step counts "
                "(step, epoch, ...)"
            )
        custom = params.get("custom_search_space")
        extender = None
        if custom:
            try:
                extender = get_method(custom)
            except Exception as err:
                raise SweeperConfigError(
                    f"hydra.sweeper.custom_search_space={custom!r}: {_one_line(err)}; accepted: the dotpath "
                    "of a callable (cfg, trial) -> None"
                ) from None
        raw = params.get("params")
        return cls(
            sampler=params.get("sampler"),
            pruner=pruner,
            directions=directions,
            storage=storage,
            study_name=None if study_name is None else str(study_name),
            n_trials=whole("n_trials", 1),
            n_jobs=whole("n_jobs", 1),
            max_failure_rate=float(rate),
            step_name=step_name.strip(),
            params=OmegaConf.to_container(raw) if OmegaConf.is_config(raw) else raw,  # type: ignore[arg-type]
            custom_search_space=extender,
        )


def open_storage(storage: str | None, sweep_dir: str) -> tuple[str | BaseStorage, str]:
    """The study's storage and how to name it (for the log and the dashboard): a URL as it is, else a
    journal file (storage: null -> the sweep folder's)."""
    path = storage_location(storage, sweep_dir)
    if is_url(path):
        return path, path
    os.makedirs(os.path.dirname(path), exist_ok=True)
    return JournalStorage(JournalFileBackend(path)), path


def _suggest(trial: Trial, name: str, dist: BaseDistribution) -> None:
    if isinstance(dist, FloatDistribution):
        trial.suggest_float(name, dist.low, dist.high, step=dist.step, log=dist.log)
    elif isinstance(dist, IntDistribution):
        trial.suggest_int(name, dist.low, dist.high, step=dist.step, log=dist.log)
    elif isinstance(dist, CategoricalDistribution):
        trial.suggest_categorical(name, dist.choices)
    else:  # _space makes only these three
        raise TypeError(f"{name}: unsupported distribution {dist!r}")


def _cause(ret: JobReturn) -> BaseException | None:
    """A failed job's exception, through JobReturn's public API (return_value raises it)."""
    try:
        ret.return_value  # noqa: B018
    except BaseException as exc:
        return exc
    return None


def _values(value: Any, n: int) -> list[float]:
    """The job's return value as the study's objective values, or ValueError saying what is wrong."""
    items = list(value) if n > 1 and isinstance(value, list | tuple | ListConfig) else [value]
    try:
        values = [float(v) for v in items]
    except (TypeError, ValueError):
        want = "a float-castable value" if n == 1 else f"a list of {n} float-castable values"
        raise ValueError(f"the task returned {_one_line(repr(value))[:200]}: expected {want}") from None
    if len(values) != n:
        raise ValueError(f"the task returned {len(values)} values for {n} directions")
    if not all(math.isfinite(v) for v in values):
        raise ValueError(f"the task returned {values}: not a finite objective value")
    return values


class StreamSweeperImpl:
    """The search of one run: builds the study and drives a Runner until the study has n_trials."""

    def __init__(self, settings: Settings, launcher: Launcher, config: DictConfig) -> None:
        self.s = settings
        self.launcher = launcher
        self.config = config
        self.sweep_dir = str(config.hydra.sweep.dir)
        self.study: optuna.Study | None = None
        self.in_flight: dict[int, Trial] = {}  # job number -> its trial
        self.failures: list[str] = []  # this run's failed trials, "trial N: cause"

    @classmethod
    def create(
        cls,
        params: Mapping[str, Any],
        *,
        hydra_context: HydraContext,
        task_function: TaskFunction,
        config: DictConfig,
    ) -> StreamSweeperImpl:
        settings = Settings.check(params)
        launcher = Plugins.instance().instantiate_launcher(
            config=config, hydra_context=hydra_context, task_function=task_function
        )
        if getattr(getattr(launcher, "conf", None), "detach", False):
            raise SweeperConfigError(
                "hydra.launcher.detach=true: the streaming sweeper stays to ask each next trial; accepted: "
                "detach=false (after the sweeper stops, the same command re-attaches the jobs still running)"
            )
        return cls(settings, launcher, config)

    # --- the study ---

    def _open_study(self, space: _space.SearchSpace) -> tuple[optuna.Study, str]:
        sampler = self.s.sampler
        if isinstance(sampler, functools.partial) and sampler.func is optuna.samplers.GridSampler:
            grid = space.grid()
            sampler = sampler(grid)
            size = math.prod(len(v) for v in grid.values())
            if size < self.s.n_trials:
                log.info("n_trials: %d, the grid's size (GridSampler)", size)
                self.s.n_trials = size
        if sampler is not None and not isinstance(sampler, optuna.samplers.BaseSampler):
            raise SweeperConfigError(
                f"hydra.sweeper.sampler={sampler!r}: accepted: hydra/sweeper/sampler=tpe, random, cmaes, "
                "nsgaii, gp, qmc or grid (or a config whose _target_ is an optuna.samplers class)"
            )
        storage, where = open_storage(self.s.storage, self.sweep_dir)
        name = study_name(self.s.study_name, str(self.config.hydra.job.name))
        study = optuna.create_study(
            storage=storage,
            sampler=sampler,
            pruner=self.s.pruner,
            study_name=name,
            directions=[optuna.study.StudyDirection[d.upper()] for d in self.s.directions],
            load_if_exists=True,
        )
        stored = [d.name.lower() for d in study.directions]
        if stored != self.s.directions:
            raise SweeperConfigError(
                f"hydra.sweeper.direction={self.s.directions}: the study {name!r} in {where} was created "
                f"with {stored}; accepted: the same directions, or another study_name or storage"
            )
        return study, where

    def decide(self, num: int, step: int, value: float) -> str | None:
        """A trial's report: record it, and say why to prune it (None: go on). Called by the runner."""
        trial = self.in_flight.get(num)
        if trial is None or len(self.s.directions) > 1 or not math.isfinite(value):
            return None
        trial.report(value, step)
        return f"pruned at {self.s.step_name} {step}" if trial.should_prune() else None

    def _handle(self, number: int) -> Trial:
        """A handle on a stored RUNNING trial of an earlier run. Optuna's Trial needs the storage's trial id,
        which only FrozenTrial._trial_id holds (no public accessor): the resume tests fail loudly if that
        changes."""
        assert self.study is not None
        frozen = self.study.get_trials(deepcopy=False)[number]
        return Trial(self.study, int(frozen._trial_id))

    def _ask(self, space: _space.SearchSpace) -> tuple[int, list[str]]:
        assert self.study is not None
        trial = self.study.ask()
        for name, dist in space.distributions.items():
            _suggest(trial, name, dist)
        if self.s.custom_search_space is not None:
            self.s.custom_search_space(self.config, trial)
        overlap = sorted(trial.params.keys() & space.fixed.keys())
        if overlap:
            raise _space.SearchSpaceError(
                f"custom_search_space suggests {overlap}, which the command line or params fix; accepted: "
                "a parameter either fixed or searched"
            )
        overrides = space.overrides(trial.params)
        trial.set_user_attr(ATTR_JOB, trial.number)
        trial.set_user_attr(ATTR_OVERRIDES, overrides)
        self.in_flight[trial.number] = trial
        log.debug("trial %d (job #%d): %s", trial.number, trial.number, " ".join(overrides))
        return trial.number, overrides

    def _tell(self, ended: Ended) -> None:
        assert self.study is not None
        trial = self.in_flight.pop(ended.num)
        number = trial.number
        if ended.pruned is not None:
            self.study.tell(trial, state=TrialState.PRUNED)
            log.info("trial %d (job #%d): %s", number, number, ended.pruned)
            return
        if ended.lost is not None or ended.ret is None:
            trial.set_user_attr(ATTR_FAILURE, ended.lost or "lost")
            trial.set_user_attr(ATTR_LOST, True)
            self.study.tell(trial, state=TrialState.FAIL)
            log.warning("trial %d (job #%d) FAIL: %s", number, number, ended.lost)
            return
        ret = ended.ret
        if ret.status == JobStatus.COMPLETED:
            try:
                values = _values(ret.return_value, len(self.s.directions))
            except ValueError as err:
                cause = str(err)
            else:
                self.study.tell(trial, values=values)
                log.info("trial %d (job #%d): %s", number, number, values[0] if len(values) == 1 else values)
                return
        else:
            exc = _cause(ret)
            if isinstance(exc, optuna.TrialPruned):
                self.study.tell(trial, state=TrialState.PRUNED)
                log.info("trial %d (job #%d): %s", number, number, _one_line(exc) or "pruned")
                return
            cause = f"{type(exc).__name__}: {_one_line(exc)}" if exc is not None else "failed"
        trial.set_user_attr(ATTR_FAILURE, cause)
        self.study.tell(trial, state=TrialState.FAIL)
        self.failures.append(f"trial {number} (job #{number}): {cause}")
        logs = f"; {ended.logs}" if ended.logs else ""
        log.warning("trial %d (job #%d) FAIL: %s%s", number, number, cause, logs)

    # --- the search ---

    def _allowed_failures(self) -> int:
        return math.floor(self.s.max_failure_rate * self.s.n_trials + 1e-9)

    def _resume(self, runner: Runner) -> None:
        """An earlier run's RUNNING trials: follow their jobs again, or tell FAIL for the lost ones."""
        assert self.study is not None
        running = [t.number for t in self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))]
        if not running:
            return
        for num in running:
            self.in_flight[num] = self._handle(num)
        lost = runner.reattach(running)
        log.info(
            "resuming the study: %d trial(s) of an earlier run still running, %d of them lost",
            len(running),
            len(lost),
        )
        for num, why in sorted(lost.items()):
            self._tell(Ended(num, lost=why))

    def sweep(self, arguments: Sequence[str]) -> None:
        space = _space.parse(self.s.params, arguments)
        os.makedirs(self.sweep_dir, exist_ok=True)
        self.study, where = self._open_study(space)
        study = self.study
        log.info(
            "Study %r in %s (optuna-dashboard %s): %s, %s, directions %s, n_trials %d, n_jobs %d",
            study.study_name,
            where,
            where,
            type(study.sampler).__name__,
            type(study.pruner).__name__,
            self.s.directions,
            self.s.n_trials,
            self.s.n_jobs,
        )
        runner = make_runner(self.launcher, self.decide)
        try:
            self._resume(runner)
            # Trials of the study that ended (any state); WAITING ones (enqueued) are asked like new ones.
            finished = len(
                study.get_trials(
                    deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
                )
            )
            if finished >= self.s.n_trials:
                log.info("the study already has n_trials=%d trials: nothing to run", self.s.n_trials)
            while True:
                in_flight = len(self.in_flight)
                free = min(self.s.n_jobs - in_flight, self.s.n_trials - finished - in_flight)
                if free > 0:
                    runner.submit([self._ask(space) for _ in range(free)])
                if not self.in_flight:
                    break
                for ended in runner.wait():
                    if ended.num in self.in_flight:
                        self._tell(ended)
                        finished += 1
                if len(self.failures) > self._allowed_failures():
                    self._stop(runner)
        except KeyboardInterrupt:
            for num in runner.interrupted():
                self._tell(Ended(num, lost="removed: the sweeper was interrupted (Ctrl-C)"))
            log.warning(
                "interrupted: trial(s) %s stay RUNNING in the study%s; the same command continues it",
                sorted(self.in_flight),
                " (their jobs keep running in HTCondor)" if runner.streaming else "",
            )
            raise
        finally:
            runner.close()
        self._save_best()

    def _stop(self, runner: Runner) -> None:
        reason = (
            f"{len(self.failures)} trial(s) failed in this run, more than max_failure_rate="
            f"{self.s.max_failure_rate} of n_trials={self.s.n_trials} allows ({self._allowed_failures()})"
        )
        for num in runner.stop(f"the search stopped: {reason}"):
            self._tell(Ended(num, lost=f"removed: the search stopped ({reason})"))
        for num in list(self.in_flight):  # a batch runner has none left in flight
            self._tell(Ended(num, lost=f"stopped with the search ({reason})"))
        raise SearchStoppedError(f"optuna_stream: {reason}; the last: {self.failures[-1]}")

    def _save_best(self) -> None:
        assert self.study is not None
        study = self.study
        results: dict[str, Any]
        complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if not complete:
            counts = {s.name: len(study.get_trials(deepcopy=False, states=(s,))) for s in TrialState}
            raise SearchStoppedError(
                f"optuna_stream: no trial of study {study.study_name!r} completed "
                f"({', '.join(f'{n} {k}' for k, n in counts.items() if n)}): no best parameters"
            )
        if len(self.s.directions) == 1:
            best = study.best_trial
            results = {"name": "optuna", "best_params": best.params, "best_value": best.value}
            log.info("Best parameters: %s", best.params)
            log.info("Best value: %s (trial %d)", best.value, best.number)
        else:
            front = study.best_trials
            solutions = [{"params": t.params, "values": t.values} for t in front]
            results = {"name": "optuna", "solutions": solutions}
            log.info("Number of Pareto solutions: %d", len(front))
            for t in front:
                log.info("    Values: %s, Params: %s", t.values, t.params)
        text = OmegaConf.to_yaml(OmegaConf.create(results))
        write_atomic(os.path.join(self.sweep_dir, RESULTS_FILE), text.encode())
