"""The workers compose every job's config from the shipped config sources: the result must be exactly what
Hydra composes on the submit side. A fresh interpreter (another working directory, without the submit side's
environment variable, its config folders moved away, its config package and the sweeper plugin not
importable) composes a sweep's jobs from the kit; the YAML must match Hydra's own `load_sweep_config`.
A structured-config class the worker cannot import fails it in one line naming the class.

This also pins the Hydra internals `_sources` uses: a Hydra release that changes them fails here."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import cloudpickle
import pytest
from hydra import initialize_config_dir
from hydra.core.config_store import ConfigStore
from hydra.core.global_hydra import GlobalHydra
from hydra.core.plugins import Plugins
from hydra.types import RunMode
from hydra_plugins.hydra_htcondor_launcher import _sources
from hydra_plugins.hydra_htcondor_launcher._errors import ConfigError
from omegaconf import OmegaConf

pytestmark = pytest.mark.usefixtures("hydra_restore_singletons")

JOBS = [
    ["db=postgres", "db.port=1"],
    ["db=mysql", "+extra=from_searchpath", "stamp_copy=${stamp}"],
    ["pkgthing=two", "schema_user.rate=2"],
]

WORKER = textwrap.dedent(
    """
    import json, sys
    import cloudpickle
    from omegaconf import OmegaConf
    from hydra_plugins.hydra_htcondor_launcher import _sources

    kit_file, snapshot, jobs, blocked = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), sys.argv[4:]
    for module in blocked:  # not installed on this worker
        sys.modules[module] = None
    with open(kit_file, "rb") as f:
        kit = cloudpickle.load(f)
    try:
        _sources.restore(kit)
        print(json.dumps([OmegaConf.to_yaml(_sources.compose(kit, snapshot, job)) for job in jobs]))
    except Exception as exc:
        print(json.dumps({"error": type(exc).__name__, "message": str(exc)}))
    """
)


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))


@pytest.fixture
def app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An app with a config folder, a hydra.searchpath folder and package, a schema from a module and an
    env_copy variable: every kind of source and process state that composition reads."""
    conf = tmp_path / "app" / "conf"
    _write(
        conf / "config.yaml",
        """\
        defaults:
          - db: mysql
          - pkgthing: one
          - schema_user: base
          - _self_
        hydra:
          searchpath:
            - file://SEARCHPATH
            - pkg://shipped_pkg_conf
          job:
            env_copy: [SUBMIT_ONLY_VAR]
        stamp: ${now:%H-%M-%S-%f}
        stamp_copy: none
        """,
    )
    _write(conf / "db" / "mysql.yaml", "name: mysql\nport: 3306\n")
    _write(conf / "db" / "postgres.yaml", "name: postgres\nport: 5432\n")
    _write(
        conf / "schema_user" / "base.yaml", "defaults:\n  - /schemas/rated@_here_\n  - _self_\nrate: 1.5\n"
    )
    _write(conf / "empty_group" / ".keep", "")
    _write(conf / "outputs" / "old" / ".hydra" / "config.yaml", "not: shipped\n")
    searchpath = tmp_path / "sp"
    _write(searchpath / "extra_group" / "x.yaml", "x: 1\n")
    primary = conf / "config.yaml"
    primary.write_text(primary.read_text().replace("SEARCHPATH", str(searchpath)))
    pkg = tmp_path / "pkgroot" / "shipped_pkg_conf"
    _write(pkg / "__init__.py", "")
    _write(pkg / "pkgthing" / "one.yaml", "thing: one\n")
    _write(pkg / "pkgthing" / "two.yaml", "thing: two\n")
    _write(tmp_path / "schemaroot" / "rated_schema.py", RATED_SCHEMA)
    for module in ("shipped_pkg_conf", "rated_schema"):  # another test's copies, moved away since
        monkeypatch.delitem(sys.modules, module, raising=False)
    monkeypatch.syspath_prepend(str(tmp_path / "pkgroot"))
    monkeypatch.syspath_prepend(str(tmp_path / "schemaroot"))
    monkeypatch.setenv("SUBMIT_ONLY_VAR", "from the submit side")
    monkeypatch.chdir(tmp_path / "app")
    import rated_schema  # the app's schema module, as an app registers it

    ConfigStore.instance().store(group="schemas", name="rated", node=rated_schema.Rated)
    return tmp_path


