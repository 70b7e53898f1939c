"""Jobs that survive a real pool: checkpoints and evictions, retries, a cap on queued jobs, the job's
environment and failures outside the task, each on the real HTCondor test pool.

The tasks are small third-party-style Hydra tasks: they know nothing of the launcher, only the contract in
launchers/README.md ("Checkpoints and evictions").
"""

import os
import sys
import time
from pathlib import Path

import pytest
from _launch_helpers import launch, run_script_app, status_tables  # noqa: F401 (a fixture)
from hydra.core.utils import JobStatus
from hydra_plugins.hydra_htcondor_launcher._batch import HTCondorJobReturn
from hydra_plugins.hydra_htcondor_launcher._errors import JobFailedError

pytestmark = [pytest.mark.condor, pytest.mark.usefixtures("hydra_restore_singletons")]


def _events(log_file: Path) -> list[tuple[int, str, float]]:
    """(proc, event type name, epoch seconds) of every event of a batch's event log."""
    import htcondor2

    return [
        (event.proc, event.type.name, float(event.timestamp))
        for event in htcondor2.JobEventLog(str(log_file)).events(stop_after=0)
    ]


def _counting_task(cfg):
    """Counts its runs in a checkpoint file in its job folder: run 1 saves and asks for a restart (exit 85),
    run 2 has itself vacated (as a pool reclaiming the machine would) and waits for the SIGTERM, run 3
    returns the count. A job that lost its folder at a restart would count again from 1."""
    import htcondor2
    from hydra.core.hydra_config import HydraConfig

    job_dir = Path(HydraConfig.get().runtime.output_dir)
    state = job_dir / "checkpoint.txt"
    runs = int(state.read_text()) + 1 if state.exists() else 1
    state.write_text(str(runs))
    if runs == 1:
        sys.exit(HydraConfig.get().launcher.checkpoint_exit_code)  # "I saved my state, restart me"
    if runs == 2:
        htcondor2.Schedd().act(htcondor2.JobAction.Vacate, HydraConfig.get().job.id)
        time.sleep(120)  # the vacate's SIGTERM ends this run
        return "never vacated"
    return {"runs": runs, "job_dir": str(job_dir)}


@pytest.mark.parametrize("transfer", [False, True], ids=["shared_fs", "transfer"])
def test_checkpointed_then_vacated_job_resumes_with_its_folder(tmp_path, transfer, status_tables):  # noqa: F811
    sweep = tmp_path / "sweep"
    results = launch(
        sweep,
        _counting_task,
        [["+x=1"]],
        [
            f"hydra.launcher.transfer_files={str(transfer).lower()}",
            f"+hydra.launcher.environment.CONDOR_CONFIG={os.environ['CONDOR_CONFIG']}",
        ],
    )
    ret = results[0]
    assert ret.status == JobStatus.COMPLETED, ret._return_value
    # Three runs in one job folder: the checkpoint (exit 85) and the eviction were not terminal, and the
    # folder came back to each restarted run (on the worker, with transfer_files).
    assert ret.return_value["runs"] == 3
    assert (sweep / "0" / "checkpoint.txt").read_text() == "3"
    assert ret.return_value["job_dir"].startswith(str(sweep)) != transfer  # transfer: a scratch folder
    assert isinstance(ret, HTCondorJobReturn) and ret.evictions == 1 and ret.attempts == 1
    events = [name for _, name, _ in _events(sweep / ".htcondor" / "batch-0-0.log")]
    assert events.count("JOB_EVICTED") == 1 and events.count("JOB_TERMINATED") == 1
    assert events.count("EXECUTE") == 2  # the self-checkpoint restart writes no event; the eviction does
    assert any("evicted x1" in table for table in status_tables)
    if transfer:
        # The saved config names the submit-side job folder, not the deleted scratch folder.
        saved = (sweep / "0" / ".hydra" / "hydra.yaml").read_text()
        assert f"output_dir: {sweep / '0'}" in saved
        assert ret.hydra_cfg.hydra.runtime.output_dir == str(sweep / "0")


def _flaky_task(cfg):
    """Fails on its first attempt (a marker outside the sweep folder remembers it), as a bad node would."""
    marker = Path(cfg.marker_dir) / f"{cfg.x}.first-attempt-done"
    first = not marker.exists()
    marker.touch()
    if first and cfg.x == "exit":
        print("flaky-marker: first attempt dies", file=sys.stderr, flush=True)
        os._exit(3)
    if first and cfg.x == "raise":
        raise RuntimeError("the task raised on its first attempt")
    return f"ok:{cfg.x}"


def _flaky(tmp_path, name, launcher_overrides):
    markers = tmp_path / f"markers-{name}"
    markers.mkdir()
    return launch(
        tmp_path / name,
        _flaky_task,
        [["+x=exit", f"+marker_dir={markers}"], ["+x=raise", f"+marker_dir={markers}"]],
        launcher_overrides,
    )


