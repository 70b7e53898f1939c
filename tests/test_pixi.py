"""Keeps pixi.toml honest without running pixi (conda-forge is not reachable from CI).

Checks: the workspace, features and environments are the ones issue 5 asks for; every runtime (and, for the
test environment, dev) requirement of pyproject.toml, launchers/pyproject.toml and sweepers/pyproject.toml
is provided by every Pixi environment on every platform, with a version range that overlaps the PyPI one
and admits the versions the test suite runs with; nothing in pixi.toml is there without a pyproject
counterpart; task commands and the `pixi run` lines of the docs name real tasks, environments, modules,
files and Hydra config options.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import re
import shlex
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import tomllib
from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
PIXI_TOML = ROOT / "pixi.toml"
PYPROJECTS = {
    ".": ROOT / "pyproject.toml",
    "launchers": ROOT / "launchers" / "pyproject.toml",
    "sweepers": ROOT / "sweepers" / "pyproject.toml",
}
DOCS_WITH_PIXI_COMMANDS = [
    ROOT / "README.md",
    ROOT / "docs" / "worker-environments.md",
    ROOT / "containers" / "README.md",
]

PLATFORMS = {"linux-64", "osx-arm64", "win-64"}
# Environment markers of each Pixi platform (PEP 508), to know which PyPI requirements apply where.
MARKER_ENV = {
    "linux-64": {
        "sys_platform": "linux",
        "platform_system": "Linux",
        "platform_machine": "x86_64",
        "os_name": "posix",
    },
    "osx-arm64": {
        "sys_platform": "darwin",
        "platform_system": "Darwin",
        "platform_machine": "arm64",
        "os_name": "posix",
    },
    "win-64": {
        "sys_platform": "win32",
        "platform_system": "Windows",
        "platform_machine": "AMD64",
        "os_name": "nt",
    },
}
# PyPI name -> the conda-forge packages that provide it (default: the same name).
CONDA_NAMES: dict[str, set[str]] = {
    "torch": {"pytorch-cpu", "pytorch-gpu", "pytorch"},
    # python-htcondor has the bindings (htcondor2, classad2); htcondor adds the client tools on top of it.
    "htcondor": {"python-htcondor", "htcondor"},
    # matplotlib-base: matplotlib without a GUI toolkit (the report draws with Agg).
    "matplotlib": {"matplotlib-base", "matplotlib"},
}
# Conda packages with no PyPI requirement behind them, and why.
PIXI_ONLY = {"python": "the interpreter itself (checked against requires-python)"}


# ----------------------------------------------------------------------------------------------- helpers


def load_pixi(path: Path = PIXI_TOML) -> dict:
    return tomllib.loads(path.read_text())


def conda_spec_to_specifier(spec: str | dict, where: str) -> SpecifierSet:
    """A conda match-spec version (the subset this repo uses) as a PEP 440 SpecifierSet."""
    if isinstance(spec, dict):
        spec = spec.get("version", "*")
    spec = spec.strip()
    if spec in ("", "*"):
        return SpecifierSet()
    if "|" in spec:
        raise AssertionError(f"{where}: '|' in {spec!r} is not checked by this test; use one range")
    parts = []
    for part in (p.strip() for p in spec.split(",")):
        if re.fullmatch(r"\d[\w.]*\.\*", part):
            parts.append(f"=={part}")
        elif re.match(r"(>=|<=|==|!=|~=|>|<)\d", part):
            parts.append(part)
        else:
            # A bare "1.2" means different things to conda (1.2.*) and PEP 440 (==1.2): keep it explicit.
            raise AssertionError(f"{where}: version {part!r} of {spec!r} is not an explicit range")
    try:
        return SpecifierSet(",".join(parts))
    except InvalidSpecifier as err:
        raise AssertionError(f"{where}: {spec!r} is not a valid range: {err}") from err


def _candidates(*specs: SpecifierSet) -> set[Version]:
    """Versions at, between and around every bound of the given ranges: if the ranges overlap, one of
    these lies in the overlap (bounds here have at most a few release components)."""
    found = {Version("0"), Version("10000")}
    for s in specs:
        for item in s:
            base = item.version.removesuffix(".*")
            release = [int(x) for x in Version(base).release]
            found |= {Version(base), Version(f"{base}.1"), Version(f"{base}.0.1"), Version(f"{base}.99999")}
            if release[-1] > 0:
                below = [*release[:-1], release[-1] - 1]
                found.add(Version(".".join(map(str, below)) + ".99999"))
            found.add(Version(".".join(map(str, [*release[:-1], release[-1] + 1]))))
    return found


def ranges_overlap(a: SpecifierSet, b: SpecifierSet) -> bool:
    return any(
        a.contains(v, prereleases=False) and b.contains(v, prereleases=False) for v in _candidates(a, b)
    )


@dataclass
class Env:
    name: str
    features: list[str]
    platforms: set[str]
    conda: dict[str, dict[str, SpecifierSet]] = field(default_factory=dict)  # platform -> name -> range
    pypi: dict[str, dict[str, object]] = field(default_factory=dict)  # platform -> name -> spec as written
    tasks: dict[str, dict[str, object]] = field(default_factory=dict)  # platform -> task -> definition


def _feature_tables(pixi: dict, feature: str) -> dict:
    return pixi if feature == "default" else pixi.get("feature", {}).get(feature, {})


def resolve_envs(pixi: dict) -> dict[str, Env]:
    """What pixi would put into each environment on each platform (dependencies are merged feature by
    feature; a later feature's range for the same package is ANDed, which is what a solve would do)."""
    envs: dict[str, Env] = {}
    workspace_platforms = set(pixi["workspace"]["platforms"])
    raw_envs = dict(pixi.get("environments", {}))
    raw_envs.setdefault("default", [])
    for name, raw in raw_envs.items():
        features = raw if isinstance(raw, list) else raw.get("features", [])
        no_default = isinstance(raw, dict) and raw.get("no-default-feature", False)
        chain = ([] if no_default else ["default"]) + list(features)
        platforms = set(workspace_platforms)
        for feature in chain:
            if feature != "default":
                assert feature in pixi.get("feature", {}), (
                    f"environment {name!r} uses undefined feature {feature!r}"
                )
            platforms &= set(_feature_tables(pixi, feature).get("platforms", workspace_platforms))
        env = Env(name, chain, platforms)
        for platform in sorted(platforms):
            conda: dict[str, SpecifierSet] = {}
            pypi: dict[str, object] = {}
            tasks: dict[str, dict[str, object]] = {}
            for feature in chain:
                tables = _feature_tables(pixi, feature)
                target = tables.get("target", {}).get(platform, {})
                for table in (tables, target):
                    for dep, spec in table.get("dependencies", {}).items():
                        where = f"{feature}/{platform}/{dep}"
                        rng = conda_spec_to_specifier(spec, where)
                        conda[dep] = conda[dep] & rng if dep in conda else rng
                    pypi.update(table.get("pypi-dependencies", {}))
                    for task, definition in table.get("tasks", {}).items():
                        tasks[task] = definition if isinstance(definition, dict) else {"cmd": definition}
            env.conda[platform], env.pypi[platform], env.tasks[platform] = conda, pypi, tasks
        envs[name] = env
    return envs


def pyproject(rel: str) -> dict:
    return tomllib.loads(PYPROJECTS[rel].read_text())


def local_names() -> dict[str, str]:
    """Distribution name -> its folder, for the local distributions."""
    return {canonicalize_name(pyproject(rel)["project"]["name"]): rel for rel in PYPROJECTS}


def requirements(extras: tuple[str, ...] = ()) -> list[tuple[str, Requirement]]:
    """(source, requirement) for every runtime requirement (and the given extras) of both pyprojects."""
    found = []
    for rel in PYPROJECTS:
        project = pyproject(rel)["project"]
        lines = list(project.get("dependencies", []))
        for extra in extras:
            lines += project.get("optional-dependencies", {}).get(extra, [])
        found += [(f"{rel}/pyproject.toml", Requirement(line)) for line in lines]
    return found


def applies(req: Requirement, platform: str, python: str = "3.11") -> bool:
    if req.marker is None:
        return True
    env = {
        **MARKER_ENV[platform],
        "python_version": python,
        "python_full_version": f"{python}.0",
        "extra": "",
    }
    return Marker(str(req.marker)).evaluate(env)


def all_conda_deps(pixi: dict) -> Iterator[tuple[str, str, object]]:
    """(where, name, spec) for every conda dependency anywhere in the manifest."""
    for feature in ["default", *pixi.get("feature", {})]:
        tables = _feature_tables(pixi, feature)
        for target_name, table in [("", tables), *tables.get("target", {}).items()]:
            for dep, spec in table.get("dependencies", {}).items():
                yield f"{feature}{'/' + target_name if target_name else ''}", dep, spec


def all_pypi_deps(pixi: dict) -> Iterator[tuple[str, str, object]]:
    for feature in ["default", *pixi.get("feature", {})]:
        tables = _feature_tables(pixi, feature)
        for target_name, table in [("", tables), *tables.get("target", {}).items()]:
            for dep, spec in table.get("pypi-dependencies", {}).items():
                yield f"{feature}{'/' + target_name if target_name else ''}", dep, spec


def pypi_name_of_conda(name: str) -> str:
    for pypi_name, conda_names in CONDA_NAMES.items():
        if name in conda_names:
            return pypi_name
    return name


def installed_version(name: str) -> Version | None:
    try:
        return Version(importlib.metadata.version(name))
    except importlib.metadata.PackageNotFoundError:
        return None


def check_manifest(pixi: dict) -> list[str]:
    """Every problem of the manifest against the pyprojects, as readable lines (empty: consistent)."""
    problems: list[str] = []
    envs = resolve_envs(pixi)
    locals_ = local_names()
    runtime = requirements()
    dev = requirements(("dev",))
    for env in envs.values():
        if not env.platforms:
            problems.append(f"environment {env.name!r} has no platform left")
        reqs = dev if "test" in env.features else runtime
        for platform in sorted(env.platforms):
            conda, pypi = env.conda[platform], env.pypi[platform]
            for source, req in reqs:
                name = canonicalize_name(req.name)
                if not applies(req, platform):
                    continue
                here = f"env {env.name!r} on {platform}: {req} (from {source})"
                if name in locals_:
                    spec = pypi.get(req.name) or pypi.get(name)
                    if not (
                        isinstance(spec, dict) and spec.get("editable") and spec.get("path") == locals_[name]
                    ):
                        problems.append(f"{here}: not an editable path dependency on {locals_[name]!r}")
                    continue
                provided = [(n, conda[n]) for n in sorted(CONDA_NAMES.get(name, {name})) if n in conda]
                if not provided and name in {canonicalize_name(p) for p in pypi}:
                    spec = next(v for k, v in pypi.items() if canonicalize_name(k) == name)
                    provided = [
                        (f"pypi:{name}", SpecifierSet(spec if isinstance(spec, str) and spec != "*" else ""))
                    ]
                if not provided:
                    problems.append(
                        f"{here}: provided by no conda package {sorted(CONDA_NAMES.get(name, {name}))}"
                    )
                for conda_name, rng in provided:
                    if not ranges_overlap(rng, req.specifier):
                        problems.append(f"{here}: {conda_name} {rng} does not overlap {req.specifier}")
                    tested = installed_version(req.name)
                    if tested is not None and not rng.contains(tested, prereleases=True):
                        problems.append(f"{here}: {conda_name} {rng} excludes the tested {req.name} {tested}")
    # The other way round: nothing in pixi.toml without a pyproject requirement behind it.
    by_name = {canonicalize_name(r.name): r for _, r in dev}
    for where, dep, _spec in all_conda_deps(pixi):
        if dep in PIXI_ONLY:
            continue
        pypi_name = canonicalize_name(pypi_name_of_conda(dep))
        if pypi_name not in by_name:
            problems.append(
                f"[{where}] {dep}: no requirement in the pyprojects (map it in CONDA_NAMES or drop it)"
            )
    for where, dep, _spec in all_pypi_deps(pixi):
        name = canonicalize_name(dep)
        if name not in by_name and name not in locals_:
            problems.append(f"[{where}] pypi {dep}: no requirement in the pyprojects")
    # The interpreter.
    for env in envs.values():
        for platform in env.platforms:
            python = env.conda[platform].get("python")
            if python is None:
                problems.append(f"env {env.name!r} on {platform}: no python")
                continue
            for rel in PYPROJECTS:
                requires = SpecifierSet(pyproject(rel)["project"].get("requires-python", ""))
                if not ranges_overlap(python, requires):
                    problems.append(
                        f"env {env.name!r}: python {python} outside {rel} requires-python {requires}"
                    )
    return problems


# ------------------------------------------------------------------------------------------ the checks


def test_manifest_parses_and_workspace_is_the_issues():
    pixi = load_pixi()
    ws = pixi["workspace"]
    assert ws["name"] == "mnist-app"
    assert ws["channels"] == ["conda-forge"]
    assert set(ws["platforms"]) == PLATFORMS
    assert conda_spec_to_specifier(pixi["dependencies"]["python"], "python") == SpecifierSet("==3.11.*")


def test_features_are_the_issues():
    features = load_pixi()["feature"]
    assert "pytorch-cpu" in features["cpu"]["dependencies"]
    for platform in ("linux-64", "osx-arm64"):
        assert "torchvision" in features["cpu"]["target"][platform]["dependencies"]
    # conda-forge has no torchvision for win-64: PyPI's there.
    assert "torchvision" in features["cpu"]["target"]["win-64"]["pypi-dependencies"]
    assert features["gpu"]["system-requirements"] == {"cuda": "12"}
    assert {"pytorch-gpu", "torchvision"} <= set(features["gpu"]["target"]["linux-64"]["dependencies"])
    assert "htcondor" in features["condor"]["target"]["linux-64"]["dependencies"]
    assert features["condor"]["platforms"] == ["linux-64"]
    assert {"pytest", "ruff"} <= set(features["test"]["dependencies"])


def test_environments_are_the_issues():
    pixi = load_pixi()
    envs = resolve_envs(pixi)
    assert envs["cpu"].features == ["default", "cpu"]
    assert envs["gpu"].features == ["default", "gpu"]
    assert envs["gpu"].platforms == {"linux-64"}
    assert envs["cpu"].platforms == PLATFORMS
    assert "pytorch-gpu" in envs["gpu"].conda["linux-64"]
    assert "pytorch-cpu" not in envs["gpu"].conda["linux-64"]
    used = {f for env in envs.values() for f in env.features}
    assert used >= set(pixi["feature"]), f"features no environment uses: {set(pixi['feature']) - used}"


def test_local_packages_are_editable_path_dependencies():
    pypi = load_pixi()["pypi-dependencies"]
    for name, rel in local_names().items():
        assert pypi[name] == {"path": rel, "editable": True}
        assert (ROOT / rel / "pyproject.toml").is_file()


def test_pixi_toml_and_pyprojects_agree():
    problems = check_manifest(load_pixi())
    assert not problems, "pixi.toml and the pyprojects disagree:\n" + "\n".join(problems)


# Each drift must be caught: (description, edit of the parsed manifest).
def _drop(table: dict, key: str) -> None:
    del table[key]


DRIFTS = {
    "lightning dropped": lambda p: _drop(p["dependencies"], "lightning"),
    "hydra-core range disjoint": lambda p: p["dependencies"].__setitem__("hydra-core", ">=1.4,<2"),
    "torch range excludes the tested torch": lambda p: p["feature"]["cpu"]["dependencies"].__setitem__(
        "pytorch-cpu", ">=2.2,<2.3"
    ),
    "win-64 torchvision dropped": lambda p: _drop(
        p["feature"]["cpu"]["target"]["win-64"]["pypi-dependencies"], "torchvision"
    ),
    "gpu torch dropped": lambda p: _drop(
        p["feature"]["gpu"]["target"]["linux-64"]["dependencies"], "pytorch-gpu"
    ),
    "stray conda package": lambda p: p["dependencies"].__setitem__("numpy", ">=1"),
    "launcher not editable": lambda p: p["pypi-dependencies"].__setitem__(
        "hydra-htcondor-launcher", {"path": "launchers"}
    ),
    "dev tool missing from test env": lambda p: _drop(p["feature"]["test"]["dependencies"], "pytest-timeout"),
    "python outside requires-python": lambda p: p["dependencies"].__setitem__("python", "3.9.*"),
    "bindings missing on osx-arm64": lambda p: _drop(p["target"], "osx-arm64"),
}


@pytest.mark.parametrize("drift", sorted(DRIFTS))
def test_drift_is_caught(drift):
    baseline = set(check_manifest(load_pixi()))
    pixi = load_pixi()
    DRIFTS[drift](pixi)
    assert set(check_manifest(pixi)) - baseline, f"{drift}: not detected"


def test_range_overlap():
    assert ranges_overlap(SpecifierSet(">2.2"), SpecifierSet("<2.3"))
    assert ranges_overlap(SpecifierSet("==3.11.*"), SpecifierSet(">=3.10"))
    assert not ranges_overlap(SpecifierSet(">=2.2,<2.15"), SpecifierSet(">=2.15"))
    assert not ranges_overlap(SpecifierSet("==3.9.*"), SpecifierSet(">=3.10"))
    assert conda_spec_to_specifier("3.11.*", "x") == SpecifierSet("==3.11.*")
    with pytest.raises(AssertionError, match="explicit range"):
        conda_spec_to_specifier("1.2", "x")


# ---------------------------------------------------------------------------------- tasks and docs


def _compose(overrides: list[str]) -> None:
    """Compose the app's config with these overrides (sweeps: their first value); raise if any is not a real
    config option."""
    from hydra import compose, initialize_config_dir
    from hydra.core.override_parser.overrides_parser import OverridesParser

    import mnist_app.config  # registers the schemas the YAML files extend

    mnist_app.config.register_configs()
    single = []
    for override in OverridesParser.create().parse_overrides(overrides):
        if override.is_interval_sweep():  # e.g. Optuna's interval(0.1,2.0): its lower end is a valid value
            single.append(f"{override.get_key_element()}={override.value().start}")
        elif override.is_sweep_override():
            first = next(iter(override.sweep_string_iterator()))
            single.append(f"{override.get_key_element()}={first}")
        else:
            single.append(override.input_line)
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base=None):
        compose(config_name="config", overrides=single, return_hydra_config=True)


