"""The app's own code travels with its jobs: a content-addressed snapshot of the modules the submitting
process imported from outside the Python installation, put first on the worker's ``sys.path``.

Submit side (``gather``, ``write``): every top-level module or package in ``sys.modules`` whose file lies
outside the Python installation (not under ``sys.prefix``/``base_prefix``/``exec_prefix``, not in a
``site-packages``/``dist-packages`` folder) is the app's: the script (``__main__``, shipped under its own
module name so that ``_target_: my_app.Thing`` imports on the worker), its sibling modules, packages on
``PYTHONPATH`` or the working directory, editable installs of the user's project. A package travels whole
(every ``.py`` file of its tree: a ``_target_`` may name a submodule the submit side never imported), a
module as its file. Source files only: no data, no ``__pycache__``, hidden folders, environments or Hydra
output folders, and never what the worker must have already (Hydra, OmegaConf, cloudpickle, this launcher).
``hydra.launcher.code_modules`` names exactly what to ship instead. The snapshot is written once per sweep
folder, ``<htcondor_dir>/code-<hash>/`` (a temp folder renamed into place), laid out as an import root.

Worker side (``located``, ``activate``, ``named_failure``; before anything of the app is unpickled): the
snapshot goes first on ``sys.path`` and ``__main__.Thing`` resolves through the shipped script; a module the
worker still cannot import, or a data file read next to the shipped modules (through ``__file__``), fails
the job with one line saying what to do.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import importlib
import importlib.util
import logging
import os
import sys
import sysconfig
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from ._contract import write_folder_once
from ._errors import ConfigError
from ._layout import CODE_PREFIX, CODE_TMP_PREFIX, SweepLayout
from ._settings import Settings
from ._sources import NOT_SOURCES

log = logging.getLogger(__name__)
# A project's code is small; more than this is data or an environment that slipped in, named in the refusal.
MAX_FILES = 5_000
MAX_BYTES = 16 * 1024 * 1024
CODE_SUFFIX = ".py"
# What a worker has by construction (it runs this launcher): never shipped, even from an editable install.
# hydra_plugins is Hydra's plugin namespace: its portions (this launcher, an editable sweeper) belong to
# the environment; shipped first on sys.path they would hide the worker's own portions.
WORKER_OWN = frozenset(
    {"hydra", "hydra_plugins", "omegaconf", "cloudpickle", "antlr4", "yaml", "htcondor2", "classad2"}
)
_LAUNCHER_DIR = os.path.dirname(os.path.realpath(__file__))


class CodeError(ConfigError):
    """The app's code cannot be shipped (too big, a named module not found): one line, raised before
    anything is submitted."""


# ---------------------------------------------------------------------------------------------------------
# Submit side


@dataclasses.dataclass(frozen=True)
class Unit:
    """One top-level module or package of the app: its name, where it was read, its files (snapshot-relative
    path, bytes)."""

    name: str
    origin: str
    files: tuple[tuple[str, bytes], ...]

    @property
    def nbytes(self) -> int:
        return sum(len(data) for _, data in self.files)


@dataclasses.dataclass(frozen=True)
class Code:
    """The app's code as gathered on the submit side."""

    units: tuple[Unit, ...]
    # The module the submitting process ran as __main__, under its own name (``my_app``, ``pkg.__main__``),
    # where the snapshot has it: the worker resolves ``__main__.Thing`` (a ``_target_``) through it.
    main: str | None = None

    @property
    def files(self) -> list[tuple[str, bytes]]:
        return [item for unit in self.units for item in unit.files]

    @property
    def nbytes(self) -> int:
        return sum(unit.nbytes for unit in self.units)

    @property
    def modules(self) -> list[str]:
        return [unit.name for unit in self.units]

    @property
    def digest(self) -> str:
        """The content hash naming the snapshot (``code-<digest>``): equal iff the shipped files are."""
        digest = hashlib.sha256()
        for rel, data in sorted(self.files):
            digest.update(rel.encode() + b"\0" + hashlib.sha256(data).digest())
        return digest.hexdigest()[:16]

    def describe(self) -> str:
        more = len(self.modules) - 8
        shown = ", ".join(self.modules[:8]) + (f" and {more} more" if more > 0 else "")
        return f"{len(self.files)} file(s), {self.nbytes / 1024:.1f} KiB: {shown or 'nothing'}"


