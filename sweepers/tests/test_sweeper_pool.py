"""The streaming sweeper with the HTCondor launcher on the real pool: a new trial's job is submitted the
moment one ends (measured from the job event logs), and a sweeper killed with SIGKILL continues its study
with the jobs still in HTCondor (one job per trial, exactly n_trials)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from _helpers import POOL, command, left_in_queue, run, study, sweep_id
from hydra_plugins.hydra_htcondor_launcher._layout import SweepLayout
from optuna.trial import TrialState

pytestmark = [pytest.mark.condor, pytest.mark.slow]

# The longest a free slot may wait for its next job (the event logs count whole seconds).
REFILL_S = 3


def _job_times(sweep_dir: Path) -> dict[int, dict[str, int]]:
    """Per job number: when HTCondor saw it submitted, executing and terminated (the event logs' whole
    seconds). Each cluster is one batch log batch-A-B.log, proc p being job A + p."""
    import htcondor2

    kinds = {
        htcondor2.JobEventType.SUBMIT: "submit",
        htcondor2.JobEventType.EXECUTE: "execute",
        htcondor2.JobEventType.JOB_TERMINATED: "end",
        htcondor2.JobEventType.JOB_ABORTED: "end",
    }
    times: dict[int, dict[str, int]] = {}
    for first, _last, path in SweepLayout(str(sweep_dir)).batch_logs():
        for event in htcondor2.JobEventLog(path).events(stop_after=0):
            if event.type in kinds:
                times.setdefault(first + event.proc, {}).setdefault(kinds[event.type], event.timestamp)
    return times


def test_streams_a_new_job_the_moment_a_trial_ends(tmp_path):
    # Run times 1-10 s (sleep 1 + 3x), two slots: a batch would keep a slot idle while its slower job runs.
    sweep = tmp_path / "sweep"
    done = run(
        tmp_path,
        sweep,
        *POOL,
        "x=interval(0, 3)",
        "sleep_s=1",
        "sleep_per_x=3",
        "hydra/sweeper/sampler=random",
        "hydra.sweeper.sampler.seed=3",
        "hydra.sweeper.n_trials=6",
        "hydra.sweeper.n_jobs=2",
        timeout=300,
    )
    assert done.returncode == 0, done.stdout
    assert "no streaming interface" not in done.stdout
    trials = study(sweep).get_trials()
    assert len(trials) == 6 and all(t.state == TrialState.COMPLETE for t in trials)
    times = _job_times(sweep)
    assert sorted(times) == list(range(6)) and all(len(t) == 3 for t in times.values()), times
    ends = sorted(t["end"] for t in times.values())
    later = sorted(times[n]["submit"] for n in range(2, 6))  # after the first n_jobs, in submit order
    gaps = [submit - end for submit, end in zip(later, ends, strict=False)]
    print(f"seconds from a trial's end to the next job's submission (event logs): {gaps}")
    assert all(0 <= gap <= REFILL_S for gap in gaps), (gaps, times)
    # Never a batch: some job was submitted while another one was still running.
    assert any(
        other["execute"] < times[n]["submit"] < other["end"]
        for n in range(2, 6)
        for m, other in times.items()
        if m != n
    ), times


def _two_running_after_one_finished(sweep: Path) -> None:
    """Wait until the study has a finished trial and two trials' jobs run in HTCondor (the manifest says)."""
    manifest = Path(SweepLayout(str(sweep)).manifest)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if manifest.exists() and (sweep / "optuna_journal.log").exists():
            jobs = json.loads(manifest.read_text())["jobs"]
            states = [t.state for t in study(sweep).get_trials()]
            running = [n for n, j in jobs.items() if j.get("cluster") and j.get("state") == "running"]
            if states.count(TrialState.COMPLETE) >= 1 and len(running) == 2:
                return
        time.sleep(0.2)
    raise AssertionError("the sweep did not reach two running jobs after a finished one")


@pytest.mark.parametrize("jobs_end_meanwhile", [False, True], ids=["still-running", "ended-while-down"])
def test_sigkill_then_the_same_command_reattaches_its_jobs_one_job_per_trial(
    tmp_path, jobs_end_meanwhile, procs_per_job
):
    sweep = tmp_path / "sweep"
    args = (*POOL, "x=interval(0, 3)", "sleep_s=6", "hydra.sweeper.n_trials=5", "hydra.sweeper.n_jobs=2")
    proc = subprocess.Popen(
        command(sweep, *args), cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT
    )
    try:
        _two_running_after_one_finished(sweep)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.communicate(timeout=30)
    at_kill = [t.number for t in study(sweep).get_trials() if t.state == TrialState.RUNNING]
    assert len(at_kill) == 2
    if jobs_end_meanwhile:  # their results are written while no sweeper runs: told from those files
        layout = SweepLayout(str(sweep))
        deadline = time.monotonic() + 120
        while not all(Path(layout.result(n)).exists() for n in at_kill):
            assert time.monotonic() < deadline, "the jobs of the killed sweeper did not finish"
            time.sleep(0.2)

    again = run(tmp_path, sweep, *args, timeout=300)
    assert again.returncode == 0, again.stdout
    assert "2 trial(s) of an earlier run still running, 0 of them lost" in again.stdout
    trials = study(sweep).get_trials()
    assert [t.number for t in trials] == list(range(5))  # exactly n_trials
    assert all(t.state == TrialState.COMPLETE for t in trials)  # the re-attached ones told from their jobs
    assert procs_per_job(sweep_id(sweep)) == dict.fromkeys(range(5), 1)  # one HTCondor job per trial


