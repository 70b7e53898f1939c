"""Validation of launcher settings: each bad value gives one line naming field, value and what fits."""

import pytest
from hydra_plugins.hydra_htcondor_launcher._errors import ConfigError
from hydra_plugins.hydra_htcondor_launcher._settings import validate
from hydra_plugins.hydra_htcondor_launcher.config import HTCondorLauncherConf
from omegaconf import OmegaConf


def _defaults(**overrides):
    params = OmegaConf.to_container(OmegaConf.structured(HTCondorLauncherConf))
    params["batch_name"] = "app"
    params["htcondor_dir"] = "/sweep/.htcondor"
    params.update(overrides)
    return params


def test_defaults_are_valid():
    s = validate(_defaults(), cwd="/work", default_python="/venv/bin/python")
    assert s.python == "/venv/bin/python" and s.env_mode == "shared" and s.request_gpus == 0


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"request_gpus": -1}, "hydra.launcher.request_gpus=-1 is invalid: expected an integer >= 0"),
        ({"request_cpus": 0}, "request_cpus=0 is invalid: expected an integer >= 1"),
        ({"request_memory": "lots"}, "request_memory='lots' is invalid: expected an integer in MiB"),
        ({"env_mode": "conda"}, "env_mode='conda' is invalid: expected one of shared, container, packed"),
        ({"universe": "docker"}, "universe='docker' is invalid: expected one of vanilla, container"),
        ({"env_mode": "container"}, "container_image is not set"),
        ({"container_image": "docker://x"}, "only used with env_mode=container"),
        ({"env_mode": "packed"}, "packed_env is not set"),
        ({"env_mode": "packed", "packed_env": "/nope.tar"}, "packed_env='/nope.tar' is invalid"),
        ({"gpus_minimum_capability": 7.0}, "needs hydra.launcher.request_gpus >= 1"),
        ({"python": "python3"}, "python='python3' is invalid: expected an absolute path"),
        ({"transfer_input_files": ["missing.txt"]}, "'missing.txt', which does not exist"),
        (
            {"submit_commands": {"executable": "/bin/true"}},
            "submit_commands.executable is set by the launcher",
        ),
        (
            {"submit_commands": {"Requirements": "x"}},
            "use hydra.launcher.requirements (a list, AND-combined)",
        ),
        ({"submit_commands": {"request_GPUs": "2"}}, "use hydra.launcher.request_gpus instead"),
        ({"environment": {"BAD-NAME": "1"}}, "bad key 'BAD-NAME'"),
        ({"timeout_min": 0}, "timeout_min=0 is invalid: expected a number > 0"),
        ({"max_releases": -2}, "max_releases=-2 is invalid"),
        ({"request_gpu": 1}, "hydra.launcher.request_gpu is not a setting"),
    ],
)
def test_bad_values_give_one_clear_line(overrides, message, tmp_path):
    with pytest.raises(ConfigError) as info:
        validate(_defaults(**overrides), cwd=str(tmp_path), default_python="/venv/bin/python")
    text = str(info.value)
    assert message in text
    assert "\n" not in text


def test_container_mode_implies_container_universe_and_python3():
    s = validate(
        _defaults(env_mode="container", container_image="docker://img"), cwd="/w", default_python="/p"
    )
    assert s.universe == "container" and s.python == "python3"
