"""The streaming sweeper with Hydra's basic launcher (in-process): real Hydra command lines of a tiny app
as subprocesses, real Optuna, the study read back from the sweep folder's journal."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import optuna
import pytest
import yaml
from _helpers import APP, JOURNAL, command, error_line, run, study
from hydra_plugins.hydra_optuna_stream_sweeper import study as study_module
from optuna.trial import TrialState

FALLBACK = "BasicLauncher has no streaming interface: trials run in batches of n_jobs"


def test_batches_with_the_basic_launcher_and_records_each_trial(tmp_path):
    sweep = tmp_path / "sweep"
    done = run(tmp_path, sweep, "x=interval(-5, 5)", "y=choice(-1, 0, 1)", "hydra.sweeper.n_trials=5")
    assert done.returncode == 0, done.stdout
    assert done.stdout.count(FALLBACK) == 1  # said once, in one line
    assert JOURNAL == study_module.JOURNAL_FILE
    s = study(sweep)
    # The public reader finds it as the sweeper did (no saved config here: the journal's only study).
    loaded = study_module.load_study(sweep)
    assert loaded is not None and loaded.study_name == s.study_name and len(loaded.trials) == 5
    trials = s.get_trials()
    assert [t.number for t in trials] == [0, 1, 2, 3, 4]
    assert all(t.state == TrialState.COMPLETE for t in trials)
    for t in trials:
        # Trial number == hydra.job.num: the job's own folder holds the trial's overrides.
        job_overrides = yaml.safe_load((sweep / str(t.number) / ".hydra" / "overrides.yaml").read_text())
        assert t.user_attrs["job_num"] == t.number
        assert t.user_attrs["overrides"] == job_overrides == [f"x={t.params['x']}", f"y={t.params['y']}"]
        assert t.value == pytest.approx((t.params["x"] - 2) ** 2 + (t.params["y"] + 1) ** 2)
    # The async defaults: TPE (multivariate, constant_liar), no pruner.
    assert "TPESampler, NopPruner, directions ['minimize'], n_trials 5, n_jobs 2" in done.stdout
    results = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    assert results == {"name": "optuna", "best_params": s.best_params, "best_value": s.best_value}
    assert s.best_value == min(t.value for t in trials)


def test_async_defaults_tpe_multivariate_constant_liar_no_pruner(tmp_path):
    shown = subprocess.run(
        [sys.executable, str(APP), "hydra/sweeper=optuna_stream", "--cfg=hydra", "--package=hydra.sweeper"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    sweeper = yaml.safe_load(shown.stdout)
    assert sweeper["sampler"] == {
        "_target_": "optuna.samplers.TPESampler",
        "seed": None,
        "n_startup_trials": 10,
        "n_ei_candidates": 24,
        "multivariate": True,
        "constant_liar": True,
    }
    assert sweeper["pruner"] == {"_target_": "optuna.pruners.NopPruner"}
    assert (sweeper["n_trials"], sweeper["n_jobs"], sweeper["max_failure_rate"]) == (20, 2, 0.0)


def test_the_same_command_continues_the_study_to_n_trials(tmp_path):
    sweep = tmp_path / "sweep"
    args = ("x=interval(-5, 5)", "hydra.sweeper.n_jobs=3")
    assert run(tmp_path, sweep, *args, "hydra.sweeper.n_trials=4").returncode == 0
    first = {t.number: t.params for t in study(sweep).get_trials()}
    again = run(tmp_path, sweep, *args, "hydra.sweeper.n_trials=7")
    assert again.returncode == 0, again.stdout
    trials = study(sweep).get_trials()
    assert [t.number for t in trials] == list(range(7))
    assert all(t.state == TrialState.COMPLETE for t in trials)
    assert {t.number: t.params for t in trials[:4]} == first  # kept, not re-run
    assert sorted(p.name for p in sweep.iterdir() if p.name.isdigit()) == [str(n) for n in range(7)]
    done = run(tmp_path, sweep, *args, "hydra.sweeper.n_trials=7")
    assert done.returncode == 0 and "already has n_trials=7 trials: nothing to run" in done.stdout
    assert len(study(sweep).get_trials()) == 7


def _wait_for(sweep_dir, ready, seconds: float):
    """Poll the journal until ready(trials) (the sweeper writes it as trials start and end)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if (sweep_dir / JOURNAL).exists():
            try:
                trials = study(sweep_dir).get_trials()
            except KeyError:  # the study is being created
                trials = []
            if ready(trials):
                return trials
        time.sleep(0.1)
    raise AssertionError(f"the journal in {sweep_dir} did not reach the expected state in {seconds} s")