def test_retries_outside_the_task_but_not_a_raising_task(tmp_path, status_tables):  # noqa: F811
    exited, raised = _flaky(tmp_path, "retry", ["hydra.launcher.max_retries=1"])
    assert exited.status == JobStatus.COMPLETED and exited.return_value == "ok:exit"
    assert exited.attempts == 2 and exited.evictions == 0
    # A task that raised is the task's own answer: not retried.
    assert raised.status == JobStatus.FAILED and raised.attempts == 1
    assert "the task raised on its first attempt" in str(raised._return_value)
    final = status_tables[-1]
    assert "retried x1" in final and final.count("retried") == 1

    exited, raised = _flaky(
        tmp_path, "retry_task", ["hydra.launcher.max_retries=1", "hydra.launcher.retry_on_task_error=true"]
    )
    assert exited.return_value == "ok:exit" and raised.return_value == "ok:raise"
    assert exited.attempts == 2 and raised.attempts == 2

    exited, raised = _flaky(tmp_path, "no_retry", [])
    err = exited._return_value
    assert exited.status == JobStatus.FAILED and isinstance(err, JobFailedError)
    assert "exited with code 3" in str(err) and "flaky-marker: first attempt dies" in str(err)
    assert exited.attempts == 1 and raised.attempts == 1


def _short_task(cfg):
    time.sleep(1)
    return cfg.x


def test_max_running_keeps_one_job_at_a_time_in_the_queue(tmp_path):
    sweep = tmp_path / "sweep"
    results = launch(sweep, _short_task, [["+x=a"], ["+x=b"], ["+x=c"]], ["hydra.launcher.max_running=1"])
    assert [ret.return_value for ret in results] == ["a", "b", "c"]
    events = _events(sweep / ".htcondor" / "batch-0-2.log")
    # Late materialization with itemdata: each proc enters the queue only after the one before it ended,
    # so no two ran at once.
    order = [(proc, name) for proc, name, _ in events if name in ("SUBMIT", "EXECUTE", "JOB_TERMINATED")]
    assert order == [(p, n) for p in range(3) for n in ("SUBMIT", "EXECUTE", "JOB_TERMINATED")]
    assert "CLUSTER_SUBMIT" in {name for _, name, _ in events}


def _env_task(cfg):
    ad = Path(os.environ["_CONDOR_JOB_AD"]).read_text().splitlines()
    job_env = next((line for line in ad if line.startswith("Environment =")), "")
    return {
        "var": os.environ.get("LAUNCHER_TEST_VAR"),
        "cuda": os.environ.get("CUDA_VISIBLE_DEVICES"),
        "job_ad_environment": job_env,
    }


@pytest.mark.parametrize("transfer", [False, True], ids=["shared_fs", "transfer"])
def test_default_getenv_copies_the_submitting_environment_only_on_a_shared_filesystem(
    tmp_path, monkeypatch, transfer
):
    monkeypatch.setenv("LAUNCHER_TEST_VAR", "from-the-submitter")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "7")  # never the job's: the execute side assigns GPUs
    results = launch(
        tmp_path / "sweep", _env_task, [[]], [f"hydra.launcher.transfer_files={str(transfer).lower()}"]
    )
    value = results[0].return_value
    assert value["var"] == (None if transfer else "from-the-submitter")
    assert value["cuda"] != "7"
    assert "CUDA_VISIBLE_DEVICES=7" not in value["job_ad_environment"]
    if not transfer:
        assert "LAUNCHER_TEST_VAR=from-the-submitter" in value["job_ad_environment"]


_IMPORT_TIME_APP = """
import os
from pathlib import Path

import hydra

# What a project-root helper or a .env loader does at import.
os.environ.setdefault("MYAPP_ROOT", str(Path(__file__).parent / "project"))


@hydra.main(version_base=None, config_path=None)
def main(cfg):
    return cfg.x


if __name__ == "__main__":
    main()
"""


def test_app_that_sets_a_variable_at_import_sweeps_into_it(tmp_path):
    proc = run_script_app(
        tmp_path,
        _IMPORT_TIME_APP,
        "hydra.launcher.request_memory=256MB",
        "hydra.sweep.dir=${oc.env:MYAPP_ROOT}/sweeps",
        "+x=1,2",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    sweeps = tmp_path / "project" / "sweeps"
    for num in (0, 1):
        assert (sweeps / str(num) / ".hydra" / "config.yaml").exists()
        assert (sweeps / ".htcondor" / f"{num}.result.pkl").exists()


def test_worker_side_interpolation_error_reaches_the_console(tmp_path):
    proc = run_script_app(
        tmp_path,
        _IMPORT_TIME_APP,
        "hydra.launcher.request_memory=256MB",
        "hydra.launcher.getenv=false",  # the worker does not get the variable the subdir needs
        "hydra.sweep.dir=sweep",
        "hydra.sweep.subdir=${oc.env:ONLY_ON_THE_SUBMIT_SIDE}_${hydra.job.num}",
        "+x=1,2",
        env={**os.environ, "ONLY_ON_THE_SUBMIT_SIDE": "sub"},
    )
    assert proc.returncode == 1
    # The real cause, not "exited with code 1 without writing its result", and no crash of the launcher.
    assert "ONLY_ON_THE_SUBMIT_SIDE" in proc.stderr, proc.stderr[-3000:]
    assert "InterpolationResolutionError" in proc.stderr or "not found" in proc.stderr
    assert "without writing its result" not in proc.stderr + proc.stdout
    assert "failed outside the task" in (tmp_path / "sweep" / ".htcondor" / "0.err").read_text()
    # The table said which kind of failure it was.
    assert "exit 81 (worker error)" in proc.stdout + proc.stderr