RATED_SCHEMA = """\
from dataclasses import dataclass

@dataclass
class Rated:
    rate: float = 0.0
    label: str = "rated"
"""


# A sweeper plugin of this environment, absent from the worker: its ConfigStore nodes (hydra/sweeper/...) must
# not be needed. ISSUE 22: when the main environment moves to Optuna >= 4.9 and drops hydra-optuna-sweeper,
# this line becomes "optuna_stream" (Hydra's Optuna sweeper is then tested in .venv-optuna2:
# test_optuna2_env.py). The plugin's package and optuna are kept from the worker.
SWEEPER = "optuna_stream"


@pytest.fixture
def sweeper(missing: Any) -> str:
    """SWEEPER, installed in this environment (else skipped, or failed under CI)."""
    Plugins.instance()  # discovers the installed plugins, which register their configs
    if f"{SWEEPER}.yaml" not in ConfigStore.instance().list("hydra/sweeper"):
        missing(f"hydra/sweeper={SWEEPER} is not installed in this environment")
    return SWEEPER


def _sweeper_modules(sweeper_target: str) -> list[str]:
    """The modules a worker without the sweeper plugin lacks: the plugin's package (hydra_plugins.<name>)."""
    return [".".join(sweeper_target.split(".")[:2]), "optuna"]


def _compose_both_ways(
    root: Path,
    jobs: list[list[str]],
    *,
    schema_on_worker: bool,
    master_overrides: tuple[str, ...] = (),
    same_env: bool = False,
) -> tuple[list[str], Any, str]:
    sweep_dir = root / "app" / "multirun"
    htcondor_dir = sweep_dir / ".htcondor"
    with initialize_config_dir(config_dir=str(root / "app" / "conf"), version_base="1.3"):
        loader = GlobalHydra.instance().config_loader()
        master = loader.load_configuration(
            "config",
            [
                f"hydra.sweep.dir={sweep_dir}",
                "hydra.sweep.subdir=job_${hydra.job.num}",  # resolvable only in a job's config
                f"hydra/sweeper={SWEEPER}",
                *master_overrides,
            ],
            RunMode.MULTIRUN,
        )
        assert master.stamp  # resolved (and cached) on the submit side, as the sweep dir's ${now:} is
        expected = [OmegaConf.to_yaml(loader.load_sweep_config(master, job)) for job in jobs]
        blocked = _sweeper_modules(master.hydra.sweeper._target_)
        kit = _sources.build_kit(
            master,
            loader,
            cwd=os.getcwd(),
            htcondor_dir=str(htcondor_dir),
            sweep_dir=str(sweep_dir),
            same_env=same_env,
        )
    kit_file = root / "kit.pkl"
    kit_file.write_bytes(cloudpickle.dumps(kit))
    # What a worker with file transfer sees: its own copy of the snapshot; none of the originals.
    scratch = root / "scratch it's, [odd]"  # Hydra's override grammar must quote it
    shutil.copytree(kit.snapshot_dir, scratch / kit.snapshot_name)
    for gone in ("app/conf", "sp", "pkgroot"):
        shutil.move(root / gone, root / (gone.replace("/", "_") + ".moved"))
    env = {k: v for k, v in os.environ.items() if k not in ("SUBMIT_ONLY_VAR", "PYTHONPATH")}
    if schema_on_worker:  # the app's own modules are installed where its task runs
        env["PYTHONPATH"] = str(root / "schemaroot")
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            WORKER,
            str(kit_file),
            str(scratch / kit.snapshot_name),
            json.dumps(jobs),
            *blocked,
        ],
        cwd=scratch,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    return expected, json.loads(proc.stdout), proc.stderr


