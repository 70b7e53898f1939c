"""The search space: ``hydra.sweeper.params`` and the command line's sweeps, in Hydra's override grammar
(parsed by Hydra's own parser), as Optuna distributions.

hydra-optuna-sweeper's grammar: ``interval(a, b)`` (float, or int when both ends are ints),
``tag(log, interval(a, b))``, ``choice(a, b, ...)``, ``range(start, stop[, step])``, ``shuffle(range(...))``
(categorical), a plain value (fixed for every trial) and ``~key`` (deleted for every trial). One difference:
``range`` means what it means everywhere else in Hydra, ``stop`` excluded (``range(1, 5)`` is 1..4).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Glob, IntervalSweep, Override, RangeSweep, Transformer
from hydra.errors import CompactHydraException, OverrideParseException
from optuna.distributions import (
    BaseDistribution,
    CategoricalChoiceType,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)

ACCEPTED = (
    "accepted: interval(a,b), tag(log,interval(a,b)), choice(a,b,...), range(start,stop[,step]), "
    "shuffle(range(...)), a fixed value or ~key"
)


class SearchSpaceError(CompactHydraException):
    """A search-space entry the sweeper cannot turn into a distribution (one line)."""


@dataclass
class SearchSpace:
    """What a trial draws (``distributions``) and what every trial gets as it is."""

    distributions: dict[str, BaseDistribution] = field(default_factory=dict)
    fixed: dict[str, str] = field(default_factory=dict)  # key -> value, as the override wrote it
    fixed_overrides: list[str] = field(default_factory=list)  # deletions (~key), verbatim

    def overrides(self, params: dict[str, Any]) -> list[str]:
        """A trial's overrides: its sampled (and custom) parameters, then the fixed values and deletions."""
        chosen = {**params, **self.fixed}
        return [f"{name}={value}" for name, value in chosen.items()] + list(self.fixed_overrides)

    def grid(self) -> dict[str, list[Any]]:
        """The search space as GridSampler's grid (discrete distributions only)."""
        return {name: _grid_values(name, dist) for name, dist in self.distributions.items()}


def _choices(override: Override) -> list[CategoricalChoiceType]:
    values: list[CategoricalChoiceType] = []
    for value in override.sweep_iterator(transformer=Transformer.encode):
        if not isinstance(value, str | int | float | bool | type(None)):
            raise SearchSpaceError(
                f"{override.input_line}: a choice of {type(value).__name__} is not supported: "
                "choices are str, int, float, bool or null"
            )
        values.append(value)
    return values


def distribution(override: Override) -> BaseDistribution | str:
    """One override as an Optuna distribution, or (not a sweep) its value as the override spells it."""
    if not override.is_sweep_override():
        return override.get_value_element_as_str()
    if isinstance(override.value(), Glob):
        raise SearchSpaceError(f"{override.input_line}: glob() is not a search space; {ACCEPTED}")
    value = override.value()
    if override.is_choice_sweep():
        return CategoricalDistribution(_choices(override))
    if override.is_range_sweep():
        assert isinstance(value, RangeSweep)
        if value.shuffle:
            return CategoricalDistribution(_choices(override))
        # Hydra's own values (stop excluded), so that range means the same as in the basic sweeper.
        points = [float(x) for x in override.sweep_iterator()]  # type: ignore[arg-type]
        if not points:
            raise SearchSpaceError(f"{override.input_line}: the range is empty; {ACCEPTED}")
        step = abs(value.step) if value.step is not None else 1
        if any(isinstance(x, float) for x in (value.start, value.stop, value.step)):
            return FloatDistribution(float(min(points)), float(max(points)), step=float(step))
        return IntDistribution(int(min(points)), int(max(points)), step=int(step))
    if override.is_interval_sweep():
        assert isinstance(value, IntervalSweep)
        log = "log" in value.tags
        if value.start >= value.end:  # type: ignore[operator]
            raise SearchSpaceError(f"{override.input_line}: an interval needs start < end; {ACCEPTED}")
        if isinstance(value.start, int) and isinstance(value.end, int):
            return IntDistribution(value.start, value.end, log=log)
        return FloatDistribution(float(value.start), float(value.end), log=log)  # type: ignore[arg-type]
    raise SearchSpaceError(f"{override.input_line}: not a search space the sweeper knows; {ACCEPTED}")


def parse(params: dict[str, Any] | None, arguments: Sequence[str]) -> SearchSpace:
    """The search space of ``hydra.sweeper.params`` then the command line (a key given in both: the
    command line's wins, so `model.lr=0.1` on the command line fixes a parameter of the search space)."""
    lines = [f"{key!s}={value}" for key, value in (params or {}).items()] + list(arguments)
    parser = OverridesParser.create()
    space = SearchSpace()
    for line in lines:
        try:
            (override,) = parser.parse_overrides([line])
        except OverrideParseException as err:
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise SearchSpaceError(f"search space entry {line!r}: {first}; {ACCEPTED}") from None
        if override.is_delete():
            space.fixed_overrides.append(line)
            continue
        key = override.get_key_element()
        found = distribution(override)
        space.distributions.pop(key, None)
        space.fixed.pop(key, None)
        if isinstance(found, BaseDistribution):
            space.distributions[key] = found
        else:
            space.fixed[key] = found
    return space


def _grid_values(name: str, dist: BaseDistribution) -> list[Any]:
    if isinstance(dist, CategoricalDistribution):
        return list(dist.choices)
    if isinstance(dist, IntDistribution) and not dist.log:
        return list(range(dist.low, dist.high + 1, dist.step))
    if isinstance(dist, FloatDistribution) and dist.step is not None:
        count = round((dist.high - dist.low) / dist.step) + 1
        return [dist.low + i * dist.step for i in range(count)]
    raise SearchSpaceError(
        f"hydra.sweeper.params.{name}: the grid sampler needs discrete values: choice(...) or range(...)"
    )