def _installation() -> tuple[str, ...]:
    """The folders of the Python installation (and the environment): code there is not the app's."""
    paths = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix}
    for key in ("stdlib", "platstdlib", "purelib", "platlib"):
        with contextlib.suppress(KeyError):
            paths.add(sysconfig.get_path(key))
    return tuple(sorted({os.path.realpath(p) for p in paths if p}))


def _installed(path: str, installation: tuple[str, ...]) -> bool:
    parts = path.split(os.sep)
    if "site-packages" in parts or "dist-packages" in parts:
        return True
    return any(path == root or path.startswith(root + os.sep) for root in installation)


def _tree(folder: str, skip: set[str]) -> Iterator[tuple[str, str]]:
    """(path relative to folder, absolute path) of every source file under folder, sorted; not hidden
    folders, __pycache__, environments, Hydra output folders or the sweep's own folders."""
    for here, dirs, names in os.walk(folder):
        if here != folder and any(os.path.exists(os.path.join(here, mark)) for mark in NOT_SOURCES):
            dirs[:] = []
            continue
        dirs[:] = sorted(
            d
            for d in dirs
            if not d.startswith(".")
            and d != "__pycache__"
            and os.path.realpath(os.path.join(here, d)) not in skip
        )
        for name in sorted(names):
            if name.endswith(CODE_SUFFIX) and not name.startswith("."):
                path = os.path.join(here, name)
                yield os.path.relpath(path, folder), path


# Files read before, by (path, mtime_ns, size): a process that launches many batches reads its code once.
_read_cache: dict[str, tuple[int, int, bytes]] = {}


def _read(path: str) -> bytes:
    st = os.stat(path)
    hit = _read_cache.get(path)
    if hit is not None and hit[:2] == (st.st_mtime_ns, st.st_size):
        return hit[2]
    with open(path, "rb") as f:
        data = f.read()
    _read_cache[path] = (st.st_mtime_ns, st.st_size, data)
    return data


class _Budget:
    """Counts what is gathered; past the limit, one line naming the biggest unit and its biggest file."""

    def __init__(self) -> None:
        self.files = 0
        self.nbytes = 0
        # unit name -> (origin, files, bytes, its biggest file, that file's size)
        self.by_unit: dict[str, tuple[str, int, int, str, int]] = {}

    def add(self, unit: str, origin: str, rel: str, size: int) -> None:
        self.files += 1
        self.nbytes += size
        _, count, total, big, big_size = self.by_unit.get(unit, (origin, 0, 0, "", -1))
        if size > big_size:
            big, big_size = rel, size
        self.by_unit[unit] = (origin, count + 1, total + size, big, big_size)
        if self.files > MAX_FILES or self.nbytes > MAX_BYTES:
            raise CodeError(self._refusal(unit))

    def _refusal(self, current: str) -> str:
        name, (origin, count, total, big, big_size) = max(self.by_unit.items(), key=lambda kv: kv[1][2])
        if self.files > MAX_FILES:  # the unit whose walk crossed the line holds the files
            name, (origin, count, total, big, big_size) = current, self.by_unit[current]
        return (
            f"the app's code to ship with the jobs is over the limit of {MAX_FILES} files or "
            f"{MAX_BYTES >> 20} MiB ({self.files} files, {self.nbytes / 2**20:.1f} MiB so far): {name!r} "
            f"({origin}) has {count} files, {total / 2**20:.1f} MiB, the biggest {big} "
            f"({big_size / 2**20:.1f} MiB); name the modules to ship with hydra.launcher.code_modules=[...], "
            "or install that code where the jobs run and set hydra.launcher.code_snapshot=off"
        )


