"""Every job composes its own config on the worker, from config sources shipped with the sweep.

Composing a job's config costs Hydra ~50-150 ms (it re-composes everything per job); done on the submit side,
a 1,000-job sweep would wait minutes before its first job is queued. So the submit side builds one ``Kit`` per
batch and the workers compose, in parallel, in every mode:

- the config folders (``file://`` and ``pkg://`` sources, also those added by ``hydra.searchpath``) are
  copied into a content-addressed snapshot folder ``<htcondor_dir>/config-sources-<hash>``: read in place
  on a shared filesystem, transferred with the job otherwise. Jobs compose from the configs as they were at
  submission, not as edited while the jobs wait in the queue. The snapshot holds what composition can read:
  config files (``*.yaml``/``*.yml``), not Hydra's output folders (old runs and sweeps under a
  ``config_path="."``), environments, hidden folders or the sweep's own folders, so its hash changes only
  when a config does (the manifest compares it on resume);
- on the worker, the search path points at the snapshot: the kit's entries, and the primary config's own
  ``hydra.searchpath`` through the ``hydra.searchpath`` override (Hydra takes the first). What composition
  records of that (``hydra.runtime.config_sources``, ``hydra.searchpath``, ``hydra.overrides.hydra``) is
  then named back as on the submit side;
- Hydra's Singleton state travels whole (the resolvers one by one: functions pickled by value load only
  under the same Python version, and each ConfigStore node on its own), so every config composes with its
  own types and Enum checks; a class the worker cannot import fails a job whose composition reads its node
  with one line naming it and the fix (a node no job reads, e.g. one an imported library registered, costs
  nothing). The sweeper's nodes
  (``hydra/sweeper/...``) travel as plain configs: the worker never runs the sweeper, and a sweeper plugin
  missing from a worker image must not fail the jobs;
- what composition reads from the process (working directory, ``hydra.job.env_copy`` variables) is the
  submit side's, as it would be in a local run.

Hydra has no public API to compose a sweep's job with a given search path; the internals used here
(``ConfigLoaderImpl``, ``get_overrides_dirname``, the provider names of ``hydra.searchpath`` sources) are
pinned by ``launchers/tests/test_sources.py``, which composes sweeps both ways and fails if the results
differ, and compares ``subdir_namer`` with Hydra's composition.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import hashlib
import io
import logging
import os
import pathlib
import pickle
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from importlib import resources
from importlib.abc import Traversable
from typing import Any

import cloudpickle
from hydra._internal.config_loader_impl import ConfigLoaderImpl, get_overrides_dirname
from hydra.core.config_store import ConfigNode, ConfigStore
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.plugins import Plugins
from hydra.core.singleton import Singleton
from hydra.core.utils import setup_globals
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

from ._contract import write_folder_once
from ._errors import ConfigError, HTCondorLauncherError
from ._layout import SNAPSHOT_PREFIX  # declared with every other file name of a sweep folder

log = logging.getLogger(__name__)

# Hydra reads config files with these suffixes only.
_CONFIG_SUFFIXES = (".yaml", ".yml")
# A config folder is small; a search path entry pointing at a project root with data in it is a mistake we
# name rather than copy.
MAX_FILES = 20_000
MAX_BYTES = 64 * 1024 * 1024
# Singletons that hold the submitting process's plugins and Hydra instance: sent only where the worker may
# run the same environment (shared mode), and restored where it can import them (hydra.launcher.python may
# name another one). The worker needs none of them to compose and run the job.
_SAME_ENV_ONLY = (GlobalHydra, HydraConfig, Plugins)
# hydra.sweep.subdir templates the submit side can evaluate without composing (transfer_files needs each
# job's folder name in the submit description).
_SUBDIR_KEYS = ("num", "override_dirname", "name", "config_name")
_SUBDIR_KEY = re.compile(r"\$\{hydra\.job\.(" + "|".join(_SUBDIR_KEYS) + r")\}")
_SUBDIR_TEMPLATE = re.compile(
    r"(?:[^$]|\$(?!\{))*(?:\$\{hydra\.job\.(?:" + "|".join(_SUBDIR_KEYS) + r")\}(?:[^$]|\$(?!\{))*)*"
)


@dataclass
class Kit:
    """What a worker needs to compose any job of the batch (pickled once per batch into the job specs)."""

    master: DictConfig  # the sweep's hydra node and resolver cache (see _portable)
    search_path: Any  # the config loader's ConfigSearchPath (Hydra's own type)
    # (scheme, path as Hydra normalised it) of each shipped source -> its subfolder in the snapshot.
    shipped: dict[tuple[str, str], str]
    snapshot_dir: str  # absolute, on the submit side
    cwd: str  # the submitting working directory (hydra.runtime.cwd)
    # Hydra's Singleton state, pickled apart from the kit: the worker unpickles it naming a missing class.
    state: bytes = b""
    extras: bytes | None = None  # _SAME_ENV_ONLY's instances, in shared mode
    # OmegaConf resolvers by name, each pickled apart: a resolver is a function pickled by value, which
    # another Python version (hydra.launcher.python) cannot load; a config that uses it names it then.
    resolvers: list[tuple[str, bytes]] = field(default_factory=list)

    @property
    def snapshot_name(self) -> str:
        return os.path.basename(self.snapshot_dir)


# ---------------------------------------------------------------------------------------------------------
# Submit side


def _portable(config: DictConfig) -> DictConfig:
    """What composing a job reads of the sweep's config: its hydra node (the overrides, the config name,
    env_copy) and the root's resolver cache (a ``${now:}`` resolved once for the whole sweep). Not the task
    part, whose types may come from modules the worker lacks, nor the sweeper plugin's class: hydra.sweeper
    (e.g. OptunaSweeperConf) becomes a plain node."""
    portable = OmegaConf.masked_copy(config, ["hydra"])
    OmegaConf.copy_cache(from_config=config, to_config=portable)
    with read_write(portable.hydra), open_dict(portable.hydra):
        portable.hydra.sweeper = OmegaConf.create(
            OmegaConf.to_container(portable.hydra.sweeper, resolve=False, enum_to_str=True)
        )
    return portable


# Marks of a folder Hydra wrote (a run's .hydra/, a sweep's multirun.yaml) and of a Python environment:
# never config groups (their YAML changes with every run), nor the app's code (_code).
NOT_SOURCES = (".hydra", "multirun.yaml", "pyvenv.cfg", "conda-meta")


def _config_tree(root: Traversable, skip: set[str]) -> Iterator[tuple[str, Traversable]]:
    """(relative path, file) of every config file under root: what composition can read. Not hidden
    folders, __pycache__, Python environments, Hydra's output folders (old runs and sweeps under a
    ``config_path="."``) nor the sweep's own folders (`skip`, real paths). A folder without config files
    is left out: the snapshot, and its hash, change only when a config does."""
    stack: list[tuple[str, Traversable]] = [("", root)]
    while stack:
        rel, folder = stack.pop()
        entries = list(folder.iterdir())
        if rel and any(entry.name in NOT_SOURCES for entry in entries):
            continue
        for entry in entries:
            if entry.name.startswith(".") or entry.name == "__pycache__":
                continue
            path = f"{rel}/{entry.name}" if rel else entry.name
            if entry.is_dir():
                if os.path.realpath(str(entry)) not in skip:
                    stack.append((path, entry))
            elif entry.name.endswith(_CONFIG_SUFFIXES):
                yield path, entry


def _source_root(scheme: str, path: str, cwd: str) -> Traversable | None:
    """The folder a file:// or pkg:// source reads, or None where it does not exist (Hydra skips those)."""
    if scheme == "file":
        folder = os.path.join(cwd, path)
        return pathlib.Path(folder) if os.path.isdir(folder) else None
    try:
        root = resources.files(path)
    except (ModuleNotFoundError, TypeError, ValueError):
        return None
    return root if root.is_dir() else None


