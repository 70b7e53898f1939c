"""Golden files of the generated submit description (and packed-mode wrapper) for every environment mode.

Regenerate after an intended change:
    UPDATE_GOLDEN=1 python -m pytest launchers/tests/test_submit_golden.py
"""

import os
from pathlib import Path

import pytest
from hydra_plugins.hydra_htcondor_launcher import _submit
from hydra_plugins.hydra_htcondor_launcher._layout import SweepLayout
from hydra_plugins.hydra_htcondor_launcher._settings import validate
from hydra_plugins.hydra_htcondor_launcher.config import EnvMode, HTCondorLauncherConf

GOLDEN = Path(__file__).parent / "golden"
SWEEP = "/data/sweeps/2026-01-01/12-00-00"
CWD = "/home/user/project"


def _conf(**overrides):
    params = {
        "request_cpus": 2,
        "request_gpus": 1,
        "request_memory": "8GB",
        "request_disk": "10GB",
        "gpus_minimum_capability": 7.5,
        "gpus_minimum_memory": 10000,
        "requirements": ["OpSysMajorVer == 9", 'Arch == "X86_64"'],
        "env_mode": EnvMode.shared,
        "container_image": None,
        "python": "/opt/venv/bin/python",
        "packed_env": None,
        "packed_unpack": None,
        "transfer_files": False,
        "transfer_input_files": [],
        "htcondor_dir": f"{SWEEP}/.htcondor",
        "submit_commands": {"+JobDurationCategory": '"Medium"', "+WantGPULab": "true"},
        "environment": {"OMP_NUM_THREADS": "2", "GREETING": "hello world"},
        "batch_name": "mnist_app",
        "schedd": None,
        "collector": None,
        "poll_interval": 0.5,
        "status_interval": 15.0,
        "timeout_min": 60.0,
        "max_releases": 0,
        # The settings added for real pools, off here, so the golden files that predate them keep showing
        # the same description; the defaults_* cases show them at their defaults.
        "checkpoint_exit_code": None,
        "getenv": False,
    }
    params.update(overrides)
    return HTCondorLauncherConf(**params)


def _validate(conf):
    return validate(conf, cwd=CWD, sweep_dir=SWEEP, default_python="/unused/python")


CASES = {
    "shared": {},
    "shared_transfer": {"transfer_files": True},
    "container_transfer": {
        "env_mode": EnvMode.container,
        "container_image": "docker://ghcr.io/example/mnist-app:gpu",
        "python": None,
        "transfer_files": True,
    },
    "packed_transfer": {
        "env_mode": EnvMode.packed,
        "packed_env": "PACKED",
        "python": None,
        "transfer_files": True,
    },
    "packed_shared": {"env_mode": EnvMode.packed, "packed_env": "PACKED", "python": None},
    # The defaults of the real-pool settings: self-checkpointing (exit 85) and, on a shared filesystem, the
    # submitting environment minus what the execute side sets.
    "defaults_shared": {"checkpoint_exit_code": 85, "getenv": None},
    "defaults_transfer": {"checkpoint_exit_code": 85, "getenv": None, "transfer_files": True},
    "retries_cap_getenv": {
        "max_retries": 2,
        "max_running": 10,
        "getenv": ["PROJECT_ROOT", "WANDB_*"],
        "job_lease_minutes": 5,
    },
    "retry_task_errors": {"max_retries": 1, "retry_on_task_error": True, "transfer_files": True},
    "cpu_minimal": {
        "request_gpus": 0,
        "gpus_minimum_capability": None,
        "gpus_minimum_memory": None,
        "requirements": [],
        "submit_commands": {},
        "environment": {},
        "request_cpus": 1,
    },
}