def _unit(name: str, locations: Sequence[str], is_package: bool, skip: set[str], budget: _Budget) -> Unit:
    files: list[tuple[str, bytes]] = []
    origin = locations[0] if locations else name
    if not is_package:
        data = _read(origin)
        rel = name + CODE_SUFFIX
        budget.add(name, origin, rel, len(data))
        return Unit(name, origin, ((rel, data),))
    seen: set[str] = set()
    for folder in locations:  # a namespace package has several
        for rel, path in _tree(folder, skip | {_LAUNCHER_DIR}):
            target = os.path.join(name.replace(".", os.sep), rel)
            if target in seen:  # an earlier portion of the namespace wins, as on import
                continue
            seen.add(target)
            data = _read(path)
            budget.add(name, folder, target, len(data))
            files.append((target, data))
    return Unit(name, origin, tuple(files))


def _script_name(main: Any) -> tuple[str, str] | None:
    """The module name and file of the script run as ``__main__`` (``python my_app.py``); None for
    ``python -m``, whose module is found under its own name, or an interactive session."""
    spec = getattr(main, "__spec__", None)
    if spec is not None and spec.name and spec.name != "__main__":
        return None
    path = getattr(main, "__file__", None)
    if not path or not path.endswith(CODE_SUFFIX):
        return None
    return os.path.basename(path)[: -len(CODE_SUFFIX)], os.path.realpath(path)


def _locations(module: Any) -> tuple[list[str], bool] | None:
    """Where a top-level module's code is: (folders of a package, True) or ([its file], False); None for
    built-ins, zip imports and modules without source."""
    path = getattr(module, "__path__", None)
    if path is not None:
        folders = [os.path.realpath(p) for p in list(path) if os.path.isdir(p)]
        return (folders, True) if folders else None
    file = getattr(module, "__file__", None)
    if file and file.endswith(CODE_SUFFIX) and os.path.isfile(file):
        return [os.path.realpath(file)], False
    return None


def _imported(installation: tuple[str, ...]) -> Iterator[tuple[str, list[str], bool]]:
    """(name, locations, is_package) of each top-level module of the app the process imported."""
    script = _script_name(sys.modules.get("__main__"))
    names = sorted({name.partition(".")[0] for name in list(sys.modules)} - {"__main__"} - WORKER_OWN)
    if script is not None and script[0] not in names and not _installed(script[1], installation):
        yield script[0], [script[1]], False
    main = _main_name(sys.modules.get("__main__"))
    if script is None and main is not None:  # python -m: the module's own name
        names = sorted({*names, main.partition(".")[0]})
    for name in names:
        module = sys.modules.get(name)
        if module is None:
            continue
        found = _locations(module)
        if found is None:
            continue
        locations = [p for p in found[0] if not _installed(p, installation) and p != _LAUNCHER_DIR]
        if locations:
            yield name, locations, found[1]


def _named(names: Iterable[str]) -> Iterator[tuple[str, list[str], bool]]:
    """(name, locations, is_package) of each module named in code_modules, found as the worker would
    import it, from the submitting process's sys.path."""
    for name in names:
        module = sys.modules.get(name)
        if module is not None and _locations(module) is not None:
            locations, is_package = _locations(module)  # type: ignore[misc]
            yield name, locations, is_package
            continue
        script = _script_name(sys.modules.get("__main__"))
        if script is not None and script[0] == name:
            yield name, [script[1]], False
            continue
        spec = importlib.util.find_spec(name)
        if spec is None or (spec.submodule_search_locations is None and not spec.origin):
            raise CodeError(
                f"hydra.launcher.code_modules names {name!r}, which is not importable here: expected the "
                "name of a module or package of the app (as in `import NAME`)"
            )
        if spec.submodule_search_locations is not None:
            yield name, [os.path.realpath(p) for p in spec.submodule_search_locations], True
        elif str(spec.origin).endswith(CODE_SUFFIX) and os.path.isfile(str(spec.origin)):
            yield name, [os.path.realpath(str(spec.origin))], False
        else:
            raise CodeError(
                f"hydra.launcher.code_modules names {name!r}, which has no source file to ship "
                f"({spec.origin}): install it where the jobs run and leave it out of code_modules"
            )


