"""The failure policy on the real pool: a trial whose job raises is FAIL with the job's real exception on
the console, and max_failure_rate stops the search, removing the jobs still in flight from HTCondor."""

from __future__ import annotations

import pytest
from _helpers import POOL, error_line, left_in_queue, run, study
from hydra_plugins.hydra_htcondor_launcher._layout import SweepLayout
from optuna.trial import TrialState

pytestmark = [pytest.mark.condor, pytest.mark.slow]


def test_failing_jobs_are_fail_with_their_cause_and_max_failure_rate_removes_the_jobs_in_flight(tmp_path):
    sweep = tmp_path / "sweep"
    # x > 2.5 raises at once; x <= 2.5 runs for 60 s. With this seed x is 2.75, 3.54 (two failures), then
    # 1.45 (runs) and 2.55 (the third failure): the search stops while trial 2 is still in flight.
    done = run(
        tmp_path,
        sweep,
        *POOL,
        "x=interval(0, 5)",
        "fail_above=2.5",
        "sleep_s=60",
        "hydra/sweeper/sampler=random",
        "hydra.sweeper.sampler.seed=3",
        "hydra.sweeper.n_trials=10",
        "hydra.sweeper.n_jobs=2",
        "hydra.sweeper.max_failure_rate=0.2",
        timeout=300,
    )
    assert done.returncode == 1, done.stdout
    trials = study(sweep).get_trials()
    raised = [t for t in trials if t.params["x"] > 2.5]
    stopped = [t for t in trials if t.params["x"] <= 2.5]
    assert stopped, f"the test needs a trial in flight when the search stops: {[t.params for t in trials]}"
    assert len(trials) == 4, "no trial is asked once the search stopped"
    # 0.2 of 10 trials may fail: the third failing job stops the search.
    assert len(raised) == 3 and all(t.state == TrialState.FAIL for t in raised)
    for t in raised:
        cause = f"ValueError: x={t.params['x']} is above fail_above=2.5"
        assert t.user_attrs["failure"].startswith(cause), t.user_attrs
        said = f"trial {t.number} (job #{t.number}) FAIL:"
        line = next(ln for ln in done.stdout.splitlines() if said in ln)
        assert cause in line
        # The job's own logs on the pool, named on the console.
        assert f"stderr {SweepLayout(str(sweep)).stderr(t.number)}" in line, line
    last = raised[-1]
    assert error_line(done.stdout).startswith(
        "optuna_stream: 3 trial(s) failed in this run, more than max_failure_rate=0.2 of n_trials=10 allows "
        "(2); "
        f"the last: trial {last.number} (job #{last.number}): ValueError: x={last.params['x']}"
    )
    # The trials still running were removed with the search and told FAIL as no fault of theirs; none is left
    # RUNNING, and no job of the sweep is left in HTCondor.
    for t in stopped:
        assert t.state == TrialState.FAIL and t.user_attrs["lost"] is True, t
        assert t.user_attrs["failure"].startswith("removed: the search stopped"), t.user_attrs
    assert left_in_queue(sweep) == []
    assert not (sweep / "optimization_results.yaml").exists()
