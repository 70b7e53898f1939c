"""Structured config of the streaming Optuna sweeper, registered as ``hydra/sweeper: optuna_stream``.

The fields and their meaning are hydra-optuna-sweeper's (``hydra/sweeper: optuna``), so an existing search
config switches by changing the sweeper's name; the samplers (``hydra/sweeper/sampler``) are its groups'
names with asynchronous defaults (TPE: multivariate, constant_liar), and a pruner group is added
(``hydra/sweeper/pruner``: none, asha, median, hyperband). Light on purpose: Hydra imports this module at
every start-up, so Optuna itself is imported only when a sweep runs.
"""

from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING

PROVIDER = "optuna_stream_sweeper"


@dataclass
class SamplerConfig:
    _target_: str = MISSING


@dataclass
class TPESamplerConfig(SamplerConfig):
    """https://optuna.readthedocs.io/en/stable/reference/samplers/generated/optuna.samplers.TPESampler.html"""

    _target_: str = "optuna.samplers.TPESampler"
    seed: int | None = None
    n_startup_trials: int = 10
    n_ei_candidates: int = 24
    # Models the parameters' joint distribution (better than one at a time for correlated parameters).
    multivariate: bool = True
    # Trials still running count as if they had the worst value seen: n_jobs trials in flight are spread
    # out instead of all sampled near the same optimum.
    constant_liar: bool = True


@dataclass
class RandomSamplerConfig(SamplerConfig):
    """https://optuna.readthedocs.io/en/stable/reference/samplers/generated/optuna.samplers.RandomSampler.html"""

    _target_: str = "optuna.samplers.RandomSampler"
    seed: int | None = None


@dataclass
class CmaEsSamplerConfig(SamplerConfig):
    """https://optuna.readthedocs.io/en/stable/reference/samplers/generated/optuna.samplers.CmaEsSampler.html"""

    _target_: str = "optuna.samplers.CmaEsSampler"
    seed: int | None = None
    x0: dict[str, Any] | None = None
    sigma0: float | None = None
    n_startup_trials: int = 1
    consider_pruned_trials: bool = False
    use_separable_cma: bool = False


@dataclass
class NSGAIISamplerConfig(SamplerConfig):
    """https://optuna.readthedocs.io/en/stable/reference/samplers/generated/optuna.samplers.NSGAIISampler.html"""

    _target_: str = "optuna.samplers.NSGAIISampler"
    seed: int | None = None
    population_size: int = 50
    mutation_prob: float | None = None
    crossover_prob: float = 0.9
    swapping_prob: float = 0.5


@dataclass
class GPSamplerConfig(SamplerConfig):
    """https://optuna.readthedocs.io/en/stable/reference/samplers/generated/optuna.samplers.GPSampler.html"""

    _target_: str = "optuna.samplers.GPSampler"
    seed: int | None = None
    n_startup_trials: int = 10
    deterministic_objective: bool = False


@dataclass
class QMCSamplerConfig(SamplerConfig):
    """https://optuna.readthedocs.io/en/stable/reference/samplers/generated/optuna.samplers.QMCSampler.html"""

    _target_: str = "optuna.samplers.QMCSampler"
    seed: int | None = None
    qmc_type: str = "sobol"
    scramble: bool = False


@dataclass
class GridSamplerConfig(SamplerConfig):
    """https://optuna.readthedocs.io/en/stable/reference/samplers/generated/optuna.samplers.GridSampler.html"""

    _target_: str = "optuna.samplers.GridSampler"
    # The grid is hydra.sweeper.params (discrete distributions only), filled in when the sweep starts;
    # n_trials is capped at the grid's size.
    _partial_: bool = True
    seed: int | None = None


@dataclass
class PrunerConfig:
    _target_: str = MISSING


@dataclass
class NopPrunerConfig(PrunerConfig):
    """No pruning: every trial runs to its end (reports are still recorded as intermediate values)."""

    _target_: str = "optuna.pruners.NopPruner"


@dataclass
class SuccessiveHalvingPrunerConfig(PrunerConfig):
    """Asynchronous successive halving (ASHA): at each rung (min_resource * reduction_factor**k steps) only
    the best 1/reduction_factor of the trials that reached it go on.
    https://optuna.readthedocs.io/en/stable/reference/generated/optuna.pruners.SuccessiveHalvingPruner.html"""

    _target_: str = "optuna.pruners.SuccessiveHalvingPruner"
    # In the job's steps (its report(step, value) calls; mnist_app's are epochs, from 1). Rungs come at
    # steps 1, 3, 9...: for a search of a few epochs a trial is judged after its 1st and 3rd, and 1 in 9
    # runs to the end once each rung has seen a few trials (before that, Optuna promotes a trial only when
    # it is the best so far). Not Optuna's defaults ("auto", 4): "auto" waits for a first COMPLETE trial,
    # so the first n_jobs trials in flight all run to their end and can still be pruned at their last
    # report (their whole cost spent, their result thrown away); and with 4 the rungs of a 6-epoch search
    # are 1 and 4, 1 in 16 finishing, which keeps 1 or 2 of ~20 trials for TPE to learn from. For jobs
    # that report hundreds of steps, set min_resource to the steps worth a first look (or "auto").
    min_resource: Any = 1
    reduction_factor: int = 3
    min_early_stopping_rate: int = 0
    bootstrap_count: int = 0