def gather(*, skip: Iterable[str] = (), only: Sequence[str] | None = None) -> Code:
    """The app's code: what the process imported from outside the Python installation, or exactly the
    modules `only` names. `skip`: folders that are never code (the sweep's own). Raises CodeError (one
    line) past MAX_FILES or MAX_BYTES."""
    skipped = {os.path.realpath(p) for p in skip}
    found = _named(only) if only is not None else _imported(_installation())
    budget = _Budget()
    units = [_unit(name, locations, is_package, skipped, budget) for name, locations, is_package in found]
    shipped = tuple(unit for unit in units if unit.files)
    main = _main_name(sys.modules.get("__main__"))
    if main is not None and main.partition(".")[0] not in {unit.name for unit in shipped}:
        main = None
    return Code(shipped, main)


def _main_name(main: Any) -> str | None:
    """The name the module run as __main__ has in the snapshot."""
    script = _script_name(main)
    if script is not None:
        return script[0]
    spec = getattr(main, "__spec__", None)
    return spec.name if spec is not None and spec.name and spec.name != "__main__" else None


def for_jobs(settings: Settings, *, skip: Iterable[str]) -> Code | None:
    """The batch's code to ship (None where its jobs do not run from a snapshot: settings.ships_code);
    `skip`: the sweep's own folders."""
    if not settings.ships_code:
        return None
    code = gather(skip=skip, only=settings.code_modules)
    log.info(
        "HTCondor launcher: the app's code travels with the jobs: %s%s (%s)",
        CODE_PREFIX,
        code.digest,
        code.describe(),
    )
    return code


def inputs(code: Code | None) -> dict[str, str]:
    """The code's part of what a job's result depends on (the manifest's INPUTS)."""
    return {} if code is None else {"code": code.digest}


def write(layout: SweepLayout, code: Code | None) -> dict[str, Any] | None:
    """Write the snapshot folder ``code-<digest>`` once (a temp folder renamed into place: a crash leaves
    no half snapshot, a second sweep into the folder finds it); returns what each job's spec says of its
    code (plain builtins: the worker reads it before it unpickles anything), None without a snapshot."""
    if code is None:
        return None
    final = layout.code(code.digest)
    write_folder_once(final, code.files, CODE_TMP_PREFIX)
    return {"dir": final, "digest": code.digest, "modules": code.modules, "main": code.main}


# ---------------------------------------------------------------------------------------------------------
# Worker side


def located(entry: dict[str, Any] | None, transfer_root: str | None) -> dict[str, Any] | None:
    """A spec's code entry with its folder as this worker sees it: transferred into the scratch folder
    (`transfer_root`), or read in place."""
    if entry is None or transfer_root is None:
        return entry
    return {**entry, "dir": os.path.join(transfer_root, os.path.basename(entry["dir"]))}


def activate(entry: dict[str, Any] | None) -> str:
    """Put the job's code snapshot (`entry`, located) first on sys.path; returns the line for the job's
    log, which says which snapshot the job runs."""
    if entry is None:
        return ""
    folder = entry["dir"]
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"the job's code snapshot {folder} is missing on this worker")
    sys.path.insert(0, folder)
    importlib.invalidate_caches()
    if entry.get("main"):
        _main_resolves_to(entry["main"])
    modules = entry["modules"]
    return (
        f"running the app's code from the snapshot {os.path.basename(folder)} (taken at submission; "
        f"{len(modules)} module(s): {', '.join(modules)})"
    )