# Hydra's own flags, and whether each takes a value; everything else on an app command line is an override.
_HYDRA_FLAGS = {
    "-m": False,
    "--multirun": False,
    "--help": False,
    "-h": False,
    "--hydra-help": False,
    "--cfg": True,
    "-c": True,
    "--package": True,
    "-p": True,
    "--info": True,
    "-i": True,
    "--resolve": False,
}


def _overrides_only(args: list[str]) -> list[str]:
    out, skip = [], False
    for arg in args:
        if skip:
            skip = False
        elif arg in _HYDRA_FLAGS:
            skip = _HYDRA_FLAGS[arg]
        else:
            out.append(arg)
    return out


def check_command(cmd: str, env: Env, platform: str, extra: list[str] = ()) -> list[str]:
    """Problems of one task command (plus extra command-line arguments) in this environment."""
    argv = shlex.split(cmd) + list(extra)
    problems = []
    if argv[0] == "python":
        if argv[1] == "-m":
            module, args = argv[2], argv[3:]
            if importlib.util.find_spec(module) is None:
                problems.append(f"{cmd!r}: module {module} is not importable")
            if module == "mnist_app":
                hydra_args = _overrides_only(args)
                try:
                    _compose(hydra_args)
                except Exception as err:
                    problems.append(f"{cmd!r} {' '.join(extra)}: {type(err).__name__}: {err}")
        elif not (ROOT / argv[1]).is_file():
            problems.append(f"{cmd!r}: {argv[1]} does not exist")
    elif "/" in argv[0]:
        path = ROOT / argv[0]
        if not path.is_file():
            problems.append(f"{cmd!r}: {argv[0]} does not exist")
    elif argv[0] not in env.conda[platform]:
        problems.append(f"{cmd!r}: {argv[0]} is not a dependency of environment {env.name!r}")
    return problems


