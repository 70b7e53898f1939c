"""Rendering of the job-status table (pure text from JobRecords)."""

from hydra_plugins.hydra_htcondor_launcher import _status
from hydra_plugins.hydra_htcondor_launcher._jobstate import JobRecord, JobState


def _state(num, state, **kw):
    return JobRecord(proc=num, num=num, state=JobState(state), **kw)


def columns(table):
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


def test_status_line_counts_every_state():
    st = {i: _state(i, name) for i, name in enumerate(["idle", "running", "held", "done", "removed"])}
    line = _status.status_line(3, st, 12.4)
    assert line == "HTCondor cluster 3: 1 idle, 1 running, 1 held, 1 done, 1 failed of 5 jobs [12s]"


def test_status_table_is_the_counts_line_then_aligned_rows():
    st = {
        0: _state(0, "done", exit_code=0, host="slot1_1@vm", run_start=900, run_end=955, overrides="lr=0.5"),
        1: _state(1, "running", host="slot1_12@vm", run_start=700, overrides="lr=1.0 model=big"),
        2: _state(2, "idle", since=990, overrides="lr=2.0"),
        3: _state(3, "failed", signal=9, host="slot1_3@vm", run_start=800, run_end=803, overrides="lr=4.0"),
    }
    table = _status.status_table(12, st, 34.2, now=1000.0)
    assert table.splitlines() == [
        "HTCondor cluster 12: 1 idle, 1 running, 0 held, 1 done, 1 failed of 4 jobs [34s]",
        "  job  id    state    host          time  note      overrides",
        "  #3   12.3  failed   slot1_3@vm      3s  signal 9  lr=4.0",
        "  #1   12.1  running  slot1_12@vm  5m00s            lr=1.0 model=big",
        "  #0   12.0  done     slot1_1@vm     55s  exit 0    lr=0.5",  # ended 45 s ago: before the waiting
        "  #2   12.2  idle     -              10s            lr=2.0",
    ]
    # The header stays the greppable counts line of earlier versions.
    assert table.splitlines()[0] == _status.status_line(12, st, 34.2)


def test_status_table_caps_rows_attention_first():
    states = ["done"] * 75 + ["idle"] * 5 + ["running"] * 15 + ["failed"] * 2 + ["held", "removed", "held"]
    st = {i: _state(i, name) for i, name in enumerate(states)}
    lines = _status.status_table(3, st, 1.0, now=0.0).splitlines()
    assert len(lines) == 2 + 20 + 1  # counts, column names, 20 rows, the rest
    shown = [line.split()[2] for line in lines[2:-1]]
    assert shown == ["held"] * 2 + ["failed", "failed", "removed"] + ["running"] * 15
    assert [line.split()[0] for line in lines[2:4]] == ["#97", "#99"]  # by job number within a state
    assert lines[-1] == "  ... and 80 more (5 idle, 75 done)"
    # Small batches show every job and no summary line.
    assert len(_status.status_table(3, dict(list(st.items())[:20]), 1.0, now=0.0).splitlines()) == 22


def test_a_big_sweeps_table_shows_what_matters_and_sums_up_the_rest():
    now = 10_000.0
    st = {}
    for num in range(1000):
        if num < 600:
            st[num] = _state(num, "idle", since=now - 900)
        elif num < 700:
            st[num] = _state(num, "running", host="slot1_1@vm", run_start=now - 300)
        else:  # finished 1..300 s ago, the highest job number last
            st[num] = _state(num, "done", exit_code=0, run_start=now - 2000, run_end=now - (1000 - num))
    st[5] = _state(5, "held", hold_reason="disk full", since=now - 10)
    st[6] = _state(6, "failed", exit_code=80, run_start=now - 99, run_end=now - 9)
    lines = _status.status_table(3, st, 900.0, now=now).splitlines()
    assert (
        lines[0]
        == "HTCondor cluster 3: 598 idle, 100 running, 1 held, 300 done, 1 failed of 1000 jobs [900s]"
    )
    assert len(lines) == 2 + _status.MAX_ROWS + 1  # a table a terminal holds, at any size
    assert [line.split()[0] for line in lines[2:5]] == ["#5", "#6", "#600"]  # held, failed, then running
    assert lines[-1] == "  ... and 980 more (82 running, 598 idle, 300 done)"
    # Fewer running jobs than rows: the rest of the rows are the latest to finish, before the waiting ones.
    for num in range(610, 700):
        st[num] = _state(num, "idle", since=now - 900)
    rows = [line.split()[0] for line in _status.status_table(3, st, 900.0, now=now).splitlines()[2:-1]]
    assert rows[:12] == ["#5", "#6"] + [f"#{n}" for n in range(600, 610)]
    recent = [f"#{n}" for n in range(999, 999 - 8, -1)]  # ended within RECENT_S, latest first
    assert rows[12:] == recent
    last = _status.status_table(3, st, 900.0, now=now).splitlines()[-1]
    assert last == "  ... and 980 more (688 idle, 292 done)"