def _main_resolves_to(name: str) -> None:
    """``__main__.Thing`` on this worker (whose __main__ is the worker itself) finds the submitting
    process's __main__ module, imported under its own name the first time something asks for it (PEP 562):
    a script whose main call is not under ``if __name__ == "__main__"`` is never imported for nothing."""
    main = sys.modules["__main__"]

    def __getattr__(attr: str) -> Any:
        if attr.startswith("__"):
            raise AttributeError(attr)
        try:
            return getattr(importlib.import_module(name), attr)
        except AttributeError:
            raise AttributeError(
                f"module '__main__' ({name} on the submit side) has no attribute {attr!r}"
            ) from None

    main.__dict__.setdefault("__getattr__", __getattr__)


class MissingModuleError(ImportError):
    """The job needs a module this worker cannot import; the message names it and how to send it."""


class CodeDataFileError(FileNotFoundError):
    """The task read a file next to the app's modules, which the code snapshot (source files only) lacks."""


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        yield cur
        cur = cur.__cause__ or (None if cur.__suppress_context__ else cur.__context__)


def _missing_module(exc: BaseException) -> str | None:
    for item in _chain(exc):
        if isinstance(item, ModuleNotFoundError) and item.name:
            return item.name
    return None


def _how_to_send(name: str, entry: dict[str, Any] | None) -> str:
    """The rest of a missing module's line: why the job lacks it and how to send it."""
    top = name.partition(".")[0]
    if entry is None:
        return (
            " (no code snapshot was sent with this job): install it where the jobs run or, if it is the "
            "app's own code, ship it with hydra.launcher.code_snapshot=always "
            "(hydra.launcher.code_modules names what to ship)"
        )
    snapshot = os.path.basename(entry["dir"])
    shipped = list(entry["modules"])
    if top in shipped:  # a package travels whole: what lacks is no .py file of it (a compiled module)
        others = ",".join(m for m in shipped if m != top)
        return (
            f": the code snapshot {snapshot} has {top!r} but not {name!r}, and it holds .py files only: "
            f"install {top!r} where the jobs run and leave it out of the snapshot "
            f"(hydra.launcher.code_modules=[{others}])"
        )
    return (
        f": the submitting process did not import it, so the code snapshot {snapshot} (modules: "
        f"{', '.join(shipped) or 'none'}) lacks it; if it is the app's own code, import it in the script "
        "(the snapshot ships what the submitting process imported) or name it: "
        f"hydra.launcher.code_modules=[{','.join([*shipped, top])}]; if it is an installed package, install "
        "it where the jobs run"
    )


def named_failure(exc: BaseException, entry: dict[str, Any] | None) -> Exception | None:
    """`exc` (the task's or the worker's) as one line saying what to do, or None: a module this worker cannot
    import, a file read next to the shipped modules (`entry`: the job's code, located)."""
    if isinstance(exc, MissingModuleError | CodeDataFileError):
        return None
    folder = entry["dir"] if entry is not None else None
    name = _missing_module(exc)
    if name is not None:
        return MissingModuleError(f"No module named {name!r} on this worker{_how_to_send(name, entry)}")
    if folder is not None:
        for item in _chain(exc):
            missing = getattr(item, "filename", None)
            if isinstance(item, FileNotFoundError) and missing and str(missing).startswith(folder + os.sep):
                rel = os.path.relpath(str(missing), folder)
                return CodeDataFileError(
                    f"{rel} was read next to the app's modules, but jobs run the code from the snapshot "
                    f"{os.path.basename(folder)}, which holds source files only: send the file with "
                    "hydra.launcher.transfer_input_files and read it from the job's working directory, or "
                    "install the package in the worker's environment and set hydra.launcher.code_snapshot=off"
                )
    return None
