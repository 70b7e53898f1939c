"""The wait loop's decisions on scripted job events: releases, removals, the deadline, when tables are
logged (fakes at the bindings boundary; the real pool tests are in test_pool_failures.py)."""

import dataclasses
import enum
import itertools
import logging
import types

from hydra_plugins.hydra_htcondor_launcher import _wait
from hydra_plugins.hydra_htcondor_launcher._jobstate import JobRecord, JobState
from test_status import columns


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
    def __init__(self, etype, cluster, proc, ts=None, **attrs):
        super().__init__(attrs)
        self.type, self.cluster, self.proc = etype, cluster, proc
        if ts is not None:  # JobEvent.timestamp: epoch seconds
            self.timestamp = ts


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
        return types.SimpleNamespace(
            act=lambda action, spec, reason=None: self.actions.append((action.value, spec))
        )


_POLICY = {f.name for f in dataclasses.fields(_wait.WatchPolicy)}


def _policy_and_rest(kw):
    """The WatchPolicy of the keywords that name its fields (fast defaults), and the other keywords."""
    opts = {"max_releases": 0, "poll_interval": 0.0, "status_interval": 1000.0, "timeout_s": 1000.0, **kw}
    policy = _wait.WatchPolicy(**{k: v for k, v in opts.items() if k in _POLICY})
    return policy, {k: v for k, v in opts.items() if k not in _POLICY}


def _wait_for(watcher, on_change=None):
    """A Follower of this one cluster (its clocks), waited on until every job ended; the records."""
    follower = _wait.Follower(
        watcher.policy, clock=watcher.clock, wall_clock=watcher.wall_clock, on_change=on_change
    )
    follower.add(watcher)
    follower.wait(until=lambda: watcher.done)
    return watcher.records


def _watch(bindings, procs, overrides=None, **kw):
    policy, rest = _policy_and_rest(kw)
    overrides = overrides or {}
    records = {p: JobRecord(proc=p, num=n, overrides=overrides.get(p, "")) for p, n in procs.items()}
    # An existing file: the watcher checks that the event log is still the file it opened.
    return _wait.ClusterWatcher(bindings, bindings.schedd(), 7, __file__, records, policy, **rest)


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
    states = _wait_for(_watch(b, {0: 10, 1: 11, 2: 12}))
    assert (states[0].state, states[0].exit_code) == (JobState.DONE, 0)
    assert (states[1].state, states[1].signal) == (JobState.FAILED, 9)
    assert (states[2].state, states[2].exit_code, states[2].num) == (JobState.FAILED, 3, 12)
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
    st = _wait_for(_watch(b, {0: 0}, max_releases=1))[0]
    assert b.actions == [("release", "7.0"), ("remove", "7.0")]
    assert (st.state, st.holds, st.releases, st.hold_reason) == (JobState.REMOVED, 2, 1, "disk still full")


def test_deadline_removes_only_unfinished_jobs():
    now = [0.0]

    def clock():
        now[0] += 1.0
        return now[0]

    b = FakeBindings([[Event(EventType.JOB_TERMINATED, 7, 0, TerminatedNormally=True, ReturnValue=0)]])
    states = _wait_for(_watch(b, {0: 0, 1: 1}, timeout_s=5.0, clock=clock))
    assert states[0].state == JobState.DONE and not states[0].timed_out
    assert states[1].state == JobState.REMOVED and states[1].timed_out
    assert b.actions == [("remove", ["7.1"])]