def test_sigkill_mid_search_then_the_same_command_completes_exactly_n_trials(tmp_path):
    sweep = tmp_path / "sweep"
    args = ("x=interval(-5, 5)", "sleep_s=0.5", "hydra.sweeper.n_trials=6", "hydra.sweeper.n_jobs=2")
    proc = subprocess.Popen(
        command(sweep, *args), cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT
    )
    try:
        # Killed with trials finished and a batch running (RUNNING in the journal).
        seen = _wait_for(
            sweep,
            lambda ts: (
                sum(t.state == TrialState.COMPLETE for t in ts) >= 2
                and any(t.state == TrialState.RUNNING for t in ts)
            ),
            seconds=90,
        )
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    at_kill = study(sweep).get_trials()
    running = [t.number for t in at_kill if t.state == TrialState.RUNNING]
    assert running and len(at_kill) >= len(seen)

    again = run(tmp_path, sweep, *args)
    assert again.returncode == 0, again.stdout
    n = len(running)
    assert f"{n} trial(s) of an earlier run still running, {n} of them lost" in again.stdout
    trials = study(sweep).get_trials()
    assert [t.number for t in trials] == list(range(6))  # exactly n_trials, numbers == job numbers
    assert not [t for t in trials if t.state == TrialState.RUNNING]
    for t in trials:
        if t.number in running:  # the basic launcher's jobs died with the sweeper: lost, told FAIL
            assert t.state == TrialState.FAIL and t.user_attrs["lost"] is True
            assert "lost: the sweeper stopped while it ran" in t.user_attrs["failure"]
        else:
            assert t.state == TrialState.COMPLETE and t.user_attrs["job_num"] == t.number


def test_prunes_in_process_through_the_reporting_handler(tmp_path):
    # ThresholdPruner: pruned exactly when a report is above 20, so which trials are pruned is known.
    sweep = tmp_path / "sweep"
    done = run(
        tmp_path,
        sweep,
        "x=choice(2, 9)",
        "steps=4",
        "hydra.sweeper.n_trials=6",
        "hydra.sweeper.sampler.seed=1",
        "hydra.sweeper.pruner._target_=optuna.pruners.ThresholdPruner",
        "+hydra.sweeper.pruner.upper=20",
        "hydra.sweeper.step_name=round",  # the app's word for its steps, in the reason (default: step)
    )
    assert done.returncode == 0, done.stdout
    trials = study(sweep).get_trials()
    assert len(trials) == 6 and {t.params["x"] for t in trials} == {2, 9}, "the test needs both values"
    for t in trials:
        if t.params["x"] == 9:  # reports 50 + 4 at step 0: pruned there, the job stopped
            assert t.state == TrialState.PRUNED and t.intermediate_values == {0: 54.0}
            assert t.value == 54.0  # Optuna keeps a pruned trial's last report as its value
            assert f"trial {t.number} (job #{t.number}): pruned at round 0" in done.stdout
        else:
            assert t.state == TrialState.COMPLETE
            assert t.intermediate_values == {0: 5.0, 1: 4.0, 2: 3.0, 3: 2.0}


@pytest.mark.parametrize(
    ("group", "pruner"),
    [
        ("none", "NopPruner"),
        ("asha", "SuccessiveHalvingPruner"),
        ("median", "MedianPruner"),
        ("hyperband", "HyperbandPruner"),
    ],
)
def test_pruner_presets(tmp_path, group, pruner):
    done = run(
        tmp_path,
        tmp_path / "s",
        "x=interval(0, 4)",
        "steps=2",
        "hydra.sweeper.n_trials=2",
        f"hydra/sweeper/pruner={group}",
    )
    assert done.returncode == 0, done.stdout
    assert f"TPESampler, {pruner}, directions" in done.stdout


def test_a_failing_trial_is_fail_with_its_cause_and_max_failure_rate_stops_the_search(tmp_path):
    sweep = tmp_path / "sweep"
    # Every trial fails (x > fail_above).
    args = ("x=interval(4, 5)", "fail_above=3", "hydra.sweeper.n_trials=8", "hydra.sweeper.n_jobs=1")
    stopped = run(tmp_path, sweep, *args, "hydra.sweeper.max_failure_rate=0.25")
    assert stopped.returncode == 1
    trials = study(sweep).get_trials()
    failed = [t for t in trials if t.state == TrialState.FAIL]
    # 0.25 of 8 trials may fail: the third failure stops the search.
    assert len(trials) == len(failed) == 3
    for t in failed:
        cause = f"ValueError: x={t.params['x']} is above fail_above=3"
        assert t.user_attrs["failure"] == cause
        # With the job's folder, where its log is (Hydra's basic launcher names no other log).
        assert f"trial {t.number} (job #{t.number}) FAIL: {cause}; job folder {sweep / str(t.number)}" in (
            stopped.stdout
        )
    assert error_line(stopped.stdout) == (
        "optuna_stream: 3 trial(s) failed in this run, more than max_failure_rate=0.25 of n_trials=8 allows "
        f"(2); the last: trial {failed[-1].number} (job #{failed[-1].number}): {cause}"
    )
    assert not (sweep / "optimization_results.yaml").exists()


