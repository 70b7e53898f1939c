"""The launcher's non-blocking interface (``sweep.Sweep``) on the real pool: jobs submitted, polled, removed
with a reason, submitted while others run, re-attached by a second Sweep of the same folder."""

import time
from collections.abc import Callable

import pytest
from _launch_helpers import configured_launchers, launch, status_tables  # noqa: F401 (a fixture)
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


def _queued(cluster_proc: str) -> bool:
    import htcondor2

    cluster, proc = cluster_proc.split(".")
    live = f"ClusterId == {cluster} && ProcId == {proc} && JobStatus != 3"  # 3: removed, on its way out
    return bool(htcondor2.Schedd().query(live, ["ProcId"]))


def test_a_second_sweep_reattaches_running_finished_and_lost_jobs(tmp_path):
    jobs = [["+x=slow", "+sleep=600"], ["+x=quick"], ["+x=gone", "+sleep=600"], ["+x=other", "+sleep=600"]]
    with configured_launchers(tmp_path / "sweep", _task) as new_launcher:
        first = Sweep.from_launcher(new_launcher())
        first.submit(jobs, first_num=0)
        _poll_until(first, lambda ev: _ended(1)(ev) and all(_running(n)(ev) for n in (0, 2, 3)))
        first.remove(2, "removed by the test")  # neither in HTCondor nor with a result: lost
        _poll_until(first, _ended(2))
        first.close()  # the first driver goes away; jobs 0 and 3 run on

        second = Sweep.from_launcher(new_launcher())  # a new process would open the manifest on disk
        assert second.reattach([0, 1, 2, 7]) == {0: "running", 1: "finished", 2: "lost", 7: "lost"}
        assert second.active() == [0, 1]
        # The re-attached job is followed from its event log's start: running, removable by the new driver.
        events = _poll_until(second, lambda ev: _ended(1)(ev) and _running(0)(ev))
        assert [e.kind for e in events if e.num == 1] == ["ended"]
        assert second.result(1).return_value == "ok:quick"
        second.remove(0, "cleaning up")
        events += _poll_until(second, _ended(0))
        # Only job 0 left: job 3, of the same cluster but not re-attached, runs on.
        other = f"{second.result(0).htcondor_id.split('.')[0]}.3"
        assert _queued(other)
        assert second.reattach([3]) == {3: "running"}
        second.remove(3, "cleaning up")
        events += _poll_until(second, _ended(3))
        second.close()
    assert second.active() == []
    assert [e.state for e in events if e.num in (0, 3) and e.kind == "ended"] == [JobState.REMOVED] * 2


def test_launch_follows_a_reattached_and_a_new_cluster_in_one_table(tmp_path, status_tables):  # noqa: F811
    """A job another driver submitted is re-attached, the other submitted anew: one table shows both clusters,
    and launch() returns both results."""
    with configured_launchers(tmp_path / "sweep", _task) as new_launcher:
        first = Sweep.from_launcher(new_launcher())
        first.submit([["+x=1", "+sleep=15"]], first_num=0)
        _poll_until(first, _running(0))
        first.close()
        results = new_launcher().launch([["+x=1", "+sleep=15"], ["+x=2"]], initial_job_idx=0)
    assert [r.return_value for r in results] == ["ok:1", "ok:2"]
    clusters = sorted({int(r.htcondor_id.split(".")[0]) for r in results})
    assert len(clusters) == 2, clusters
    title = f"HTCondor clusters {clusters[0]}, {clusters[1]}: "
    assert any(t.startswith(title) for t in status_tables), status_tables[-3:]
    assert status_tables[-1].startswith(title + "0 idle, 0 running, 0 held, 2 done, 0 failed of 2 jobs")