@pytest.mark.usefixtures("sweeper")
@pytest.mark.parametrize("searchpath_from", ["primary config", "command line"])
def test_workers_compose_exactly_what_the_submit_side_would(app: Path, searchpath_from: str) -> None:
    master_overrides: tuple[str, ...] = ()
    if searchpath_from == "command line":
        master_overrides = (f"hydra.searchpath=[file://{app / 'sp'},pkg://shipped_pkg_conf]",)
    # Shared mode also sends the submitting process's Hydra instance and plugins (the sweeper's too): a
    # worker that cannot import them (another hydra.launcher.python) composes without them.
    expected, composed, stderr = _compose_both_ways(
        app,
        JOBS,
        schema_on_worker=True,
        master_overrides=master_overrides,
        same_env=searchpath_from == "command line",
    )
    for job, want, got in zip(JOBS, expected, composed, strict=True):
        assert got == want, f"job {job} composed differently on the worker"
    # The checks that make the comparison meaningful: each job really differs, and the searchpath and
    # package sources, the schema and the env_copy variable were used.
    first, second, third = (OmegaConf.create(text) for text in composed)
    assert (first.db.name, first.db.port, second.db.name) == ("postgres", 1, "mysql")
    assert second.extra == "from_searchpath" and second.stamp_copy == second.stamp
    assert third.pkgthing.thing == "two" and third.schema_user.rate == 2.0
    assert isinstance(third.schema_user.rate, float)  # typed by the schema: the override's 2 became 2.0
    assert first.hydra.job.env_set.SUBMIT_ONLY_VAR == "from the submit side"
    assert first.hydra.runtime.cwd == str(app / "app")
    providers = {s.provider for s in first.hydra.runtime.config_sources}
    assert (
        f"hydra.searchpath in {'main' if searchpath_from == 'primary config' else 'command-line'}"
        in providers
    )
    # The sweeper's node, composed without its plugin: its class and its sampler's, as the plugin declares.
    target = first.hydra.sweeper._target_
    assert target.startswith("hydra_plugins.") and "Sweeper" in target, target
    assert first.hydra.sweeper.sampler._target_.startswith("optuna.samplers.")
    assert not stderr


@pytest.mark.usefixtures("sweeper")
def test_a_schema_the_worker_cannot_import_fails_in_one_line_naming_it(app: Path) -> None:
    _, composed, _ = _compose_both_ways(app, JOBS[2:], schema_on_worker=False)
    assert composed["error"] == "MissingClassError", composed
    message = composed["message"]
    assert message.startswith("rated_schema.Rated, a class of the sweep's configs") and "\n" not in message
    assert "install 'rated_schema' where the jobs run" in message and "transfer_input_files" in message


@pytest.mark.usefixtures("sweeper")
def test_a_config_store_node_no_job_reads_needs_no_class_on_the_worker(
    app: Path, tmp_path: Path, monkeypatch
):
    # A process registers configs it never composes (an imported library's, another app's schema): their
    # classes missing on the worker must not fail the jobs; only a node a job reads needs its class.
    _write(
        tmp_path / "libonly" / "lib_schema.py",
        "from dataclasses import dataclass\n\n\n@dataclass\nclass LibThing:\n    size: int = 3\n",
    )
    monkeypatch.syspath_prepend(str(tmp_path / "libonly"))  # the submit side alone has it
    from lib_schema import LibThing  # type: ignore[import-not-found]

    ConfigStore.instance().store(group="lib", name="thing", node=LibThing)
    expected, composed, _ = _compose_both_ways(app, JOBS, schema_on_worker=True)
    assert composed == expected


def _kit_of(app: Path) -> _sources.Kit:
    """The kit of a sweep of the app, as the launcher builds it."""
    sweep_dir = app / "app" / "multirun"
    with initialize_config_dir(config_dir=str(app / "app" / "conf"), version_base="1.3"):
        loader = GlobalHydra.instance().config_loader()
        master = loader.load_configuration("config", [f"hydra.sweep.dir={sweep_dir}"], RunMode.MULTIRUN)
        return _sources.build_kit(
            master,
            loader,
            cwd=os.getcwd(),
            htcondor_dir=str(sweep_dir / ".htcondor"),
            sweep_dir=str(sweep_dir),
            same_env=True,
        )