def test_failures_within_max_failure_rate_do_not_stop_the_search(tmp_path):
    sweep = tmp_path / "sweep"
    done = run(
        tmp_path,
        sweep,
        "x=choice(1, 5)",
        "fail_above=3",
        "hydra.sweeper.n_trials=5",
        "hydra.sweeper.max_failure_rate=1.0",
        "hydra.sweeper.sampler.seed=1",
    )
    assert done.returncode == 0, done.stdout
    trials = study(sweep).get_trials()
    assert len(trials) == 5 and {t.params["x"] for t in trials} == {1, 5}, "the test needs both values"
    assert {t.state for t in trials if t.params["x"] == 5} == {TrialState.FAIL}
    assert {t.state for t in trials if t.params["x"] == 1} == {TrialState.COMPLETE}


def test_multi_objective(tmp_path):
    sweep = tmp_path / "sweep"
    done = run(
        tmp_path,
        sweep,
        "x=interval(-5, 5)",
        "y=interval(-5, 5)",
        "multi=true",
        "hydra.sweeper.direction=[minimize,maximize]",
        "hydra.sweeper.n_trials=6",
    )
    assert done.returncode == 0, done.stdout
    s = study(sweep)
    assert s.directions == [optuna.study.StudyDirection.MINIMIZE, optuna.study.StudyDirection.MAXIMIZE]
    assert len(s.get_trials(states=(TrialState.COMPLETE,))) == 6
    results = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    front = sorted((t.values, t.params) for t in s.best_trials)
    assert sorted((r["values"], r["params"]) for r in results["solutions"]) == front


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (["hydra.sweeper.n_jobs=0"], "hydra.sweeper.n_jobs=0: accepted: an integer >= 1"),
        (["hydra.sweeper.n_trials=-2"], "hydra.sweeper.n_trials=-2: accepted: an integer >= 1"),
        (
            ["hydra.sweeper.max_failure_rate=1.5"],
            "hydra.sweeper.max_failure_rate=1.5: accepted: a number in [0, 1]",
        ),
        (
            ["hydra.sweeper.direction=maximise"],
            "hydra.sweeper.direction='maximise': accepted: minimize, maximize, or a list of them (one per "
            "objective)",
        ),
        (
            ["hydra.sweeper.direction=[minimize,maximize]", "hydra/sweeper/pruner=asha"],
            "hydra.sweeper.pruner=SuccessiveHalvingPruner with 2 directions: Optuna prunes single-objective "
            "studies only; accepted: hydra/sweeper/pruner=none",
        ),
        (
            ["hydra.sweeper.step_name=' '"],
            "hydra.sweeper.step_name=' ': accepted: a word for what a report's step counts (step, epoch, "
            "...)",
        ),
        (
            ["hydra.sweeper.custom_search_space=nowhere.func"],
            "hydra.sweeper.custom_search_space='nowhere.func': ",
        ),
        (["y=glob(*)"], "y=glob(*): glob() is not a search space; accepted: interval(a,b)"),
        (
            ["hydra/launcher=htcondor", "hydra.launcher.detach=true"],
            "hydra.launcher.detach=true: the streaming sweeper stays to ask each next trial; accepted: "
            "detach=false",
        ),
    ],
)
def test_bad_config_values_are_one_line_errors(tmp_path, args, line):
    done = run(tmp_path, tmp_path / "sweep", "x=interval(0, 1)", *args)
    assert done.returncode == 1
    assert error_line(done.stdout).startswith(line), done.stdout
    assert not (tmp_path / "sweep" / "0").exists()  # no trial ran


def test_a_study_with_other_directions_is_refused(tmp_path):
    sweep = tmp_path / "sweep"
    assert run(tmp_path, sweep, "x=interval(0, 1)", "hydra.sweeper.n_trials=1").returncode == 0
    other = run(tmp_path, sweep, "x=interval(0, 1)", "hydra.sweeper.direction=maximize")
    assert other.returncode == 1
    assert (
        error_line(other.stdout).startswith("hydra.sweeper.direction=['maximize']: the study 'objective' in ")
        and "was created with ['minimize']" in other.stdout
    )


def test_storage_url_and_custom_search_space(tmp_path):
    # Any Optuna storage URL; a custom search space adds its own parameter to the trials' overrides.
    sweep = tmp_path / "sweep"
    done = run(
        tmp_path,
        sweep,
        "x=interval(0, 1)",
        "hydra.sweeper.n_trials=3",
        f"hydra.sweeper.storage=sqlite:///{tmp_path}/study.db",
        "hydra.sweeper.study_name=s1",
        "hydra.sweeper.custom_search_space=custom_space.add_y",
    )  # app/custom_space.py
    assert done.returncode == 0, done.stdout
    s = optuna.load_study(study_name="s1", storage=f"sqlite:///{tmp_path}/study.db")
    assert len(s.get_trials()) == 3 and not (sweep / JOURNAL).exists()
    for t in s.get_trials():
        assert set(t.params) == {"x", "y"} and t.user_attrs["overrides"][-1] == f"y={t.params['y']}"