def _collect(
    sources: Iterable[tuple[str, str]], cwd: str, skip: set[str]
) -> tuple[dict[tuple[str, str], str], list[tuple[str, bytes]]]:
    """The shipped sources' subfolders, and every config file to write."""
    shipped: dict[tuple[str, str], str] = {}
    files: list[tuple[str, bytes]] = []
    for scheme, path in sources:
        if (scheme, path) in shipped or scheme not in ("file", "pkg"):
            continue
        root = _source_root(scheme, path, cwd)
        if root is None:
            continue
        sub = str(len(shipped))
        shipped[(scheme, path)] = sub
        count = total = 0
        for rel, entry in _config_tree(root, skip):
            data = entry.read_bytes()
            count += 1
            total += len(data)
            files.append((f"{sub}/{rel}", data))
            if count > MAX_FILES or total > MAX_BYTES:
                raise ConfigError(
                    f"the config search path entry {scheme}://{path} holds more than {MAX_FILES} config "
                    f"files or {MAX_BYTES >> 20} MiB of configs: the launcher ships every config "
                    "source with the jobs; point config_path (or hydra.searchpath) at a folder with the "
                    "configs only"
                )
    return shipped, files


@dataclass(frozen=True)
class Sources:
    """The batch's config sources as read on the submit side: what the snapshot holds, and its name."""

    shipped: dict[tuple[str, str], str]
    files: list[tuple[str, bytes]]

    @property
    def digest(self) -> str:
        """The content hash naming the snapshot (``config-sources-<digest>``): equal iff the configs are."""
        digest = hashlib.sha256()
        for sub in sorted(set(self.shipped.values())):
            digest.update(sub.encode() + b"/\0")
        for rel, data in sorted(self.files):
            digest.update(rel.encode() + b"\0" + hashlib.sha256(data).digest())
        return digest.hexdigest()[:16]