def test_tasks_name_real_modules_files_and_options():
    pixi = load_pixi()
    envs = resolve_envs(pixi)
    problems = []
    seen = set()
    for env in envs.values():
        for platform in sorted(env.platforms):
            tasks = env.tasks[platform]
            for name, task in tasks.items():
                for dep in task.get("depends-on", []):
                    if dep not in tasks:
                        problems.append(f"task {name} depends on {dep}, not a task in env {env.name!r}")
                key = (name, task["cmd"])
                if key not in seen:
                    seen.add(key)
                    problems += check_command(task["cmd"], env, platform)
    for required in ("train", "sweep", "test", "pool-start", "pool-stop"):
        assert required in {name for name, _ in seen}, f"no task {required!r}"
    assert not problems, "\n".join(problems)


PIXI_RUN = re.compile(r"pixi run((?:\s+(?:-e|--environment)\s+\S+)?)\s+([\w-]+)([^`\n]*)")


def _task_env(envs: dict[str, Env], env_name: str | None, task: str) -> Env | None:
    """The environment `pixi run [-e ENV] TASK` uses: the named one; else default when it has the task;
    else the only environment that has it (pixi asks when several do)."""
    if env_name is not None:
        return envs.get(env_name)
    having = [e for e in envs.values() if any(task in e.tasks[p] for p in e.platforms)]
    if envs["default"] in having:
        return envs["default"]
    return having[0] if len(having) == 1 else None


