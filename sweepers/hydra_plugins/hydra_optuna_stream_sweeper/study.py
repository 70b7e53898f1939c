"""Where a sweep's study lives, for the sweeper and for whoever reads the study afterwards (a report, a
notebook)::

    from hydra_plugins.hydra_optuna_stream_sweeper.study import load_study

    study = load_study("outputs/sweeps/2026-01-31/12-00-00")  # None: no study stored for that sweep
    for trial in study.trials:
        print(trial.number, trial.state.name, trial.value, trial.intermediate_values)

Trial number == ``hydra.job.num``; a trial's user attributes hold its job number, overrides and, when FAIL,
its cause (``ATTR_*``). Light on purpose (Hydra imports every public module of a plugin package at
start-up): Optuna loads only in ``load_study``.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import optuna

# The study's journal in the sweep folder (storage: null).
JOURNAL_FILE = "optuna_journal.log"
# User attributes every trial records (the dashboard shows them).
ATTR_JOB = "job_num"
ATTR_OVERRIDES = "overrides"
ATTR_FAILURE = "failure"  # a FAIL's cause, one line
ATTR_LOST = "lost"  # a FAIL that is no trial's fault (its job was lost): not counted by max_failure_rate


def is_url(storage: str) -> bool:
    return "://" in storage


def storage_location(storage: str | None, sweep_dir: str, cwd: str | None = None) -> str:
    """``hydra.sweeper.storage`` as the sweeper opens it: an Optuna storage URL as it is, else the absolute
    path of a journal file (null: the sweep folder's; a relative path: from ``cwd``, the sweeper's working
    directory, ``hydra.runtime.cwd``; None: this process's)."""
    if storage is not None and is_url(storage):
        return storage
    path = storage if storage is not None else os.path.join(sweep_dir, JOURNAL_FILE)
    return os.path.abspath(os.path.join(cwd, path) if cwd is not None else path)


def study_name(name: str | None, job_name: str) -> str:
    """``hydra.sweeper.study_name``, or the app's name (``hydra.job.name``) when null."""
    return name or job_name


def load_study(sweep_dir: str | os.PathLike[str], config: Any = None) -> optuna.Study | None:
    """The study of the sweep in ``sweep_dir`` (read-only use), found as the sweeper found it from the
    sweep's config (``config``: a DictConfig; default: the folder's ``multirun.yaml``): ``hydra.sweeper.
    storage`` and ``study_name``. None when the sweep stored no study: another sweeper, or Hydra's Optuna
    sweeper without storage (its study was in memory), or a journal file not there (nothing is created).
    Raises what Optuna raises for a storage it cannot read or a study it does not hold."""
    from omegaconf import OmegaConf

    sweep_dir = os.fspath(sweep_dir)
    if config is None:
        multirun = os.path.join(sweep_dir, "multirun.yaml")  # Hydra's name for the sweep's saved config
        # Without it: the default storage (the journal in the sweep folder) and its only study.
        config = OmegaConf.load(multirun) if os.path.isfile(multirun) else OmegaConf.create({})
    storage = OmegaConf.select(config, "hydra.sweeper.storage", default=None)
    name = OmegaConf.select(config, "hydra.sweeper.study_name", default=None)
    job_name = OmegaConf.select(config, "hydra.job.name", default=None)
    cwd = OmegaConf.select(config, "hydra.runtime.cwd", default=None)
    if storage is not None and not isinstance(storage, str):
        return None
    where = storage_location(storage, sweep_dir, cwd=str(cwd) if cwd else None)
    if not is_url(where) and not os.path.isfile(where):
        return None
    import optuna
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    opened = where if is_url(where) else JournalStorage(JournalFileBackend(where))
    names = [s.study_name for s in optuna.get_all_study_summaries(opened, include_best_trial=False)]
    wanted = study_name(None if name is None else str(name), str(job_name or ""))
    if wanted not in names and len(names) == 1 and not name:
        wanted = names[0]  # no name said and no app name known: the storage's only study
    return optuna.load_study(study_name=wanted, storage=opened)