def gather(config: DictConfig, config_loader: Any, *, cwd: str, htcondor_dir: str, sweep_dir: str) -> Sources:
    """Read the config sources the sweep's composition used (hydra.searchpath entries included), then the
    loader's; the sweep's own folders are not configs."""
    runtime_sources = OmegaConf.select(config, "hydra.runtime.config_sources", default=None) or []
    sources = [(str(s.schema), str(s.path)) for s in runtime_sources]
    sources += [(s.scheme(), s.path) for s in config_loader.get_sources()]
    skip = {os.path.realpath(sweep_dir), os.path.realpath(htcondor_dir)}
    return Sources(*_collect(sources, cwd, skip))


def _write_snapshot(parent: str, sources: Sources) -> str:
    """Content-addressed, written once (a crash leaves no half snapshot)."""
    final = os.path.join(parent, SNAPSHOT_PREFIX + sources.digest)
    # A source without config files is still a source: its folder is made.
    write_folder_once(final, sources.files, ".tmp-config-sources-", folders=set(sources.shipped.values()))
    return final


def _plain(tree: dict[str, Any]) -> dict[str, Any]:
    """A ConfigStore subtree, its nodes' types dropped (a node OmegaConf cannot make plain keeps them)."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out[key] = _plain(value)
            continue
        try:
            plain = OmegaConf.create(OmegaConf.to_container(value.node, resolve=False, enum_to_str=True))
        except Exception:
            plain = value.node
        out[key] = dataclasses.replace(value, node=plain)
    return out


@dataclass(frozen=True)
class _PackedNode:
    """A ConfigStore node, its config pickled apart: the worker unpickles each node on its own, so that a
    class it lacks fails only the jobs whose composition reads that node (a process registers configs it
    never composes: imported libraries, other apps' schemas)."""

    name: str
    group: str | None
    package: str | None
    provider: str | None
    node: bytes


def _packed(tree: dict[str, Any]) -> dict[str, Any]:
    def pack(node: ConfigNode) -> _PackedNode:
        return _PackedNode(node.name, node.group, node.package, node.provider, cloudpickle.dumps(node.node))

    return {key: _packed(value) if isinstance(value, dict) else pack(value) for key, value in tree.items()}


def _state(same_env: bool) -> tuple[bytes, bytes | None, list[tuple[str, bytes]]]:
    """Hydra's Singleton instances for the worker; apart from them `_SAME_ENV_ONLY`'s (`same_env` only)
    and the resolvers. The sweeper's ConfigStore nodes travel plain (see the module docstring)."""
    state = Singleton.get_state()
    instances = {cls: obj for cls, obj in state["instances"].items() if cls not in _SAME_ENV_ONLY}
    extras = {cls: obj for cls, obj in state["instances"].items() if cls in _SAME_ENV_ONLY}
    store = instances.get(ConfigStore)
    sweepers = store.repo.get("hydra", {}).get("sweeper") if store is not None else None
    if store is not None:
        shipped = copy.copy(store)  # not ConfigStore(): the Singleton would return the live instance
        repo = store.repo
        if sweepers:
            repo = {**repo, "hydra": {**repo["hydra"], "sweeper": _plain(sweepers)}}
        shipped.repo = _packed(repo)
        instances[ConfigStore] = shipped
    resolvers = [(name, cloudpickle.dumps(fn)) for name, fn in state["omegaconf_resolvers"].items()]
    return cloudpickle.dumps(instances), cloudpickle.dumps(extras) if same_env else None, resolvers


def build_kit(
    config: DictConfig,
    config_loader: Any,
    *,
    cwd: str,
    htcondor_dir: str,
    sweep_dir: str,
    same_env: bool,
    sources: Sources | None = None,
) -> Kit:
    """Snapshot the batch's config sources (`sources`, or gathered now) into htcondor_dir and gather what a
    worker composes with."""
    if sources is None:
        sources = gather(config, config_loader, cwd=cwd, htcondor_dir=htcondor_dir, sweep_dir=sweep_dir)
    snapshot_dir = _write_snapshot(htcondor_dir, sources)
    state, extras, resolvers = _state(same_env)

    return Kit(
        master=_portable(config),
        search_path=config_loader.get_search_path(),
        shipped=sources.shipped,
        snapshot_dir=snapshot_dir,
        cwd=cwd,
        state=state,
        extras=extras,
        resolvers=resolvers,
    )


def subdir_namer(config: DictConfig) -> Callable[[Sequence[str], int], str | None]:
    """A function giving job `num`'s hydra.sweep.subdir where it follows from the job number and overrides
    alone (Hydra's default ``${hydra.job.num}``, ``${hydra.job.override_dirname}``...), None where only
    composing tells. Built once per batch: it must cost microseconds a job."""
    template = OmegaConf.to_container(config.hydra.sweep, resolve=False).get("subdir")  # type: ignore[union-attr]
    if not isinstance(template, str) or "\\" in template or not _SUBDIR_TEMPLATE.fullmatch(template):
        return lambda overrides, num: None  # escapes, resolvers, other keys: composing tells
    fixed = {
        "name": str(OmegaConf.select(config, "hydra.job.name")),
        "config_name": str(OmegaConf.select(config, "hydra.job.config_name")),
    }
    dirname_cfg = config.hydra.job.config.override_dirname
    exclude, item_sep, kv_sep = list(dirname_cfg.exclude_keys), dirname_cfg.item_sep, dirname_cfg.kv_sep
    parser = OverridesParser.create()

    def name(overrides: Sequence[str], num: int) -> str | None:
        values = dict(fixed, num=str(num))
        # Parsing costs ~1 ms a job: only where the name needs it or a job may override hydra.* itself.
        if "override_dirname" in template or any("hydra" in o for o in overrides):
            parsed = parser.parse_overrides(overrides=list(overrides))
            if any(o.is_hydra_override() for o in parsed):
                return None  # a job that changes hydra.* itself
            values["override_dirname"] = get_overrides_dirname(
                overrides=parsed, exclude_keys=exclude, item_sep=item_sep, kv_sep=kv_sep
            )
        return _SUBDIR_KEY.sub(lambda m: values[m.group(1)], template)

    return name


# ---------------------------------------------------------------------------------------------------------
# Worker side


class MissingClassError(HTCondorLauncherError, ImportError):
    """A class of Hydra's ConfigStore on the submit side (a structured config's dataclass, an Enum) cannot be
    imported on the worker."""


class _NamingUnpickler(pickle.Unpickler):
    """Unpickles Hydra's state; a class this worker cannot import fails in one line naming it."""

    def find_class(self, module: str, name: str) -> Any:
        try:
            return super().find_class(module, name)
        except (ImportError, AttributeError) as exc:
            raise MissingClassError(
                f"{module}.{name}, a class of the sweep's configs (Hydra's ConfigStore on the submit side), "
                f"cannot be imported on this worker ({type(exc).__name__}: {exc}): install "
                f"{module.split('.')[0]!r} where the jobs run, or send its code: "
                f"hydra.launcher.code_modules (with the app's other modules) or transfer_input_files"
            ) from None


class _UnloadableNode(ConfigNode):
    """A ConfigStore node whose class this worker cannot import: reading its config (composition does, for
    the nodes a job uses) raises the MissingClassError."""

    def __init__(self, packed: _PackedNode, error: MissingClassError) -> None:
        self.name, self.group, self.package, self.provider = (
            packed.name,
            packed.group,
            packed.package,
            packed.provider,
        )
        self.error = error

    @property
    def node(self) -> Any:
        raise self.error

    @node.setter
    def node(self, value: Any) -> None:  # ConfigStore.load assigns a copy of what it just read
        raise self.error


def _unpacked(tree: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out[key] = _unpacked(value)
            continue
        try:
            node = _NamingUnpickler(io.BytesIO(value.node)).load()
        except MissingClassError as exc:
            out[key] = _UnloadableNode(value, exc)
        else:
            out[key] = ConfigNode(value.name, node, value.group, value.package, value.provider)
    return out


def restore(kit: Kit) -> None:
    """Hydra's Singleton state as on the submit side. Raises MissingClassError (one line) for a class of
    that state this worker cannot import."""
    instances = _NamingUnpickler(io.BytesIO(kit.state)).load()
    store = instances.get(ConfigStore)
    if store is not None:
        store.repo = _unpacked(store.repo)
    if kit.extras is not None:
        try:
            instances.update(cloudpickle.loads(kit.extras))
        except Exception as exc:  # another environment (hydra.launcher.python): the job needs none of them
            log.info("the submitting process's Hydra instance is not restored here: %s", exc)
    setup_globals()  # Hydra's own resolvers, as the worker's Hydra defines them
    resolvers = Singleton.get_state()["omegaconf_resolvers"]  # and OmegaConf's
    missing = []
    for name, data in kit.resolvers:
        try:
            resolvers[name] = cloudpickle.loads(data)
        except Exception as exc:
            if name not in resolvers:
                missing.append(f"{name} ({type(exc).__name__}: {exc})")
    if missing:
        log.warning(
            "OmegaConf resolvers of the submit side that this worker cannot load (a config that uses one "
            "fails when it is resolved): %s",
            "; ".join(missing),
        )
    Singleton.set_state({"instances": instances, "omegaconf_resolvers": resolvers})


def _hydra_quoted(text: str) -> str:
    """`text` as a quoted string of Hydra's override grammar (backslashes are escapes only before a quote)."""
    escaped = re.sub(r"(\\*)'", lambda m: m.group(1) * 2 + "\\'", text)
    return "'" + re.sub(r"(\\+)$", lambda m: m.group(1) * 2, escaped) + "'"


def _scheme_path(entry: str) -> str:
    """A search path entry as Hydra names its source ("scheme://path"; a bare path is a file:// one)."""
    return entry if "://" in entry else f"file://{entry}"


# Hydra's provider names of the sources a hydra.searchpath adds (ConfigLoaderImpl._process_config_searchpath).
_SEARCHPATH_FROM_OVERRIDE = "hydra.searchpath in command-line"
_SEARCHPATH_FROM_PRIMARY = "hydra.searchpath in main"


@dataclass(frozen=True)
class _Redirect:
    """The kit's search path with every shipped source read from the snapshot, and the way back to the
    submit side's names for what composition records."""

    search_path: Any
    back: dict[str, tuple[str, str]]  # snapshot source "file://<folder>" -> (scheme, submit-side path)
    searchpath_override: str | None  # the primary config's hydra.searchpath, read from the snapshot


def _redirect(kit: Kit, snapshot_dir: str) -> _Redirect:
    to_snapshot = {
        f"{scheme}://{path}": "file://" + os.path.join(snapshot_dir, sub)
        for (scheme, path), sub in kit.shipped.items()
    }
    search_path = copy.deepcopy(kit.search_path)
    for element in search_path.get_path():
        element.path = to_snapshot.get(_scheme_path(element.path), element.path)
    # The primary config's own hydra.searchpath (as composed on the submit side) is added by Hydra while it
    # composes: the first hydra.searchpath override replaces it.
    try:
        entries = [
            str(entry) for entry in OmegaConf.select(kit.master, "hydra.searchpath", default=None) or []
        ]
    except Exception:  # an entry only the job's config resolves: Hydra reads it as the submit side did
        entries = []
    mapped = [to_snapshot.get(_scheme_path(entry), entry) for entry in entries]
    override = None
    if mapped != entries:
        override = f"hydra.searchpath=[{','.join(_hydra_quoted(entry) for entry in mapped)}]"
    back = {folder: tuple(original.split("://", 1)) for original, folder in to_snapshot.items()}
    return _Redirect(search_path, back, override)  # type: ignore[arg-type]


@contextlib.contextmanager
def _submit_environment(master: DictConfig) -> Iterator[None]:
    """The hydra.job.env_copy variables as the submit side had them (a worker may lack them)."""
    env_set = master.hydra.job.env_set
    saved = {key: os.environ.get(key) for key in master.hydra.job.env_copy if key in env_set}
    os.environ.update({key: str(env_set[key]) for key in saved})
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def compose(kit: Kit, snapshot_dir: str, overrides: Sequence[str]) -> DictConfig:
    """The job's config, as the submit side would compose it, from the snapshot in `snapshot_dir` (call
    `restore` first)."""
    redirect = _redirect(kit, snapshot_dir)
    master = kit.master
    # Unresolved: an override may name what only the job's config has (hydra.sweep.subdir=x_${hydra.job.num}).
    hydra_overrides = [str(o) for o in OmegaConf.to_container(master.hydra.overrides.hydra, resolve=False)]  # type: ignore[union-attr]
    if redirect.searchpath_override is not None:
        with read_write(master.hydra.overrides):
            master.hydra.overrides.hydra = [redirect.searchpath_override, *hydra_overrides]
    loader = ConfigLoaderImpl(config_search_path=redirect.search_path)
    try:
        with _submit_environment(master):
            config = loader.load_sweep_config(master, list(overrides))
    finally:
        with read_write(master.hydra.overrides):
            master.hydra.overrides.hydra = hydra_overrides
    # What composition recorded of the redirect, named as on the submit side.
    searchpath_overridden = any(
        o.split("=", 1)[0].strip() == "hydra.searchpath" for o in [*hydra_overrides, *overrides]
    )
    with read_write(config.hydra), open_dict(config.hydra):
        for info in config.hydra.runtime.config_sources:
            original = redirect.back.get(f"{info.schema}://{info.path}")
            if original is not None:
                info.schema, info.path = original
            if redirect.searchpath_override is not None and not searchpath_overridden:
                info.provider = info.provider.replace(_SEARCHPATH_FROM_OVERRIDE, _SEARCHPATH_FROM_PRIMARY)
        if redirect.searchpath_override is not None:
            config.hydra.overrides.hydra.pop(0)
            if not searchpath_overridden:
                config.hydra.searchpath = master.hydra.searchpath  # the override's value, undone
        config.hydra.runtime.cwd = kit.cwd
    return config
