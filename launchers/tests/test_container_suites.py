"""Hydra's own launcher suites with env_mode=container: every job runs in the worker test image
(mnist-app-test-worker:latest, which has Hydra, cloudpickle and the launcher, no other Hydra plugin) in
HTCondor's container universe on the local pool, with file transfer.

Every test of IntegrationTestSuite runs a task that writes `output.txt` to an absolute path in the test's
folder on the submit side, which a container job cannot see (it sees only its scratch folder, see
launchers/README.md): those are expected to fail, each for its stated reason, and fail the run if they pass.
"""

import functools
import subprocess
from collections.abc import Callable
from typing import Any

import pytest
from hydra.test_utils.launcher_common_tests import IntegrationTestSuite, LauncherTestSuite

IMAGE = "docker://mnist-app-test-worker:latest"
CONTAINER = [
    "hydra.launcher.env_mode=container",
    f"hydra.launcher.container_image={IMAGE}",
    "hydra.launcher.transfer_files=true",
    "hydra.launcher.poll_interval=0.1",
    "hydra.launcher.request_memory=256MB",
]

pytestmark = [pytest.mark.condor, pytest.mark.container, pytest.mark.usefixtures("container_worker")]

OUTSIDE_JOB_FOLDER = (
    "the task writes output.txt to an absolute path in the test's folder on the submit side; in the "
    "container that folder does not exist (FileNotFoundError), and only the job folder travels back"
)


def _cannot_pass(name: str, reason: str) -> Callable[..., Any]:
    """IntegrationTestSuite's test `name` (its parametrization kept), expected to fail for `reason`."""
    base = getattr(IntegrationTestSuite, name)

    @pytest.mark.xfail(strict=True, raises=subprocess.CalledProcessError, reason=reason)
    @functools.wraps(base)
    def test(self: Any, *args: Any, **kwargs: Any) -> None:
        base(self, *args, **kwargs)

    return test


@pytest.mark.parametrize("launcher_name, overrides", [("htcondor", CONTAINER)])
class TestContainerLauncher(LauncherTestSuite):
    pass


@pytest.mark.parametrize(
    "task_launcher_cfg, extra_flags",
    [
        (
            {},
            [
                "-m",
                "hydra/hydra_logging=disabled",
                "hydra/job_logging=disabled",
                "hydra/launcher=htcondor",
                *CONTAINER,
            ],
        )
    ],
)
class TestContainerLauncherIntegration(IntegrationTestSuite):
    test_custom_task_name = _cannot_pass("test_custom_task_name", OUTSIDE_JOB_FOLDER)
    test_custom_sweeper_run_workdir = _cannot_pass(
        "test_custom_sweeper_run_workdir",
        OUTSIDE_JOB_FOLDER + "; and with subdir:override_dirname the job folder 'a=1,b=2' has a ',', which "
        "HTCondor's transfer_output_files cannot carry, so the launcher refuses it before submitting",
    )
    test_get_orig_dir_multirun = _cannot_pass("test_get_orig_dir_multirun", OUTSIDE_JOB_FOLDER)
    test_to_absolute_path_multirun = _cannot_pass("test_to_absolute_path_multirun", OUTSIDE_JOB_FOLDER)
