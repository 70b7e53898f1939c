"""The launcher's non-blocking interface (``sweep.Sweep``) on the real pool: jobs submitted, polled, removed
with a reason, submitted while others run, re-attached by a second Sweep of the same folder."""

import time
from collections.abc import Callable

import pytest
from _launch_helpers import configured_launchers, launch
from hydra.core.utils import JobStatus
from hydra_plugins.hydra_htcondor_launcher.sweep import JobState, Sweep, SweepEvent

pytestmark = pytest.mark.condor


def _task(cfg):
    import time as _time

    _time.sleep(float(cfg.get("sleep", 0)))
    return f"ok:{cfg.x}"


def _poll_until(
    sweep: Sweep, done: Callable[[list[SweepEvent]], bool], timeout: float = 120.0
) -> list[SweepEvent]:
    """Every event polled until done(events so far) holds; fails at the deadline."""
    events: list[SweepEvent] = []
    deadline = time.monotonic() + timeout
    while not done(events):
        assert time.monotonic() < deadline, f"not done after {timeout:g} s; events: {events}"
        events += sweep.poll()
        time.sleep(0.1)
    return events


def _ended(*nums: int) -> Callable[[list[SweepEvent]], bool]:
    return lambda events: set(nums) <= {e.num for e in events if e.kind == "ended"}


def _running(num: int) -> Callable[[list[SweepEvent]], bool]:
    return lambda events: any(e.num == num and e.state is JobState.RUNNING for e in events)


def test_submit_poll_results_equal_a_normal_launch(tmp_path):
    jobs = [["+x=1"], ["+x=2"], ["+x=3"]]
    with configured_launchers(tmp_path / "sweep", _task) as new_launcher:
        sweep = Sweep.from_launcher(new_launcher())
        assert sweep.submit(jobs, first_num=0) == [0, 1, 2]  # at once: nothing waited for
        assert sweep.active() == [0, 1, 2]
        events = _poll_until(sweep, _ended(0, 1, 2))
        results = [sweep.result(num) for num in (0, 1, 2)]
        sweep.close()
    assert sweep.active() == []
    for num in (0, 1, 2):
        mine = [e for e in events if e.num == num]
        assert [e.kind for e in mine].count("ended") == 1 and mine[-1].kind == "ended", mine
        assert mine[-1].state is JobState.DONE
    normal = launch(tmp_path / "normal", _task, jobs)

    def seen(ret):
        return (ret.status, ret.return_value, ret.overrides, ret.hydra_cfg.hydra.job.num, ret.task_name)

    assert [seen(r) for r in results] == [seen(r) for r in normal]
    assert all(r.htcondor_id and r.attempts == 1 for r in results)


def test_remove_with_a_reason_while_another_cluster_runs_and_ends(tmp_path):
    with configured_launchers(tmp_path / "sweep", _task) as new_launcher:
        sweep = Sweep.from_launcher(new_launcher())
        sweep.submit([["+x=slow", "+sleep=600"]], first_num=0)
        events = _poll_until(sweep, _running(0))
        # A second cluster while the first runs: it ends on its own, the first goes on.
        sweep.submit([["+x=quick"]], first_num=1)
        events += _poll_until(sweep, _ended(1))
        assert 0 in sweep.active() and 0 not in {e.num for e in events if e.kind == "ended"}
        quick = sweep.result(1)
        with pytest.raises(ValueError):
            sweep.result(0)
        sweep.remove(0, "pruned at step 2")
        events += _poll_until(sweep, _ended(0))
        removed = sweep.result(0)
        sweep.close()
    assert quick.status == JobStatus.COMPLETED and quick.return_value == "ok:quick"
    clusters = {quick.htcondor_id.split(".")[0], removed.htcondor_id.split(".")[0]}
    assert len(clusters) == 2, clusters
    end = [e for e in events if e.num == 0 and e.kind == "ended"]
    assert len(end) == 1 and end[0].state is JobState.REMOVED and end[0].reason == "pruned at step 2", end
    assert removed.status == JobStatus.FAILED and "pruned at step 2" in str(removed._return_value)


def test_a_second_sweep_reattaches_running_finished_and_lost_jobs(tmp_path):
    jobs = [["+x=slow", "+sleep=600"], ["+x=quick"], ["+x=gone", "+sleep=600"]]
    with configured_launchers(tmp_path / "sweep", _task) as new_launcher:
        first = Sweep.from_launcher(new_launcher())
        first.submit(jobs, first_num=0)
        _poll_until(first, lambda ev: _ended(1)(ev) and _running(0)(ev) and _running(2)(ev))
        first.remove(2, "removed by the test")  # neither in HTCondor nor with a result: lost
        _poll_until(first, _ended(2))
        first.close()  # the first driver goes away; job 0 runs on

        second = Sweep.from_launcher(new_launcher())  # a new process would open the manifest on disk
        assert second.reattach([0, 1, 2, 7]) == {0: "running", 1: "finished", 2: "lost", 7: "lost"}
        assert second.active() == [0, 1]
        # The re-attached job is followed from its event log's start: running, removable by the new driver.
        events = _poll_until(second, lambda ev: _ended(1)(ev) and _running(0)(ev))
        assert [e.kind for e in events if e.num == 1] == ["ended"]
        assert second.result(1).return_value == "ok:quick"
        second.remove(0, "cleaning up")
        events += _poll_until(second, _ended(0))
        second.close()
    assert second.active() == []
    assert [e.state for e in events if e.num == 0 and e.kind == "ended"] == [JobState.REMOVED]