@dataclass
class MedianPrunerConfig(PrunerConfig):
    """A trial whose best value so far is worse than the median of earlier trials at the same step stops.
    https://optuna.readthedocs.io/en/stable/reference/generated/optuna.pruners.MedianPruner.html"""

    _target_: str = "optuna.pruners.MedianPruner"
    n_startup_trials: int = 5
    n_warmup_steps: int = 0
    interval_steps: int = 1
    n_min_trials: int = 1


@dataclass
class HyperbandPrunerConfig(PrunerConfig):
    """Hyperband: several successive-halving brackets with different budgets.
    https://optuna.readthedocs.io/en/stable/reference/generated/optuna.pruners.HyperbandPruner.html"""

    _target_: str = "optuna.pruners.HyperbandPruner"
    min_resource: int = 1
    max_resource: Any = "auto"
    reduction_factor: int = 3
    bootstrap_count: int = 0


@dataclass
class OptunaStreamSweeperConf:
    _target_: str = "hydra_plugins.hydra_optuna_stream_sweeper.optuna_stream_sweeper.OptunaStreamSweeper"
    defaults: list[Any] = field(default_factory=lambda: [{"sampler": "tpe"}, {"pruner": "none"}])

    # Sampling algorithm (hydra/sweeper/sampler: tpe, random, cmaes, nsgaii, gp, qmc, grid).
    # https://optuna.readthedocs.io/en/stable/reference/samplers/index.html
    sampler: SamplerConfig = MISSING

    # Pruner that stops unpromising trials from the values they report (hydra/sweeper/pruner: none, asha,
    # median, hyperband; or any optuna.pruners class as {_target_: ..., its arguments}). Single-objective
    # studies only. https://optuna.readthedocs.io/en/stable/reference/pruners.html
    pruner: Any = MISSING

    # minimize or maximize, or a list of them for a multi-objective study (the task returns one value
    # per direction).
    direction: Any = "minimize"

    # Where the study lives: null (the default) is Optuna's journal file in the sweep folder; a string with
    # "://" is an Optuna storage URL (e.g. sqlite:///study.db, postgresql://...); any other string is a
    # journal file's path. Running the same command again continues the study stored there.
    storage: str | None = None

    # The study's name in the storage; null: the app's name (hydra.job.name).
    study_name: str | None = None

    # Trials the study ends with, counting those of earlier runs of the same command (any outcome).
    n_trials: int = 20

    # Trials in flight at once: with launcher=htcondor a new one is submitted the moment one ends; with any
    # other launcher, batches of n_jobs. On a pool, one or two above the slots you get keeps a trial queued,
    # which HTCondor starts the moment a slot frees (no negotiation cycle; README "Searching on a pool").
    n_jobs: int = 2

    # What the steps of a job's report(step, value) count, as a pruned trial's reason names it ("pruned at
    # epoch 3"): mnist_app's search says epoch.
    step_name: str = "step"

    # The share of n_trials that may fail in one run; one failure more stops the search with an error.
    max_failure_rate: float = 0.0

    # The search space, in Hydra's override grammar: interval(a, b), tag(log, interval(a, b)),
    # choice(a, b, ...), range(start, stop, step), or a fixed value.
    params: dict[str, str] | None = None

    # An instantiate-style dotpath to a callable (cfg: DictConfig, trial: optuna.trial.Trial) -> None that
    # suggests more parameters (each becomes an override of the job).
    custom_search_space: str | None = None


def _register() -> None:
    cs = ConfigStore.instance()
    cs.store(group="hydra/sweeper", name="optuna_stream", node=OptunaStreamSweeperConf, provider=PROVIDER)
    samplers: dict[str, type[SamplerConfig]] = {
        "tpe": TPESamplerConfig,
        "random": RandomSamplerConfig,
        "cmaes": CmaEsSamplerConfig,
        "nsgaii": NSGAIISamplerConfig,
        "gp": GPSamplerConfig,
        "qmc": QMCSamplerConfig,
        "grid": GridSamplerConfig,
    }
    for name, sampler in samplers.items():
        cs.store(group="hydra/sweeper/sampler", name=name, node=sampler, provider=PROVIDER)
    pruners: dict[str, type[PrunerConfig]] = {
        "none": NopPrunerConfig,
        "asha": SuccessiveHalvingPrunerConfig,
        "median": MedianPrunerConfig,
        "hyperband": HyperbandPrunerConfig,
    }
    for name, pruner in pruners.items():
        cs.store(group="hydra/sweeper/pruner", name=name, node=pruner, provider=PROVIDER)


_register()