def _check(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("UPDATE_GOLDEN") == "1":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    assert path.exists(), f"{path} missing: run with UPDATE_GOLDEN=1 to create it"
    assert text == path.read_text(), f"{name} differs from its golden file (UPDATE_GOLDEN=1 regenerates)"


@pytest.mark.parametrize("case", sorted(CASES))
def test_submit_description_matches_golden(case, tmp_path):
    overrides = dict(CASES[case])
    archive = None
    if overrides.get("packed_env") == "PACKED":
        # The archive must exist to validate; its folder is replaced by a fixed one in the golden text.
        archive = tmp_path / "mnist-env.tar.gz"
        archive.write_bytes(b"")
        overrides["packed_env"] = str(archive)
    settings = _validate(_conf(**overrides))
    subdirs = ["4", "5", "6"] if settings.transfer_files else []
    batch_inputs = [
        SweepLayout(SWEEP).common("0123abcd"),
        SweepLayout(SWEEP).snapshot("4567"),
    ]
    if settings.ships_code:  # the app's code snapshot (_core.prepare adds it where the jobs run from it)
        batch_inputs.append(SweepLayout(SWEEP).code("89ab"))
    plan = _submit.build_submit(
        settings, sweep_dir=SWEEP, cwd=CWD, job_nums=[4, 5, 6], job_subdirs=subdirs, batch_inputs=batch_inputs
    )
    text = _submit.render(plan)
    if archive is not None:
        text = text.replace(str(tmp_path), "/home/user/envs")
    _check(f"{case}.sub", text)
    if plan.wrapper_text is not None:
        _check("packed-env-wrapper.sh", plan.wrapper_text)
        assert plan.wrapper_path == f"{SWEEP}/.htcondor/packed-env-wrapper.sh"


def test_itemdata_is_one_proc_per_job():
    settings = _validate(_conf())
    plan = _submit.build_submit(settings, sweep_dir=SWEEP, cwd=CWD, job_nums=[0, 1, 2])
    assert plan.itemdata == [{"job_num": "0"}, {"job_num": "1"}, {"job_num": "2"}]
    assert plan.description["log"] == f"{SWEEP}/.htcondor/batch-0-2.log"


def test_requirements_are_and_combined_never_replaced():
    settings = _validate(_conf(requirements=["A == 1", "B =?= True"]))
    desc = _submit.build_submit(settings, sweep_dir=SWEEP, cwd=CWD, job_nums=[0]).description
    assert desc["requirements"] == "(A == 1) && (B =?= True)"
    # The GPU constraints stay separate commands; HTCondor ANDs them with requirements itself.
    assert desc["gpus_minimum_capability"] == "7.5" and desc["gpus_minimum_memory"] == "10000"


CONTAINER = CASES["container_transfer"]


@pytest.mark.parametrize(
    ("commands", "network", "warned"),
    [
        ({}, "host", False),  # the launcher's choice: chirp's server listens on loopback only
        ({"docker_network_type": "host"}, "host", False),
        ({"Docker_Network_Type": "none"}, "none", True),  # the user's, in any case, wins
        ({"docker_network_type": ""}, "", True),  # docker's default network
    ],
    ids=["unset", "host", "none", "default"],
)
def test_container_jobs_get_the_host_network_for_chirp_unless_the_user_names_one(
    commands, network, warned, caplog
):
    with caplog.at_level("WARNING", logger="hydra_plugins.hydra_htcondor_launcher._settings"):
        settings = _validate(_conf(**CONTAINER, submit_commands=commands))
    plan = _submit.build_submit(settings, sweep_dir=SWEEP, cwd=CWD, job_nums=[0], job_subdirs=["0"])
    desc = plan.description
    assert [value for key, value in desc.items() if key.lower() == "docker_network_type"] == [network]
    lines = [r.getMessage() for r in caplog.records]
    if warned:
        assert len(lines) == 1, lines
        assert f"hydra.launcher.submit_commands.docker_network_type={network!r}:" in lines[0]
        assert "reports" in lines[0] and "cannot reach HTCondor's chirp server" in lines[0]
    else:
        assert lines == []


def test_packed_wrapper_runs_python_from_the_unpacked_env(tmp_path):
    """Run the generated wrapper for real on a tarball of a tiny fake environment."""
    import subprocess
    import tarfile

    env = tmp_path / "src"
    (env / "bin").mkdir(parents=True)
    py = env / "bin" / "python"
    py.write_text('#!/bin/sh\necho "fake python args: $*"\nexit 7\n')
    py.chmod(0o755)
    archive = tmp_path / "job" / "env.tar.gz"
    archive.parent.mkdir()
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(env / "bin", arcname="bin")
    settings = _validate(_conf(env_mode=EnvMode.packed, packed_env=str(archive), python=None))
    wrapper = tmp_path / "job" / "wrapper.sh"
    wrapper.write_text(_submit.wrapper_script(settings))
    proc = subprocess.run(
        ["sh", str(wrapper), "env.tar.gz", "env/bin/python", "-m", "mod", "spec"],
        cwd=tmp_path / "job",
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 7, proc.stderr
    assert "fake python args: -m mod spec" in proc.stdout
    # Neither the archive nor the unpacked env is left to travel back as output.
    assert sorted(p.name for p in (tmp_path / "job").iterdir()) == ["wrapper.sh"]


def test_packed_wrapper_exits_with_its_reserved_code_when_the_archive_has_no_python(tmp_path):
    """The wrapper's own exit codes come from the launcher's one table (which checkpoint_exit_code may not
    reuse): a missing Python must never read as "checkpointed, restart me"."""
    import re
    import subprocess
    import tarfile

    from hydra_plugins.hydra_htcondor_launcher._contract import NO_PACKED_PYTHON, WORKER_EXIT_CODES

    (tmp_path / "src" / "lib").mkdir(parents=True)
    archive = tmp_path / "job" / "env.tar"
    archive.parent.mkdir()
    with tarfile.open(archive, "w") as tar:
        tar.add(tmp_path / "src" / "lib", arcname="lib")
    settings = _validate(_conf(env_mode=EnvMode.packed, packed_env=str(archive), python=None))
    text = _submit.wrapper_script(settings)
    own = {int(code) for code in re.findall(r"^\s*exit (\d+)\s*$", text, flags=re.M)}
    assert own == {NO_PACKED_PYTHON} and own <= set(WORKER_EXIT_CODES)
    wrapper = tmp_path / "job" / "wrapper.sh"
    wrapper.write_text(text)
    proc = subprocess.run(
        ["sh", str(wrapper), "env.tar", "env/bin/python", "-m", "mod"],
        cwd=tmp_path / "job",
        capture_output=True,
        text=True,
    )
    assert proc.returncode == NO_PACKED_PYTHON, proc.stderr
    assert "hydra-htcondor-launcher: no Python at " in proc.stderr
