"""The params grammar: hydra-optuna-sweeper's, parsed by Hydra's own override parser, as Optuna
distributions (and the one-line errors for what is not a search space)."""

from __future__ import annotations

import pytest
from hydra_plugins.hydra_optuna_stream_sweeper._space import SearchSpaceError, parse
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("a=interval(0.1, 2.0)", FloatDistribution(0.1, 2.0)),
        # Hydra's interval is a float interval (as in hydra-optuna-sweeper); cast it for integers.
        ("a=interval(1, 10)", FloatDistribution(1.0, 10.0)),
        ("a=int(interval(1, 10))", IntDistribution(1, 10)),
        ("a=interval(1, 2.5)", FloatDistribution(1.0, 2.5)),
        ("a=tag(log, interval(0.001, 1.0))", FloatDistribution(0.001, 1.0, log=True)),
        ("a=tag(log, int(interval(1, 1024)))", IntDistribution(1, 1024, log=True)),
        ("a=choice(32, 64, 128)", CategoricalDistribution([32, 64, 128])),
        ("a=choice(adam, sgd)", CategoricalDistribution(["adam", "sgd"])),
        ("a=32,64", CategoricalDistribution([32, 64])),
        ("a=choice(true, false)", CategoricalDistribution([True, False])),
        # Hydra's range: stop excluded, as in the basic sweeper.
        ("a=range(1, 5)", IntDistribution(1, 4)),
        ("a=range(0, 10, 3)", IntDistribution(0, 9, step=3)),
        ("a=range(5, 0, -1)", IntDistribution(1, 5)),
        ("a=range(0.0, 1.0, 0.25)", FloatDistribution(0.0, 0.75, step=0.25)),
    ],
)
def test_sweeps_become_distributions(line, expected):
    space = parse(None, [line])
    assert space.distributions == {"a": expected} and space.fixed == {}


def test_shuffled_range_is_categorical():
    dist = parse(None, ["a=shuffle(range(1, 4))"]).distributions["a"]
    assert isinstance(dist, CategoricalDistribution) and sorted(dist.choices) == [1, 2, 3]


def test_params_then_command_line_fixed_values_and_deletions():
    params = {"model.lr": "tag(log, interval(0.05, 3.0))", "data.batch_size": "choice(32, 64)", "seed": "7"}
    space = parse(params, ["data.batch_size=128", "~logger", "+extra=a b"])
    assert space.distributions == {"model.lr": FloatDistribution(0.05, 3.0, log=True)}
    # The command line fixes a parameter of the search space; a plain value is fixed for every trial.
    assert space.fixed == {"data.batch_size": "128", "seed": "7", "+extra": "a\\ b"}
    assert space.fixed_overrides == ["~logger"]
    assert space.overrides({"model.lr": 0.1}) == [
        "model.lr=0.1",
        "seed=7",
        "data.batch_size=128",
        "+extra=a\\ b",  # as the override spells it: Hydra reads "a b"
        "~logger",
    ]


def test_command_line_sweep_replaces_a_params_entry():
    space = parse({"a": "interval(0, 1)"}, ["a=choice(3, 4)"])
    assert space.distributions == {"a": CategoricalDistribution([3, 4])}


def test_grid_of_discrete_distributions():
    space = parse(None, ["a=choice(x, y)", "b=range(1, 4)", "c=range(0.0, 0.5, 0.25)"])
    assert space.grid() == {"a": ["x", "y"], "b": [1, 2, 3], "c": [0.0, 0.25]}
    with pytest.raises(SearchSpaceError, match=r"^hydra.sweeper.params.d: the grid sampler needs discrete"):
        parse(None, ["d=interval(0, 1)"]).grid()


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("a=interval(2, 1)", "a=interval(2, 1): an interval needs start < end"),
        ("a=range(3, 3)", "a=range(3, 3): the range is empty"),
        ("a=glob(*)", "a=glob(*): glob() is not a search space"),
        ("a=interval(0, ", "search space entry 'a=interval(0, ': "),
    ],
)
def test_bad_entries_are_one_line_errors(line, message):
    with pytest.raises(SearchSpaceError) as err:
        parse(None, [line])
    text = str(err.value)
    assert text.startswith(message) and "\n" not in text
    assert "accepted: interval(a,b)" in text
