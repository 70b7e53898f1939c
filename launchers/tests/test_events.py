"""ClusterWatcher's decisions on scripted job events (fakes at the bindings boundary; the real pool tests
are in test_pool_failures.py)."""

import enum
import types

from hydra_plugins.hydra_htcondor_launcher import _events


class EventType(enum.IntEnum):
    SUBMIT = 0
    EXECUTE = 1
    JOB_EVICTED = 4
    JOB_TERMINATED = 5
    JOB_ABORTED = 9
    JOB_SUSPENDED = 10
    JOB_UNSUSPENDED = 11
    JOB_HELD = 12
    JOB_RELEASED = 13


class JobAction(enum.Enum):
    Remove = "remove"
    Release = "release"


class Event(dict):
    def __init__(self, etype, cluster, proc, **attrs):
        super().__init__(attrs)
        self.type, self.cluster, self.proc = etype, cluster, proc


class FakeBindings:
    """Stands in for htcondor2: a scripted event log, and a schedd that records actions."""

    JobEventType = EventType
    JobAction = JobAction

    def __init__(self, batches):
        self.batches = list(batches)  # one list of events per poll
        self.actions = []

    def JobEventLog(self, path):  # mirrors the bindings
        fake = self

        class Log:
            def events(self, stop_after):
                assert stop_after == 0  # never block
                return fake.batches.pop(0) if fake.batches else []

        return Log()

    def schedd(self):
        return types.SimpleNamespace(act=lambda action, spec: self.actions.append((action.value, spec)))


def _watch(bindings, procs, **kw):
    opts = {"max_releases": 0, "poll_interval": 0.0, "status_interval": 1000.0, "timeout_s": 1000.0}
    opts.update(kw)
    return _events.ClusterWatcher(bindings, bindings.schedd(), 7, "log", procs, **opts)


def test_terminations_exit_codes_and_signals():
    b = FakeBindings(
        [
            [Event(EventType.SUBMIT, 7, 0), Event(EventType.EXECUTE, 7, 0), Event(EventType.EXECUTE, 7, 1)],
            [
                Event(EventType.JOB_TERMINATED, 7, 0, TerminatedNormally=True, ReturnValue=0),
                Event(EventType.JOB_TERMINATED, 7, 1, TerminatedNormally=False, TerminatedBySignal=9),
                Event(
                    EventType.JOB_TERMINATED, 8, 2, TerminatedNormally=True, ReturnValue=0
                ),  # other cluster
                Event(EventType.JOB_TERMINATED, 7, 2, TerminatedNormally=True, ReturnValue=3),
            ],
        ]
    )
    states = _watch(b, {0: 10, 1: 11, 2: 12}).wait()
    assert (states[0].state, states[0].exit_code) == ("done", 0)
    assert (states[1].state, states[1].signal) == ("failed", 9)
    assert (states[2].state, states[2].exit_code, states[2].num) == ("failed", 3, 12)
    assert b.actions == []


def test_held_job_released_up_to_max_releases_then_removed():
    b = FakeBindings(
        [
            [Event(EventType.JOB_HELD, 7, 0, HoldReason="disk full")],
            [Event(EventType.JOB_RELEASED, 7, 0), Event(EventType.EXECUTE, 7, 0)],
            [Event(EventType.JOB_HELD, 7, 0, HoldReason="disk still full")],
            [Event(EventType.JOB_ABORTED, 7, 0, Reason="removed by launcher")],
        ]
    )
    st = _watch(b, {0: 0}, max_releases=1).wait()[0]
    assert b.actions == [("release", "7.0"), ("remove", "7.0")]
    assert (st.state, st.holds, st.releases, st.hold_reason) == ("removed", 2, 1, "disk still full")


def test_deadline_removes_only_unfinished_jobs():
    now = [0.0]

    def clock():
        now[0] += 1.0
        return now[0]

    b = FakeBindings([[Event(EventType.JOB_TERMINATED, 7, 0, TerminatedNormally=True, ReturnValue=0)]])
    states = _watch(b, {0: 0, 1: 1}, timeout_s=5.0, clock=clock).wait()
    assert states[0].state == "done" and not states[0].timed_out
    assert states[1].state == "removed" and states[1].timed_out
    assert b.actions == [("remove", ["7.1"])]


def test_status_line_counts_every_state():
    st = {i: _events.ProcState(proc=i, num=i) for i in range(5)}
    for i, name in enumerate(["idle", "running", "held", "done", "removed"]):
        st[i].state = name
    line = _events.status_line(3, st, 12.4)
    assert line == "HTCondor cluster 3: 1 idle, 1 running, 1 held, 1 done, 1 failed of 5 jobs [12s]"
