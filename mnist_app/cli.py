"""Command-line helpers for ``__main__``: one-line errors for bad overrides; the group listing of ``--help``.

Why a pre-check: ``hydra.main`` reports composition errors through ``run_and_report``, which prints a
multi-line message and exits before the app sees the exception. So ``__main__`` calls :func:`override_error`
first. It composes the config with Hydra's public compose API and turns Hydra's own exceptions
(``MissingConfigException``; the OmegaConf error behind a ``ConfigCompositionException``, with its
``full_key`` and node) into one line: the verdict is always Hydra's, not a re-implementation of its override
rules, and nothing is parsed out of its message text. A command line without overrides composes nothing
here; one with overrides costs one composition per job tried (see :func:`_jobs_to_compose`). Anything
unclassified returns None and Hydra reports it as before.

Light to import, like ``config``: no torch.
"""

from __future__ import annotations

import contextlib
import difflib
import io
import logging
import os
from collections.abc import Iterable, Sequence
from enum import Enum
from typing import TYPE_CHECKING

from hydra import compose, initialize_config_dir
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override, OverrideType, Transformer, ValueType
from hydra.errors import ConfigCompositionException, MissingConfigException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigAttributeError, ConfigKeyError, ValidationError
from omegaconf.nodes import BooleanNode, EnumNode, FloatNode, IntegerNode, PathNode, StringNode

from mnist_app.config import config_dir

if TYPE_CHECKING:
    from argparse import Namespace

log = logging.getLogger(__name__)

CONFIG_NAME = "config"
# Config groups that are plumbing, not choices for users: the dataclass schemas in Hydra's ConfigStore.
HIDDEN_GROUPS = ("schema",)
# Typed nodes that still take new keys with `+`: any argument of Lightning's Trainer.
OPEN_SCHEMA_NODES = ("trainer",)
# App switches that are not Trainer arguments, by the name a user may look for them under.
MOVED_KEYS = {"trainer.resume": "app.resume", "trainer.max_minutes_per_start": "app.max_minutes_per_start"}
# Each costs a composition; past this many values of a sweep, Hydra reports any bad one its own way.
MAX_SWEEP_COMPOSES = 10


def override_error(argv: Sequence[str]) -> str | None:
    """The one-line message for a bad override on this Hydra command line, or None (let Hydra go on).

    ``argv`` is ``sys.argv[1:]``. None also when ``HYDRA_FULL_ERROR=1`` (the user wants Hydra's
    traceback), when flags change what is composed (``-cp``, ``-cn``, ``-cd``), and for errors this module
    cannot classify.
    """
    if os.environ.get("HYDRA_FULL_ERROR") == "1":
        return None
    try:
        return _override_error(argv)
    except Exception:  # a bug here, or a Hydra that changed: never block the run, Hydra still validates
        log.debug("override pre-check failed; leaving the overrides to Hydra", exc_info=True)
        return None


def _override_error(argv: Sequence[str]) -> str | None:
    args = _parse_hydra_args(argv)
    if args is None or not args.overrides:
        return None
    # Flags that compose something else (or nothing): -cp/-cn/-cd, completion, Hydra's help, rerun.
    other = ("config_path", "config_name", "config_dir", "shell_completion", "hydra_help")
    if any(getattr(args, flag, None) for flag in (*other, "experimental_rerun")):
        return None
    try:
        overrides = OverridesParser.create().parse_overrides(args.overrides)
    except Exception:  # a syntax error: Hydra's message points at the offending character
        return None
    failed = _composition_error(_jobs_to_compose(overrides))
    if failed is None:
        return None
    error, job = failed
    return _one_line(error, job)  # None: not an error we classify, Hydra reports it


def _parse_hydra_args(argv: Sequence[str]) -> Namespace | None:
    """Hydra's own argument parser, so flags and overrides split exactly as ``hydra.main`` will split them."""
    # Not public, but what hydra.main itself calls; tests/test_cli.py fails loudly when it changes.
    from hydra._internal.utils import get_args_parser

    sink = io.StringIO()
    try:
        # argparse prints usage errors (and --version) itself; Hydra will print them again for real.
        with contextlib.redirect_stderr(sink), contextlib.redirect_stdout(sink):
            return get_args_parser().parse_args(list(argv))
    except SystemExit:
        return None


