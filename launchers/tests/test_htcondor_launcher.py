"""Hydra's own launcher test suites, run against the real HTCondor test pool."""

import subprocess
import sys

import pytest
from hydra.core.plugins import Plugins
from hydra.plugins.launcher import Launcher
from hydra.test_utils.launcher_common_tests import (
    BatchedSweeperTestSuite,
    IntegrationTestSuite,
    LauncherTestSuite,
)
from hydra_plugins.hydra_htcondor_launcher.htcondor_launcher import HTCondorLauncher

# Short event-log polling keeps each batch close to the pool's own latency (~2-3 s).
FAST = ["hydra.launcher.poll_interval=0.1", "hydra.launcher.request_memory=256MB"]


def test_discovery() -> None:
    assert HTCondorLauncher.__name__ in [x.__name__ for x in Plugins.instance().discover(Launcher)]


def test_plugin_import_is_light() -> None:
    # Hydra imports every plugin module at start-up; the bindings and cloudpickle must wait for launch().
    code = (
        "import sys, hydra_plugins.hydra_htcondor_launcher.htcondor_launcher, "
        "hydra_plugins.hydra_htcondor_launcher.config, hydra_plugins.hydra_htcondor_launcher.sweep\n"
        "heavy = [m for m in ('htcondor2', 'classad2', 'cloudpickle') if m in sys.modules]\n"
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.condor
@pytest.mark.parametrize("launcher_name, overrides", [("htcondor", FAST)])
class TestHTCondorLauncher(LauncherTestSuite):
    pass


@pytest.mark.condor
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
                # resume=true (the default): test_to_absolute_path_multirun runs a changed task.py twice
                # into the same sweep folder and expects the second run to execute, as a changed task does.
                *FAST,
            ],
        )
    ],
)
class TestHTCondorLauncherIntegration(IntegrationTestSuite):
    pass


@pytest.mark.condor
@pytest.mark.parametrize(
    "launcher_name, overrides", [("htcondor", ["hydra.sweeper.max_batch_size=2", *FAST])]
)
class TestHTCondorBatchedSweeper(BatchedSweeperTestSuite):
    pass