def test_status_table_filters_by_state_and_counts_every_job():
    st = {
        i: _state(i, name) for i, name in enumerate(["idle", "running", "removed", "done", "failed", "idle"])
    }
    table = _status.status_table("sweep x", st, 1.0, now=0.0, max_rows=None, states={JobState.FAILED})
    lines = table.splitlines()
    assert lines[0].startswith("sweep x: 2 idle, 1 running, 0 held, 1 done, 2 failed of 6 jobs")
    assert [line.split()[0] for line in lines[2:-1]] == ["#2", "#4"]  # failed counts removed jobs
    assert lines[-1] == "  ... and 4 more (1 running, 2 idle, 1 done)"
    none = _status.status_table(1, st, 1.0, now=0.0, states={JobState.HELD}).splitlines()
    assert none[1:] == ["  ... and 6 jobs, none shown (1 failed, 1 removed, 1 running, 2 idle, 1 done)"]


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
    rows = columns(_status.status_table(5, st, 60.0, now=100.0))
    note = rows["#0"]["note"]
    assert note.startswith("held: Error from slot1_1@vm: Job has gone over") and note.endswith("...")
    assert len(note) == len("held: ") + 60 and "Peak usage" not in note
    assert rows["#0"]["time"] == "1m00s"  # held for a minute so far
    assert (rows["#1"]["time"], rows["#1"]["note"]) == ("30s", "held: disk full; released 1x")
    assert (rows["#2"]["time"], rows["#2"]["note"]) == ("-", "deadline of 0.2 min passed")
    assert (rows["#3"]["time"], rows["#3"]["note"]) == ("50s", "released 1x")


def test_format_duration():
    seconds = (None, -2, 0, 59.9, 60, 185, 3599, 3600, 7620, 86400 + 4 * 3600)
    shown = ["-", "0s", "0s", "59s", "1m00s", "3m05s", "59m59s", "1h00m", "2h07m", "1d04h"]
    assert [_status.format_duration(s) for s in seconds] == shown


def test_status_table_notes_worker_exit_codes_evictions_and_retries():
    st = {
        0: _state(0, "failed", exit_code=80, overrides="a"),
        1: _state(1, "failed", exit_code=81, overrides="b"),
        2: _state(2, "running", evictions=2, host="slot1_1@vm", run_start=990, overrides="c"),
        3: _state(3, "idle", retries=1, exit_code=3, since=995, overrides="d"),
        4: _state(4, "done", exit_code=0, retries=1, evictions=1, overrides="e"),
    }
    rows = columns(_status.status_table(1, st, 10, now=1000.0))
    assert rows["#0"]["note"] == "exit 80 (task raised)"
    assert rows["#1"]["note"] == "exit 81 (worker error)"
    assert rows["#2"]["note"] == "evicted x2"
    assert rows["#3"]["note"] == "retried x1 after exit 3"  # waiting for its retry: why it is retried
    assert rows["#4"]["note"] == "exit 0; evicted x1; retried x1"


def test_disconnected_job_shows_since_when_and_until_when_htcondor_waits(utc):
    now = 1_800_000_000.0  # 2027-01-15 08:00:00 UTC
    st = {
        0: _state(0, "running", host="slot1_1@vm", run_start=now - 100, overrides="a"),
        1: _state(
            1,
            "disconnected",
            host="slot1_2@vm",
            run_start=now - 200,
            since=now - 30,
            disconnected_until=now + 2370,
            lease_s=2400.0,
            overrides="b",
        ),
        2: _state(2, "disconnected", host="slot1_3@vm", since=now - 5, overrides="c"),  # lease unknown
        3: _state(3, "idle", evictions=1, reconnect_failures=1, since=now - 8, overrides="d"),
    }
    table = _status.status_table(4, st, 40.0, now=now)
    lines = table.splitlines()
    assert lines[0] == (
        "HTCondor cluster 4: 1 idle, 1 running, 2 disconnected, 0 held, 0 done, 0 failed of 4 jobs [40s]"
    )
    assert [line.split()[0] for line in lines[2:]] == ["#1", "#2", "#0", "#3"]  # before the running
    rows = columns(table)
    assert rows["#1"] == {
        "job": "#1",
        "id": "4.1",
        "state": "disconnected",
        "host": "slot1_2@vm",  # the machine it was lost on
        "time": "30s",  # disconnected for so long
        "note": "since 07:59:30, HTCondor waits until 08:39:30",
        "overrides": "b",
    }
    assert rows["#2"]["note"] == "since 07:59:55, HTCondor waits for its lease (length unknown)"
    # Back in the queue after its lease expired: HTCondor logged the lost run as an eviction too.
    assert rows["#3"]["note"] == "evicted x1; reconnect failed x1"


def test_counts_line_names_disconnected_jobs_only_when_there_are_some():
    st = {0: _state(0, "running"), 1: _state(1, "disconnected")}
    assert _status.status_line(1, st, 1.0) == (
        "HTCondor cluster 1: 0 idle, 1 running, 1 disconnected, 0 held, 0 done, 0 failed of 2 jobs [1s]"
    )
    st[1] = _state(1, "idle")
    assert "disconnected" not in _status.status_line(1, st, 1.0)
