"""Launcher settings: the dataclass is the schema (OmegaConf rejects bad types and choices at composition),
validate() adds the remaining checks; each bad value gives one line naming field, value and what fits."""

import dataclasses
import re
from pathlib import Path

import pytest
from _launch_helpers import TRIVIAL_APP, run_script_app
from hydra import compose, initialize
from hydra.errors import ConfigCompositionException
from hydra_plugins.hydra_htcondor_launcher._contract import WORKER_EXIT_CODES
from hydra_plugins.hydra_htcondor_launcher._errors import ConfigError
from hydra_plugins.hydra_htcondor_launcher._settings import Settings, validate
from hydra_plugins.hydra_htcondor_launcher.config import EnvMode, HTCondorLauncherConf, OnInterrupt
from omegaconf import OmegaConf

README = Path(__file__).parents[1] / "README.md"


def _conf(**overrides):
    params = {"batch_name": "app", "htcondor_dir": "/sweep/.htcondor", **overrides}
    return HTCondorLauncherConf(**params)


def _validate(conf, cwd="/work"):
    return validate(conf, cwd=cwd, sweep_dir="/sweep", default_python="/venv/bin/python")


def test_defaults_are_valid():
    s = _validate(_conf())
    assert isinstance(s, Settings) and isinstance(s, HTCondorLauncherConf)
    assert s.python == "/venv/bin/python" and s.env_mode == EnvMode.shared and s.request_gpus == 0
    assert s.universe == "vanilla" and s.shared_filesystem and s.timeout_s == 1440.0 * 60


def test_settings_have_every_field_once():
    # Settings adds derived values only: the fields are the config dataclass's own.
    assert dataclasses.fields(Settings) == dataclasses.fields(HTCondorLauncherConf)
    assert "universe" not in {f.name for f in dataclasses.fields(HTCondorLauncherConf)}


@pytest.mark.parametrize("code", sorted(WORKER_EXIT_CODES))
def test_checkpoint_exit_code_may_not_be_one_the_launcher_reserves(code, tmp_path):
    # e.g. 97 (the packed wrapper's "no Python") would restart a job without Python forever.
    with pytest.raises(ConfigError) as info:
        _validate(_conf(checkpoint_exit_code=code), cwd=str(tmp_path))
    text = str(info.value)
    assert text.startswith(f"hydra.launcher.checkpoint_exit_code={code} is invalid: expected an exit code")
    assert all(f"{c} ({what})" in text for c, what in WORKER_EXIT_CODES.items()) and "\n" not in text


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"request_gpus": -1}, "hydra.launcher.request_gpus=-1 is invalid: expected an integer >= 0"),
        ({"request_cpus": 0}, "request_cpus=0 is invalid: expected an integer >= 1"),
        ({"request_memory": "lots"}, "request_memory='lots' is invalid: expected an integer in MiB"),
        ({"env_mode": EnvMode.container}, "container_image is not set"),
        ({"container_image": "docker://x"}, "only used with env_mode=container (it is 'shared')"),
        ({"env_mode": EnvMode.packed}, "packed_env is not set"),
        ({"env_mode": EnvMode.packed, "packed_env": "/nope.tar"}, "packed_env='/nope.tar' is invalid"),
        ({"packed_unpack": "tar -xf x"}, "only used with env_mode=packed"),
        ({"gpus_minimum_capability": 7.0}, "needs hydra.launcher.request_gpus >= 1"),
        ({"request_gpus": 1, "gpus_minimum_memory": 0}, "gpus_minimum_memory=0 is invalid"),
        ({"python": "python3"}, "python='python3' is invalid: expected an absolute path"),
        ({"transfer_input_files": ["missing.txt"]}, "'missing.txt', which does not exist"),
        ({"requirements": ["A == 1", " "]}, "requirements=['A == 1', ' '] is invalid"),
        (
            {"submit_commands": {"executable": "/bin/true"}},
            "submit_commands.executable is set by the launcher",
        ),
        (
            {"submit_commands": {"Requirements": "x"}},
            "use hydra.launcher.requirements (a list, AND-combined)",
        ),
        ({"submit_commands": {"request_GPUs": "2"}}, "use hydra.launcher.request_gpus instead"),
        ({"submit_commands": {"universe": "docker"}}, "use hydra.launcher.env_mode instead"),
        ({"environment": {"BAD-NAME": "1"}}, "bad key 'BAD-NAME'"),
        ({"batch_name": 'a"b'}, "expected a non-empty string without double quotes"),
        ({"schedd": " "}, "schedd=' ' is invalid: expected a non-empty string or null"),
        ({"timeout_min": 0}, "timeout_min=0 is invalid: expected a number > 0"),
        ({"max_releases": -2}, "max_releases=-2 is invalid"),
        ({"transfer_files": True, "htcondor_dir": "/elsewhere"}, "must be inside hydra.sweep.dir (/sweep)"),
        ({"checkpoint_exit_code": 0}, "checkpoint_exit_code=0 is invalid: expected an exit code 1-255"),
        ({"checkpoint_exit_code": 80}, "other than those the launcher reserves for itself (2 (result not"),
        ({"checkpoint_exit_code": 256}, "checkpoint_exit_code=256 is invalid"),
        ({"max_retries": -1}, "max_retries=-1 is invalid: expected an integer >= 0"),
        ({"retry_on_task_error": True}, "retry_on_task_error=true needs hydra.launcher.max_retries >= 1"),
        ({"max_running": 0}, "max_running=0 is invalid: expected an integer >= 1, or null"),
        (
            {"job_lease_minutes": 0},
            "job_lease_minutes=0 is invalid: expected an integer number of minutes >= 1, or null",
        ),
        ({"job_lease_minutes": -5}, "job_lease_minutes=-5 is invalid"),
        ({"submit_commands": {"job_lease_duration": "60"}}, "use hydra.launcher.job_lease_minutes instead"),
        ({"getenv": ["OK", "BAD-NAME"]}, "getenv=['OK', 'BAD-NAME'] is invalid: expected true, false, null"),
        ({"getenv": 3}, "getenv=3 is invalid"),
        ({"on_interrupt": "pause"}, "on_interrupt='pause' is invalid: expected 'remove' or 'keep'"),
        ({"request_gpus": 1, "gpus_minimum_capability": 0}, "gpus_minimum_capability=0 is invalid"),
        ({"poll_interval": -1}, "poll_interval=-1 is invalid: expected a number > 0"),
        ({"max_releases": True}, "max_releases=True is invalid: expected an integer >= 0"),
        ({"code_snapshot": "sometimes"}, "code_snapshot='sometimes' is invalid: expected 'auto', 'always'"),
        ({"code_modules": ["my_app", "src/pkg"]}, "code_modules='src/pkg' is invalid: expected a top-level"),
        ({"code_modules": ["pkg.sub"]}, "code_modules='pkg.sub' is invalid"),
        ({"code_snapshot": "off", "code_modules": ["my_app"]}, "code_modules is only used with code_"),
    ],
)
def test_bad_values_give_one_clear_line(overrides, message, tmp_path):
    with pytest.raises(ConfigError) as info:
        _validate(_conf(**overrides), cwd=str(tmp_path))
    text = str(info.value)
    assert message in text
    assert "\n" not in text