def _old_outputs(conf: Path, n: int) -> None:
    """What Hydra leaves in a project run with config_path=".": sweeps, runs, a venv, bytecode."""
    for i in range(n):
        sweep = conf / "multirun" / "2026-01-01" / f"12-00-{i:02d}"
        _write(sweep / "multirun.yaml", f"hydra: {{sweep: {{n: {i}}}}}\n")
        _write(sweep / "0" / ".hydra" / "config.yaml", "db: {}\n")
        _write(sweep / "0" / "metrics.yaml", f"loss: {i}\n")  # a task's output, beside .hydra/
        _write(conf / "outputs" / f"run{i}" / ".hydra" / "hydra.yaml", "a: 1\n")
        _write(conf / "outputs" / f"run{i}" / "results.yaml", "b: 1\n")
    _write(conf / "venv" / "pyvenv.cfg", "home = /usr/bin\n")
    _write(conf / "venv" / "lib" / "site.yaml", "c: 1\n")
    _write(conf / "__pycache__" / "x.yaml", "d: 1\n")


def test_the_snapshot_holds_config_files_only_and_is_content_addressed(app: Path) -> None:
    conf = app / "app" / "conf"
    _old_outputs(conf, 3)
    kits = [_kit_of(app) for _ in range(2)]
    assert kits[0].snapshot_dir == kits[1].snapshot_dir  # the same configs, one snapshot
    _old_outputs(conf, 6)  # more runs and sweeps since: still the same configs
    _write(conf / "another_empty_group" / "README", "")
    assert _kit_of(app).snapshot_dir == kits[0].snapshot_dir
    (conf / "db" / "mysql.yaml").write_text("name: mysql\nport: 1\n")
    changed = _kit_of(app)
    assert changed.snapshot_dir != kits[0].snapshot_dir
    snapshot = Path(kits[0].snapshot_dir)
    files = {str(p.relative_to(snapshot)) for p in snapshot.rglob("*") if p.is_file()}
    main = kits[0].shipped[("file", str(conf))]
    assert f"{main}/db/mysql.yaml" in files and f"{main}/config.yaml" in files
    assert {f.split("/")[1] for f in files if f.startswith(f"{main}/")} == {
        "config.yaml",
        "db",
        "schema_user",
    }
    assert not (snapshot / main / "empty_group").exists()  # no config in it: not in the hash either


@pytest.mark.parametrize(
    ("template", "expect_fast"),
    [
        ("${hydra.job.num}", True),
        ("${hydra.job.override_dirname}", True),
        ("run_${hydra.job.num}-${hydra.job.name}", True),
        ("${now:%H-%M-%S}", False),
        ("${db.name}_${hydra.job.num}", False),
    ],
)
def test_job_subdir_without_composing_matches_hydra(app: Path, template: str, expect_fast: bool) -> None:
    sweep_dir = app / "app" / "multirun"
    with initialize_config_dir(config_dir=str(app / "app" / "conf"), version_base="1.3"):
        loader = GlobalHydra.instance().config_loader()
        master = loader.load_configuration(
            "config", [f"hydra.sweep.dir={sweep_dir}", f"hydra.sweep.subdir={template}"], RunMode.MULTIRUN
        )
        namer = _sources.subdir_namer(master)
        for num, job in enumerate([*JOBS[:1], ["db=mysql", "db.port=7"], ["hydra.job.name=x"]]):
            fast = namer(job, num)
            if job[0].startswith("hydra."):
                assert fast is None  # a job that changes hydra.* is composed to know its folder
                continue
            if not expect_fast:
                assert fast is None
                continue
            composed = loader.load_sweep_config(master, job)
            composed.hydra.job.num = num
            assert fast == composed.hydra.sweep.subdir


def test_a_config_path_full_of_yaml_is_refused_in_one_line(
    app: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from importlib import resources

    hydra_own = sum(1 for _ in _sources._config_tree(resources.files("hydra.conf"), set()))
    monkeypatch.setattr(_sources, "MAX_FILES", hydra_own + 10)
    for i in range(hydra_own + 10):
        _write(app / "app" / "conf" / "many" / f"c{i}.yaml", "a: 1\n")
    with pytest.raises(
        ConfigError, match=r"config search path entry file://.*conf holds more than \d+ config files"
    ) as err:
        _kit_of(app)
    assert "\n" not in str(err.value)