def test_ctrl_c_removes_the_jobs_in_flight_and_tells_their_trials(tmp_path):
    # hydra.launcher.on_interrupt=remove (the launcher's default): as the launcher's own Ctrl-C does.
    sweep = tmp_path / "sweep"
    args = (*POOL, "x=interval(0, 3)", "sleep_s=6", "hydra.sweeper.n_trials=5", "hydra.sweeper.n_jobs=2")
    proc = subprocess.Popen(
        command(sweep, *args), cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        _two_running_after_one_finished(sweep)
        os.kill(proc.pid, signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode != 0
    trials = study(sweep).get_trials()
    removed = [t for t in trials if t.state == TrialState.FAIL]
    assert len(removed) == 2 and not [t for t in trials if t.state == TrialState.RUNNING], out
    for t in removed:
        assert t.user_attrs["failure"] == "removed: the sweeper was interrupted (Ctrl-C)"
        assert t.user_attrs["lost"] is True
    assert left_in_queue(sweep) == []  # removed jobs on their way out aside


# Each mode's report channel: the job's report file on a shared filesystem; chirp into the event log with file
# transfer; chirp from a container job, whose network the launcher makes the host's (the starter listens on
# loopback only).
MODES = {
    "shared": ("hydra.launcher.transfer_files=false",),
    "transfer_files": ("hydra.launcher.transfer_files=true",),
    "container": ("hydra.launcher.transfer_files=true", "hydra.launcher.env_mode=container"),
}


@pytest.mark.parametrize(
    "mode", ["shared", "transfer_files", pytest.param("container", marks=pytest.mark.container)]
)
def test_a_trial_that_reports_bad_values_is_pruned_removed_and_its_slot_refilled(tmp_path, mode, request):
    import htcondor2

    mode_args = MODES[mode]
    if mode == "container":  # the engine and the worker image (root conftest), as for every container test
        image = request.getfixturevalue("container_worker").image
        mode_args = (*mode_args, f"hydra.launcher.container_image={image}")
    sweep = tmp_path / "sweep"
    # ThresholdPruner: x=9 reports 50 + 6 at step 0, above 20: pruned there; x=2 runs its 6 steps (6 s).
    done = run(
        tmp_path,
        sweep,
        *POOL,
        *mode_args,
        "x=choice(2, 9)",
        "steps=6",
        "step_s=1",
        "hydra.sweeper.n_trials=5",
        "hydra.sweeper.n_jobs=2",
        "hydra.sweeper.sampler.seed=1",
        "hydra.sweeper.pruner._target_=optuna.pruners.ThresholdPruner",
        "+hydra.sweeper.pruner.upper=20",
        timeout=300,
    )
    assert done.returncode == 0, done.stdout
    trials = study(sweep).get_trials()
    assert len(trials) == 5 and {t.params["x"] for t in trials} == {2, 9}, "the test needs both values"
    times = _job_times(sweep)
    manifest = json.loads(Path(SweepLayout(str(sweep)).manifest).read_text())
    status = {
        int(ad["HydraJobNum"]): (int(ad["JobStatus"]), str(ad.get("RemoveReason")).split(" (by user")[0])
        for ad in htcondor2.Schedd().history(
            f'HydraSweepId == "{manifest["sweep_id"]}"',
            ["HydraJobNum", "JobStatus", "RemoveReason"],
            match=-1,
        )
    }
    for t in trials:
        if t.params["x"] == 9:
            assert t.state == TrialState.PRUNED and t.intermediate_values == {0: 56.0}
            # Removed from HTCondor with the reason, long before its 6 steps were over.
            assert status[t.number] == (3, "pruned at step 0")  # REMOVED, HTCondor knows why
            assert manifest["jobs"][str(t.number)]["abort_reason"] == "pruned at step 0"
            assert times[t.number]["end"] - times[t.number]["execute"] < 6
            # Its slot refilled: the first trial asked after the sweeper pruned it (if any was left to ask)
            # was submitted at once. The sweeper submits it when it decides, before HTCondor's abort event,
            # and the event logs count whole seconds: -1 s is on time.
            end = times[t.number]["end"]
            assert t.datetime_complete is not None
            told = t.datetime_complete.timestamp()
            after = [u.number for u in trials if u.datetime_start and u.datetime_start.timestamp() >= told]
            if after:
                assert -1 <= times[min(after)]["submit"] - end <= REFILL_S, (t.number, after, times)
        else:
            assert t.state == TrialState.COMPLETE and len(t.intermediate_values) == 6