def test_container_mode_implies_container_universe_and_python3():
    s = _validate(_conf(env_mode=EnvMode.container, container_image="docker://img", transfer_files=True))
    assert s.universe == "container" and s.python == "python3" and not s.shared_filesystem


@pytest.mark.parametrize(
    "overrides, ships",
    [
        ({}, False),  # a shared filesystem: the code is imported in place (README, "The app's own code")
        ({"code_snapshot": "always"}, True),
        ({"transfer_files": True}, True),
        ({"transfer_files": True, "code_snapshot": "off"}, False),
        ({"env_mode": EnvMode.container, "container_image": "docker://img", "transfer_files": True}, True),
    ],
)
def test_which_jobs_run_from_the_code_snapshot(overrides, ships):
    assert _validate(_conf(**overrides)).ships_code is ships


def test_container_mode_on_a_shared_filesystem_is_refused():
    # The container sees only the job's scratch folder: the sweep folder would be invisible or unwritable.
    needs = r"^hydra.launcher.env_mode=container needs hydra.launcher.transfer_files=true: "
    with pytest.raises(ConfigError, match=needs):
        _validate(_conf(env_mode=EnvMode.container, container_image="docker://img"))


def test_relative_paths_are_taken_from_cwd(tmp_path):
    (tmp_path / "data.txt").write_text("x")
    s = _validate(_conf(transfer_input_files=["data.txt"], htcondor_dir="out"), cwd=str(tmp_path))
    assert s.transfer_input_files == [str(tmp_path / "data.txt")]
    assert s.htcondor_dir == str(tmp_path / "out")


def _compose(*overrides):
    import hydra_plugins.hydra_htcondor_launcher.config  # noqa: F401 - registers hydra/launcher: htcondor

    with initialize(version_base=None, config_path=None):
        return compose(overrides=["hydra/launcher=htcondor", *overrides], return_hydra_config=True)


def test_composition_gives_an_env_mode_enum():
    cfg = _compose("hydra.launcher.env_mode=packed")
    assert cfg.hydra.launcher.env_mode == EnvMode.packed


def test_on_interrupt_is_an_enum_and_a_plain_string_still_validates():
    cfg = _compose("hydra.launcher.on_interrupt=keep")
    assert cfg.hydra.launcher.on_interrupt == OnInterrupt.keep
    assert _validate(_conf(on_interrupt="keep")).on_interrupt is OnInterrupt.keep