# --- which compositions to try


def _jobs_to_compose(overrides: list[Override]) -> list[list[str]]:
    """Override lists worth composing, each one job of the command line.

    Sweeps are expanded like Hydra's basic sweeper does (``key=value`` per value, ``sweep_iterator``). Job
    ``i`` takes the ``i``-th value of every sweep (the first value of shorter ones), so each value of each
    sweep is composed once, in as many jobs as the longest sweep has values (at most
    :data:`MAX_SWEEP_COMPOSES`). Every list is a job the sweep would run, so its failure is a real error,
    not a false alarm. Sweeps that cannot be enumerated (``interval()``, ``glob()``) are left out:
    sweepers give those meaning.
    """
    # Per override, in command-line order: its one value (a plain override) or its sweep's values.
    columns: list[list[str]] = []
    for override in overrides:
        if not override.is_sweep_override():
            columns.append([override.input_line or str(override)])
        elif override.value_type == ValueType.GLOB_CHOICE_SWEEP or not override.is_discrete_sweep():
            continue
        elif override.is_hydra_override():
            continue  # Hydra refuses sweeps over its own config, with its own message
        else:
            key = override.get_key_element()
            values = [f"{key}={Transformer.str(value)}" for value in override.sweep_iterator()]
            if values:
                columns.append(values)
    n_jobs = min(max((len(column) for column in columns), default=1), MAX_SWEEP_COMPOSES)
    return [[column[i if i < len(column) else 0] for column in columns] for i in range(n_jobs)]


# --- composing, and Hydra's exceptions as one line


def _composition_error(jobs: list[list[str]]) -> tuple[Exception, list[str]] | None:
    """What Hydra raises composing the app's config with the first failing job of ``jobs``, and that job."""
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3", job_name="mnist_app"):
        for job in jobs:
            try:
                compose(config_name=CONFIG_NAME, overrides=job)
            except Exception as err:
                return err, job
    return None


def _one_line(error: Exception, job: list[str]) -> str | None:
    """The message for Hydra's exception, or None when it is not one of the errors classified here."""
    if isinstance(error, MissingConfigException):
        return _missing_option_message(error, job)
    if isinstance(error, ConfigCompositionException):
        cause = error.__cause__  # the OmegaConf error, with the full key and the node
        if isinstance(cause, ValidationError):
            return _wrong_value_message(cause, job)
        if isinstance(cause, ConfigAttributeError | ConfigKeyError):
            return _unknown_key_message(cause, job)
    return None


def _parsed(job: list[str]) -> list[Override]:
    return OverridesParser.create().parse_overrides(job)


def _missing_option_message(err: MissingConfigException, job: list[str]) -> str | None:
    group, _, name = (err.missing_cfg_file or "").rpartition("/")
    if not group or err.options is None:
        return None
    # Only when the user named it: a conf/ file naming a missing config is a broken install, not bad input.
    named = any(o.key_or_group == group and not o.is_delete() and o.value() == name for o in _parsed(job))
    if not named:
        return None
    options = sorted(err.options)
    return f"unknown {group} {name!r} (choose one of: {', '.join(options)}){_did_you_mean(name, options)}"


def _wrong_value_message(cause: ValidationError, job: list[str]) -> str | None:
    full_key = cause.full_key
    node = cause.child_node
    if not full_key or node is None or not _from_override(full_key, job):
        return None
    shown = f"{full_key}={Transformer.str(cause.value)}"
    null = " or null" if node._is_optional() else ""
    if isinstance(node, EnumNode):
        choices = _enum_names(node)
        return f"{shown}: choose one of {', '.join(choices)}{null}{_did_you_mean(str(cause.value), choices)}"
    expected = {
        BooleanNode: "a boolean (true or false)",
        IntegerNode: "an integer",
        FloatNode: "a float",
        StringNode: "a string",
        PathNode: "a path",
    }
    for node_type, description in expected.items():
        if isinstance(node, node_type):
            return f"{shown}: expected {description}{null}"
    return None


def _enum_names(node: EnumNode) -> list[str]:
    enum_type: type[Enum] = node.enum_type
    return [member.name for member in enum_type]