def test_watcher_logs_tables_on_change_at_most_each_second_and_every_interval(caplog):
    ticks = [0.0]

    def clock():
        ticks[0] += 0.25
        return ticks[0]

    slot = {"SlotName": "slot1_1@node7.example.org", "ExecuteHost": "<10.0.0.7:9618?alias=node7>"}
    batches = [[] for _ in range(40)]
    batches[0] = [Event(EventType.SUBMIT, 7, 0, ts=100), Event(EventType.SUBMIT, 7, 1, ts=100)]
    batches[1] = [Event(EventType.EXECUTE, 7, 0, ts=101, **slot)]
    batches[25] = [Event(EventType.JOB_TERMINATED, 7, 0, ts=160, TerminatedNormally=True, ReturnValue=0)]
    batches[39] = [Event(EventType.JOB_ABORTED, 7, 1, ts=170, Reason="removed by a user")]
    b = FakeBindings(batches)
    w = _watch(
        b,
        {0: 0, 1: 1},
        status_interval=5.0,
        change_gap_s=1.0,
        clock=clock,
        overrides={0: "lr=0.5", 1: "lr=1.0"},
    )
    w.wall_clock = lambda: 200.0
    with caplog.at_level(logging.INFO, logger=_wait.__name__):
        _wait_for(w)
    tables = [r.getMessage() for r in caplog.records if r.name == _wait.__name__]
    # 0 s: the first poll (both idle); 1 s: the change at 0.5 s, held back to change_gap_s after the last
    # table; 6 s: interval; 7 s: the change at 6.5 s, held back likewise; 10 s: the final table.
    assert [t.splitlines()[0].rsplit("[", 1)[1] for t in tables] == ["0s]", "1s]", "6s]", "7s]", "10s]"]
    assert "2 idle" in tables[0] and "1 running" in tables[1] and "1 done" in tables[3]
    tables = tables[1:]
    assert [line.split()[0] for line in tables[-1].splitlines()[2:]] == ["#1", "#0"]  # removed first
    final = columns(tables[-1])
    assert final["#1"] == {
        "job": "#1", "id": "7.1", "state": "removed", "host": "-", "time": "-",
        "note": "removed by a user", "overrides": "lr=1.0",
    }  # fmt: skip
    assert final["#0"] == {
        "job": "#0", "id": "7.0", "state": "done", "host": "slot1_1@node7", "time": "59s",
        "note": "exit 0", "overrides": "lr=0.5",
    }  # fmt: skip
    # While it runs, job 0 shows its slot and run time (wall clock 200 - EXECUTE at 101); job 1 its wait.
    first = columns(tables[0])
    assert (first["#0"]["host"], first["#0"]["time"]) == ("slot1_1@node7", "1m39s")
    assert (first["#1"]["host"], first["#1"]["time"]) == ("-", "1m40s")


def test_a_resumed_job_is_running_again():
    b = FakeBindings(
        [
            [Event(EventType.SUBMIT, 7, 0), Event(EventType.EXECUTE, 7, 0, SlotName="slot1@vm")],
            [Event(EventType.JOB_SUSPENDED, 7, 0), Event(EventType.JOB_UNSUSPENDED, 7, 0)],
        ]
    )
    w = _watch(b, {0: 0})
    w.poll()
    w.poll()
    assert w.records[0].state == JobState.RUNNING and w.records[0].host == "slot1@vm"


def test_on_change_is_throttled_to_save_gap_and_flushed_at_the_end():
    """A big sweep changes state at nearly every poll; the manifest (on_change) is rewritten at most every
    save_gap_s, and once more when every job has ended."""
    ticks = [0.0]

    def clock():
        ticks[0] += 0.5
        return ticks[0]

    flip = [EventType.EXECUTE, EventType.JOB_EVICTED] * 10  # a change at every poll for 10 s
    batches = [[Event(etype, 7, 0)] for etype in flip]
    end = [Event(EventType.JOB_TERMINATED, 7, p, TerminatedNormally=True, ReturnValue=0) for p in (0, 1)]
    batches.append(end)
    b = FakeBindings(batches)
    saves = []
    w = _watch(b, {0: 0, 1: 1}, save_gap_s=2.0, clock=clock)
    _wait_for(w, on_change=lambda: saves.append((ticks[0], [rec.state for rec in w.records.values()])))
    times = [t for t, _ in saves]
    assert all(later - earlier >= 2.0 for earlier, later in itertools.pairwise(times[:-1])), times
    assert 5 <= len(saves) <= 7, times  # not the 21 changes
    assert saves[-1][1] == [JobState.DONE, JobState.DONE]  # the end is always saved


def _clocked(bindings, path, now, **kw):
    records = {p: JobRecord(proc=p, num=p) for p in (0, 1)}
    policy, rest = _policy_and_rest(kw)
    return _wait.ClusterWatcher(
        bindings, bindings.schedd(), 7, str(path), records, policy, clock=lambda: now[0], **rest
    )