def _code_lines(text: str) -> Iterator[str]:
    """Lines of the ```bash blocks, continuation backslashes joined, comments dropped."""
    for block in re.findall(r"```(?:bash|sh|console)\n(.*?)```", text, flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split(" #", 1)[0].strip()
            if line and not line.startswith("#"):
                yield line


def test_pixi_run_lines_in_the_docs():
    envs = resolve_envs(load_pixi())
    problems, checked = [], 0
    for doc in DOCS_WITH_PIXI_COMMANDS:
        if not doc.is_file():
            continue
        for match in PIXI_RUN.finditer(doc.read_text()):
            env_name = match.group(1).split()[-1] if match.group(1).strip() else None
            task, extra = match.group(2), shlex.split(match.group(3).split(" #", 1)[0].strip().rstrip("\\"))
            where = f"{doc.relative_to(ROOT)}: {match.group(0).strip()!r}"
            env = _task_env(envs, env_name, task)
            if env is None:
                problems.append(f"{where}: no environment {env_name or '(default)'!r} that has task {task!r}")
                continue
            platform = "linux-64" if "linux-64" in env.platforms else sorted(env.platforms)[0]
            if task not in env.tasks[platform]:
                problems.append(f"{where}: no task {task!r} in environment {env.name!r}")
                continue
            checked += 1
            cmd = env.tasks[platform][task]["cmd"]
            problems += [f"{where}: {p}" for p in check_command(cmd, env, platform, extra)]
    assert checked, "no `pixi run` line found in the docs"
    assert not problems, "\n".join(problems)


def test_app_command_lines_in_the_docs_compose():
    """Every `python -m mnist_app ...` line of the docs' shell blocks names real config options and real
    launcher settings (Hydra composes the launcher's structured config, so a misspelt field fails)."""
    import hydra_plugins.hydra_htcondor_launcher.config  # noqa: F401 - registers hydra/launcher: htcondor

    problems, checked = [], 0
    for doc in DOCS_WITH_PIXI_COMMANDS:
        if not doc.is_file():
            continue
        for line in _code_lines(doc.read_text()):
            if line.split()[:3] != ["python", "-m", "mnist_app"]:  # not python -m mnist_app.report
                continue
            args = _overrides_only(shlex.split(line)[3:])
            checked += 1
            try:
                _compose(args)
            except Exception as err:
                problems.append(f"{doc.relative_to(ROOT)}: {line!r}: {type(err).__name__}: {err}")
    assert checked, "no `python -m mnist_app` line found in the docs"
    assert not problems, "\n".join(problems)


def test_launcher_yaml_examples_in_the_docs_use_real_settings():
    import dataclasses

    import yaml
    from hydra_plugins.hydra_htcondor_launcher.config import HTCondorLauncherConf

    fields = {f.name for f in dataclasses.fields(HTCondorLauncherConf)}
    doc = ROOT / "docs" / "worker-environments.md"
    blocks = re.findall(r"```yaml\n(.*?)```", doc.read_text(), flags=re.S)
    assert len(blocks) >= 2, "expected a launcher config file example for container and packed mode"
    modes = set()
    for block in blocks:
        data = yaml.safe_load(block)
        launcher = data["hydra"]["launcher"]
        assert set(launcher) <= fields, f"not launcher settings: {set(launcher) - fields}"
        modes.add(launcher.get("env_mode", "shared"))
        for entry in data.get("defaults", []):
            ((key, value),) = entry.items()
            group = key.removeprefix("override /")
            if group == "hydra/launcher":
                assert value == "htcondor"
            else:
                assert (ROOT / "conf" / group / f"{value}.yaml").is_file(), f"no option {group}={value}"
    assert modes >= {"container", "packed"}


def test_gpu_command_of_the_issue_is_valid():
    env = resolve_envs(load_pixi())["gpu"]
    assert not check_command(env.tasks["linux-64"]["train"]["cmd"], env, "linux-64", ["device=cuda"])
    bad = check_command(env.tasks["linux-64"]["train"]["cmd"], env, "linux-64", ["device=tpu"])
    assert bad and "tpu" in bad[0]