BOUNDED = [f for f in dataclasses.fields(HTCondorLauncherConf) if "bound" in f.metadata]


@pytest.mark.parametrize("f", BOUNDED, ids=[f.name for f in BOUNDED])
def test_a_bound_declared_beside_its_field_is_checked_at_its_edge(f):
    bound = f.metadata["bound"]
    needs = {"request_gpus": 1} if f.name.startswith("gpus_") else {}
    edge = bound.least + (1 if bound.strict else 0)
    assert getattr(_validate(_conf(**needs, **{f.name: edge})), f.name) == edge
    outside = bound.least if bound.strict else bound.least - 1
    with pytest.raises(ConfigError) as info:
        _validate(_conf(**needs, **{f.name: outside}))
    op = ">" if bound.strict else ">="
    assert str(info.value) == (
        f"hydra.launcher.{f.name}={outside!r} is invalid: expected {bound.what} {op} {bound.least}"
        + (", or null" if f.default is None else "")
    )


def test_the_simple_bounds_are_declared_in_config_py():
    # The numeric settings whose only check is a minimum; _settings.validate re-lists none of them.
    assert {f.name for f in BOUNDED} == {
        "request_cpus",
        "request_gpus",
        "gpus_minimum_capability",
        "gpus_minimum_memory",
        "max_retries",
        "max_running",
        "job_lease_minutes",
        "poll_interval",
        "status_interval",
        "timeout_min",
        "max_releases",
    }


@pytest.mark.parametrize(
    "override, message",
    [
        (
            "hydra.launcher.env_mode=conda",
            "Invalid value 'conda', expected one of [shared, container, packed]",
        ),
        ("hydra.launcher.request_gpu=1", "Key 'request_gpu' not in 'HTCondorLauncherConf'"),
        ("hydra.launcher.universe=container", "Key 'universe' not in 'HTCondorLauncherConf'"),
        ("hydra.launcher.request_cpus=many", "Value 'many' of type 'str' could not be converted to Integer"),
        ("hydra.launcher.on_interrupt=pause", "Invalid value 'pause', expected one of [remove, keep]"),
        (
            "hydra.launcher.job_lease_minutes=1.5",
            "Value '1.5' of type 'float' could not be converted to Integer",
        ),
    ],
)
def test_composition_rejects_bad_types_and_choices(override, message):
    with pytest.raises(ConfigCompositionException) as info:
        _compose(override)
    assert message in str(info.value.__cause__)


def test_bad_env_mode_on_the_command_line_fails_before_anything_runs(tmp_path):
    proc = run_script_app(tmp_path, TRIVIAL_APP, "hydra.launcher.env_mode=conda", "+x=1,2", timeout=120)
    assert proc.returncode == 1
    assert "Invalid value 'conda', expected one of [shared, container, packed]" in proc.stderr
    assert "full_key: hydra.launcher.env_mode" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "multirun").exists()


def _readme_settings() -> dict[str, str]:
    """{field: default} from the README's settings table (the first table whose header is field|default)."""
    lines = README.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if re.match(r"\|\s*field\s*\|\s*default\s*\|", line))
    rows = {}
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        rows[cells[0].strip("`")] = cells[1].strip("`")
    return rows


def _shown(value) -> str:
    """A default as the README writes it: YAML-ish (null, false, [], {}), interpolations verbatim."""
    return OmegaConf.to_yaml({"v": value}).split(":", 1)[1].strip().strip("'")


def test_readme_settings_table_matches_the_dataclass():
    fields = {f.name: f for f in dataclasses.fields(HTCondorLauncherConf) if f.name != "_target_"}
    rows = _readme_settings()
    assert list(rows) == list(fields), "README settings table: names or order differ from config.py"
    for name, f in fields.items():
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        assert rows[name] == _shown(default), (
            f"README default of {name}: {rows[name]!r}, config.py: {default!r}"
        )


@pytest.mark.parametrize(
    "overrides, expected",
    [
        ({}, "*, !CUDA_VISIBLE_DEVICES, "),  # shared filesystem: all, minus the execute side's variables
        ({"transfer_files": True}, None),  # no shared filesystem: nothing unless named
        ({"getenv": True}, "true"),
        ({"getenv": False}, None),
        ({"getenv": ["PROJECT_ROOT", "WANDB_*"]}, "PROJECT_ROOT, WANDB_*"),
        ({"getenv": "PROJECT_ROOT, !SECRET"}, "PROJECT_ROOT, !SECRET"),
    ],
)
def test_getenv_command(overrides, expected):
    got = _validate(_conf(**overrides)).getenv_command
    if expected is None or not expected.endswith(", "):
        assert got == expected
    else:
        assert got.startswith(expected)
        for name in ("OMP_NUM_THREADS", "_CONDOR_*", "GPU_DEVICE_ORDINAL", "TMPDIR"):
            assert f"!{name}" in got.split(", ")