def test_an_event_log_unreadable_past_the_grace_fails_and_removes_the_unfinished_jobs(tmp_path, caplog):
    b = FakeBindings([[Event(EventType.JOB_TERMINATED, 7, 0, TerminatedNormally=True, ReturnValue=0)]])
    path = tmp_path / "batch.log"
    now = [0.0]
    w = _clocked(b, path, now, log_grace_s=60.0)
    with caplog.at_level(logging.WARNING, logger=_wait.__name__):
        w.poll()  # missing from the start: a warning, nothing failed yet
        now[0] = 59.0
        w.poll()
        path.write_text("")  # it appears: read, and the grace starts afresh when it goes again
        w.poll()
        assert w.records[0].state is JobState.DONE and w._unreadable_since is None
        path.unlink()
        now[0] = 100.0
        w.poll()
        now[0] = 159.0
        w.poll()
        assert not w.records[1].final and b.actions == []
        now[0] = 160.0
        w.poll()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2 and f"cannot read its event log {path}" in warnings[0], warnings
    assert w.records[0].state is JobState.DONE  # its end was read: not touched
    rec = w.records[1]
    assert rec.state is JobState.REMOVED and rec.final
    assert f"its event log {path} stayed unreadable for 60 s: No such file or directory" == rec.abort_reason
    assert b.actions == [("remove", ["7.1"])]


def test_an_event_log_replaced_or_failing_to_parse_counts_as_unreadable(tmp_path):
    path = tmp_path / "batch.log"
    path.write_text("")
    now = [0.0]
    b = FakeBindings([])
    w = _clocked(b, path, now, log_grace_s=5.0)
    w.poll()
    path.unlink()
    (tmp_path / "other").write_text("")  # the old inode must not be reused by the new file
    path.write_text("")  # HTCondor writes the next event to a new file
    assert w._read_events() == "the file was replaced since the launcher opened it"

    class Broken(FakeBindings):
        def JobEventLog(self, path):
            class Log:
                def events(self, stop_after):
                    yield Event(EventType.EXECUTE, 7, 0)
                    raise RuntimeError("unable to parse\n event")

            return Log()

    w = _clocked(Broken([]), path, now, log_grace_s=5.0)
    assert w._read_events() == "RuntimeError: unable to parse event"
    assert w.records[0].state is JobState.RUNNING  # the events before the damage count
    now[0] = 5.0
    w.poll()
    assert not w.records[1].final  # the grace starts at the first failure
    now[0] = 10.0
    w.poll()
    assert all(rec.state is JobState.REMOVED for rec in w.records.values())


def test_two_clusters_are_polled_together_in_one_table_each_with_its_own_deadline(caplog):
    """A follower reads both clusters at every poll (not one after the other), shows their jobs in one table,
    and counts each cluster's deadline from when it was added."""
    now = [0.0]
    b7 = FakeBindings([[Event(EventType.EXECUTE, 7, 0)], [], [], [], [], []])
    end = Event(EventType.JOB_TERMINATED, 8, 0, ReturnValue=0)
    b8 = FakeBindings([[Event(EventType.EXECUTE, 8, 0)], [end]])
    policy, _ = _policy_and_rest({"timeout_s": 10.0, "status_interval": 1.0, "change_gap_s": 0.0})
    first = _wait.ClusterWatcher(
        b7, b7.schedd(), 7, __file__, {0: JobRecord(proc=0, num=0, cluster=7)}, policy, clock=lambda: now[0]
    )
    second = _wait.ClusterWatcher(
        b8, b8.schedd(), 8, __file__, {0: JobRecord(proc=0, num=1, cluster=8)}, policy, clock=lambda: now[0]
    )
    follower = _wait.Follower(policy, clock=lambda: now[0], wall_clock=lambda: 100.0)
    follower.add(first)
    now[0] = 5.0
    follower.add(second)  # its deadline: 15 s
    follower.poll()
    assert first.records[0].state is JobState.RUNNING and second.records[0].state is JobState.RUNNING
    follower.poll()
    assert second.records[0].state is JobState.DONE and not first.done  # each ends on its own
    with caplog.at_level(logging.INFO, logger=_wait.__name__):
        follower.show()
    table = caplog.records[-1].getMessage()
    assert table.startswith("HTCondor clusters 7, 8: 0 idle, 1 running, 0 held, 1 done, 0 failed of 2 jobs")
    assert {row["id"] for row in columns(table).values()} == {"7.0", "8.0"}
    now[0] = 10.0
    follower.poll()
    assert b7.actions == [("remove", "ClusterId == 7")] and first.records[0].timed_out
    assert not second.records[0].timed_out
    now[0] = 10.0 + _wait.DRAIN_S  # no abort event came: given up
    follower.poll()
    assert first.records[0].state is JobState.REMOVED and not follower.in_flight