def _unknown_key_message(cause: ConfigAttributeError | ConfigKeyError, job: list[str]) -> str | None:
    full_key = cause.full_key
    parent = cause.parent_node
    if not full_key or not isinstance(parent, DictConfig):
        return None
    # Only a plain `key=value` override of that very key; Hydra's words on +/++/~ say more than "unknown".
    plain = [o for o in _parsed(job) if o.key_or_group == full_key and o.type == OverrideType.CHANGE]
    if not plain:
        return None
    if full_key in MOVED_KEYS:
        moved = MOVED_KEYS[full_key]
        return f"unknown key {full_key!r}: the app's switch is {moved} (trainer.* are Trainer arguments)"
    parent_key, _, name = full_key.rpartition(".")
    keys = [str(k) for k in parent.keys() if not (parent_key == "" and k == "hydra")]
    where = parent_key or "the top level"
    message = f"unknown key {full_key!r} ({where} has: {', '.join(keys)})"
    message += _did_you_mean(name, keys, prefix=f"{parent_key}." if parent_key else "")
    # Schema nodes are closed, except the Trainer's (any Trainer argument); plain YAML nodes take new keys.
    if OmegaConf.get_type(parent) is dict or parent_key in OPEN_SCHEMA_NODES:
        message += f"{' or,' if '?' in message else ';'} to add a new key: +{plain[-1].input_line}"
    return message


def _from_override(full_key: str, job: list[str]) -> bool:
    """Whether a user override set this key, or a dict above it (``trainer={max_epochs: many}``).

    Not a group choice above it (``model=broken``): a bad value in a conf/ file is not bad input.
    """
    return any(
        full_key == o.key_or_group
        or (full_key.startswith(o.key_or_group + ".") and isinstance(o.value(), dict))
        for o in _parsed(job)
    )


def _did_you_mean(name: str, options: Iterable[str], prefix: str = "") -> str:
    # 0.75: lrr -> lr, lenet -> lenet5, bundle -> bundled; but not tpu -> cpu.
    close = difflib.get_close_matches(name, list(options), n=1, cutoff=0.75)
    return f"; did you mean {prefix + close[0]!r}?" if close else ""


# --- --help


def config_groups_help() -> str:
    """``$APP_CONFIG_GROUPS`` of Hydra's help without :data:`HIDDEN_GROUPS`: one ``group: a, b`` line each.

    An OmegaConf resolver (see :func:`register_help_resolver`) that conf/config.yaml's ``hydra.help.template``
    calls. Lists the groups of the running Hydra's search path; outside a Hydra run, those of ``conf/``.
    """
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.object_type import ObjectType

    groups: dict[str, list[str]] = {}
    if GlobalHydra.instance().is_initialized():
        loader = GlobalHydra.instance().config_loader()
        # The loader deep-copies its whole repository for every query (~5-20 ms each, ~20 queries); its
        # `repository` (not public; tests/test_cli.py fails loudly when it goes) answers the same questions
        # directly. Both have get_group_options(name, filter); without it, the loader answers, slower.
        source = getattr(loader, "repository", loader)

        def walk(parent: str) -> None:
            for child in source.get_group_options(parent, ObjectType.GROUP):
                group = f"{parent}/{child}" if parent else child
                if group == "hydra" or group in HIDDEN_GROUPS:
                    continue
                options = source.get_group_options(group, ObjectType.CONFIG)
                if options:
                    groups[group] = sorted(options)
                walk(group)

        walk("")
    else:
        for folder in config_dir().iterdir():
            options = sorted(p.stem for p in folder.glob("*.yaml"))
            if options and folder.name not in HIDDEN_GROUPS:
                groups[folder.name] = options
    # Hydra's own format: "group: a, b" per line, groups sorted.
    return "".join(f"{group}: {', '.join(groups[group])}\n" for group in sorted(groups))


HELP_RESOLVER = "mnist_app.config_groups"


def register_help_resolver() -> None:
    """Make ``${mnist_app.config_groups:}`` available to the help template (idempotent)."""
    if not OmegaConf.has_resolver(HELP_RESOLVER):
        OmegaConf.register_new_resolver(HELP_RESOLVER, config_groups_help)
