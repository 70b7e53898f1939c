"""ClusterWatcher's decisions on scripted job events (fakes at the bindings boundary; the real pool tests
are in test_pool_failures.py)."""

import enum
import logging
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


def _state(num, state, **kw):
    return _events.ProcState(proc=num, num=num, state=state, **kw)


def test_status_table_is_the_counts_line_then_aligned_rows():
    st = {
        0: _state(0, "done", exit_code=0, host="slot1_1@vm", run_start=900, run_end=955, overrides="lr=0.5"),
        1: _state(1, "running", host="slot1_12@vm", run_start=700, overrides="lr=1.0 model=big"),
        2: _state(2, "idle", since=990, overrides="lr=2.0"),
        3: _state(3, "failed", signal=9, host="slot1_3@vm", run_start=800, run_end=803, overrides="lr=4.0"),
    }
    table = _events.status_table(12, st, 34.2, now=1000.0)
    assert table.splitlines() == [
        "HTCondor cluster 12: 1 idle, 1 running, 0 held, 1 done, 1 failed of 4 jobs [34s]",
        "  job  id    state    host          time  note      overrides",
        "  #3   12.3  failed   slot1_3@vm      3s  signal 9  lr=4.0",
        "  #1   12.1  running  slot1_12@vm  5m00s            lr=1.0 model=big",
        "  #2   12.2  idle     -              10s            lr=2.0",
        "  #0   12.0  done     slot1_1@vm     55s  exit 0    lr=0.5",
    ]
    # The header stays the greppable counts line of earlier versions.
    assert table.splitlines()[0] == _events.status_line(12, st, 34.2)


def test_status_table_caps_rows_attention_first():
    states = ["done"] * 75 + ["idle"] * 5 + ["running"] * 15 + ["failed"] * 2 + ["held", "removed", "held"]
    st = {i: _state(i, name) for i, name in enumerate(states)}
    lines = _events.status_table(3, st, 1.0, now=0.0).splitlines()
    assert len(lines) == 2 + 20 + 1  # counts, column names, 20 rows, the rest
    shown = [line.split()[2] for line in lines[2:-1]]
    assert shown == ["held"] * 2 + ["failed", "failed", "removed"] + ["running"] * 15
    assert [line.split()[0] for line in lines[2:4]] == ["#97", "#99"]  # by job number within a state
    assert lines[-1] == "  ... and 80 more (5 idle, 75 done)"
    # Small batches show every job and no summary line.
    assert len(_events.status_table(3, dict(list(st.items())[:20]), 1.0, now=0.0).splitlines()) == 22


def test_status_table_notes_hold_reason_shortened_releases_and_removal():
    reason = (
        "Error from slot1_1@vm: Job has gone over cgroup memory limit of 256 megabytes.\n"
        "Peak usage: 300 megabytes.  Consider resubmitting with a higher request_memory."
    )
    st = {
        0: _state(0, "held", hold_reason=reason, holds=1, since=40.0),
        1: _state(1, "removed", hold_reason="disk full", holds=2, releases=1, run_start=1.0, run_end=31.0),
        2: _state(2, "removed", abort_reason="deadline of 0.2 min passed"),
        3: _state(3, "idle", hold_reason="disk full", holds=1, releases=1, since=50.0),
    }
    rows = _columns(_events.status_table(5, st, 60.0, now=100.0))
    note = rows["#0"]["note"]
    assert note.startswith("held: Error from slot1_1@vm: Job has gone over") and note.endswith("...")
    assert len(note) == len("held: ") + 60 and "Peak usage" not in note
    assert rows["#0"]["time"] == "1m00s"  # held for a minute so far
    assert (rows["#1"]["time"], rows["#1"]["note"]) == ("30s", "held: disk full; released 1x")
    assert (rows["#2"]["time"], rows["#2"]["note"]) == ("-", "deadline of 0.2 min passed")
    assert (rows["#3"]["time"], rows["#3"]["note"]) == ("50s", "released 1x")


def _columns(table):
    """Rows of a status table by job. Columns are found as a reader sees them: the stretches that some row
    fills, separated by gutters of two or more spaces that run through every row. A misaligned cell would
    bridge a gutter, leaving fewer stretches than column names."""
    lines = [line for line in table.splitlines()[1:] if not line.lstrip().startswith("...")]
    width = max(map(len, lines))
    filled = [any(i < len(line) and line[i] != " " for line in lines) for i in range(width + 1)]
    spans, start = [], None
    for i in range(width + 1):
        if filled[i] and start is None:
            start = i
        elif start is not None and not filled[i] and not (i + 1 < width and filled[i + 1]):
            spans.append((start, i))
            start = None
    names = lines[0].split()
    assert len(spans) == len(names), table
    rows = {}
    for line in lines[1:]:
        cells = [line[a:b].strip() for a, b in spans]
        rows[cells[0]] = dict(zip(names, cells, strict=True))
    return rows


def test_short_host_prefers_the_slot_name():
    sinful = "<127.0.0.1:38493?addrs=127.0.0.1-38493&alias=vm>"
    assert _events.short_host("slot1_2@vm", sinful) == "slot1_2@vm"
    assert _events.short_host("slot1_2@e42.chtc.wisc.edu", None) == "slot1_2@e42"
    assert _events.short_host(None, "<10.0.0.7:9618?addrs=10.0.0.7-9618&alias=node7.example.org>") == "node7"
    assert _events.short_host(None, "<10.0.0.7:9618>") == "10.0.0.7:9618"
    assert _events.short_host("slot1@10.0.0.7", None) == "slot1@10.0.0.7"
    assert _events.short_host(None, None) is None


def test_format_duration():
    seconds = (None, -2, 0, 59.9, 60, 185, 3599, 3600, 7620, 86400 + 4 * 3600)
    shown = ["-", "0s", "0s", "59s", "1m00s", "3m05s", "59m59s", "1h00m", "2h07m", "1d04h"]
    assert [_events.format_duration(s) for s in seconds] == shown


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
    with caplog.at_level(logging.INFO, logger=_events.__name__):
        w.wait()
    tables = [r.getMessage() for r in caplog.records if r.name == _events.__name__]
    # 0 s: the first poll (both idle); 1 s: the change at 0.5 s, held back to change_gap_s after the last
    # table; 6 s: interval; 7 s: the change at 6.5 s, held back likewise; 10 s: the final table.
    assert [t.splitlines()[0].rsplit("[", 1)[1] for t in tables] == ["0s]", "1s]", "6s]", "7s]", "10s]"]
    assert "2 idle" in tables[0] and "1 running" in tables[1] and "1 done" in tables[3]
    tables = tables[1:]
    assert [line.split()[0] for line in tables[-1].splitlines()[2:]] == ["#1", "#0"]  # removed first
    final = _columns(tables[-1])
    assert final["#1"] == {
        "job": "#1", "id": "7.1", "state": "removed", "host": "-", "time": "-",
        "note": "removed by a user", "overrides": "lr=1.0",
    }  # fmt: skip
    assert final["#0"] == {
        "job": "#0", "id": "7.0", "state": "done", "host": "slot1_1@node7", "time": "59s",
        "note": "exit 0", "overrides": "lr=0.5",
    }  # fmt: skip
    # While it runs, job 0 shows its slot and run time (wall clock 200 - EXECUTE at 101); job 1 its wait.
    first = _columns(tables[0])
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
    assert w.states[0].state == _events.RUNNING and w.states[0].host == "slot1@vm"
