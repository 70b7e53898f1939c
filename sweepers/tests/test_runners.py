"""The HTCondor runner's bookkeeping against a scripted ``Sweep`` (a fake at the launcher's public interface;
the real one on the pool: test_sweeper_pool.py): reports go to the sweeper's decision, a pruned job is
removed with its reason and its later "ended" event is not news, contiguous trials share a submit call."""

from __future__ import annotations

from hydra.core.utils import JobReturn, JobStatus
from hydra_plugins.hydra_htcondor_launcher.sweep import JobState, SweepEvent
from hydra_plugins.hydra_optuna_stream_sweeper._runners import Ended, HTCondorRunner


class ScriptedSweep:
    """Sweep's interface; poll() hands out the scripted event lists one call at a time."""

    def __init__(self, script: list[list[SweepEvent]]) -> None:
        self.script = script
        self.submitted: list[tuple[list[list[str]], int]] = []
        self.removed: list[tuple[int, str]] = []
        self.live: set[int] = set()

    def submit(self, job_overrides, first_num):
        self.submitted.append(([list(o) for o in job_overrides], first_num))
        nums = list(range(first_num, first_num + len(job_overrides)))
        self.live.update(nums)
        return nums

    def poll(self):
        events = self.script.pop(0) if self.script else []
        self.live -= {e.num for e in events if e.kind == "ended"}
        return events

    def result(self, num):
        ret = JobReturn()
        ret.status, ret.return_value = JobStatus.COMPLETED, float(num)
        return ret

    def remove(self, num, reason):
        self.removed.append((num, reason))

    def reattach(self, nums):
        return {n: ("lost" if n == 7 else "running") for n in nums}

    def active(self):
        return sorted(self.live)

    def close(self):
        self.closed_with = sorted(self.live)


def _report(num, step, value):
    return SweepEvent(num, "report", JobState.RUNNING, step=step, value=value)


def _ended(num):
    return SweepEvent(num, "ended", JobState.DONE)


def test_reports_prune_remove_and_the_removed_jobs_end_is_not_news():
    decisions = []

    def decide(num, step, value):
        decisions.append((num, step, value))
        return f"pruned at step {step}" if value > 10 else None

    sweep = ScriptedSweep(
        [
            [],  # nothing yet: the runner polls again
            [SweepEvent(0, "state", JobState.RUNNING), _report(0, 0, 3.0), _report(1, 0, 50.0)],
            [_ended(1), _report(0, 1, 2.0)],  # job 1's abort event after its removal
            [_ended(0)],
        ]
    )
    runner = HTCondorRunner(sweep, decide, poll_s=0.01)
    runner.submit([(0, ["x=1"]), (1, ["x=9"]), (3, ["x=2"])])
    assert sweep.submitted == [([["x=1"], ["x=9"]], 0), ([["x=2"]], 3)]  # contiguous runs share a call

    assert runner.wait() == [Ended(1, pruned="pruned at step 0")]
    assert sweep.removed == [(1, "pruned at step 0")]
    ended = runner.wait()  # job 1's end skipped; job 0 goes on, reports, then ends with its result
    assert [(e.num, e.pruned, e.ret.return_value) for e in ended] == [(0, None, 0.0)]
    assert decisions == [(0, 0, 3.0), (1, 0, 50.0), (0, 1, 2.0)]


def test_wait_returns_when_nothing_but_pruned_jobs_is_left():
    sweep = ScriptedSweep([[_report(2, 0, 99.0)]])
    runner = HTCondorRunner(sweep, lambda n, s, v: "pruned", poll_s=0.01)
    runner.submit([(2, ["x=1"])])
    assert [e.num for e in runner.wait()] == [2]
    assert runner.wait() == []  # job 2 is still "active" in HTCondor until its abort event, but not ours


def test_close_waits_for_the_removed_jobs_to_end_so_the_manifest_records_their_removal():
    # Job 4 was pruned (removed); its abort event comes two polls later. Job 5 is another trial's job, kept
    # running (on_interrupt=keep): close does not wait for it.
    sweep = ScriptedSweep([[_report(4, 1, 99.0)], [], [], [_ended(4)]])
    runner = HTCondorRunner(sweep, lambda n, s, v: "pruned at epoch 1" if n == 4 else None, poll_s=0.01)
    runner.submit([(4, ["x=1"]), (5, ["x=2"])])
    assert runner.wait() == [Ended(4, pruned="pruned at epoch 1")]
    runner.close()
    assert sweep.script == [] and sweep.closed_with == [5]


def test_reattach_reports_only_the_lost_and_stop_removes_the_rest():
    sweep = ScriptedSweep([])
    runner = HTCondorRunner(sweep, lambda n, s, v: None, poll_s=0.01)
    sweep.live.update({5, 6})
    assert runner.reattach([5, 6, 7]) == {7: "lost: neither HTCondor nor the sweep folder knows its job"}
    assert runner.stop("the search stopped") == [5, 6]
    assert sweep.removed == [(5, "the search stopped"), (6, "the search stopped")]
    assert runner.interrupted() == []  # already removed: nothing left to remove


def test_ctrl_c_keeps_the_jobs_with_on_interrupt_keep():
    sweep = ScriptedSweep([])
    sweep.live.add(4)
    runner = HTCondorRunner(sweep, lambda n, s, v: None, keep_on_interrupt=True)
    assert runner.interrupted() == [] and sweep.removed == []
