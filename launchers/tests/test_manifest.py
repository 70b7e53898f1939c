"""The sweep manifest, the lost-job cross-check and `hydra-htcondor` on files alone (no pool)."""

import json
import os
import subprocess
import sys

import cloudpickle
import pytest
from hydra.core.utils import JobReturn, JobStatus
from hydra_plugins.hydra_htcondor_launcher import _cli, _resume, _schedd, _wait
from hydra_plugins.hydra_htcondor_launcher._errors import ConfigError
from hydra_plugins.hydra_htcondor_launcher._jobstate import JobRecord, JobState
from hydra_plugins.hydra_htcondor_launcher._layout import manifest_path
from hydra_plugins.hydra_htcondor_launcher._manifest import Manifest, ManifestError, record_of
from omegaconf import OmegaConf


def _manifest(tmp_path, jobs=None):
    sweep = tmp_path / "sweep"
    m = Manifest.new(str(sweep), str(sweep / ".htcondor"), command=["app.py", "-m"])
    for num, overrides in enumerate(jobs or []):
        htdir = sweep / ".htcondor"
        m.planned(
            num,
            overrides,
            str(htdir / f"{num}.result.pkl"),
            str(htdir / f"{num}.out"),
            str(htdir / f"{num}.err"),
        )
    return m


def test_save_is_atomic_and_round_trips(tmp_path):
    m = _manifest(tmp_path, [["+x=1"], ["+x=2"]])
    rec = JobRecord(proc=1, num=1, state=JobState.RUNNING, host="slot1@vm", evictions=2, starts=3)
    m.record(rec, cluster=42, log_file="/l.log")
    m.save()
    folder = os.path.dirname(m.path)
    assert sorted(os.listdir(folder)) == ["manifest.json"]  # no temp file left behind
    loaded = Manifest.load(m.sweep_dir)
    assert loaded.sweep_id == m.sweep_id and loaded.jobs == m.jobs
    entry = loaded.job(1)
    assert entry["cluster"] == 42 and entry["state"] == "running" and entry["overrides"] == ["+x=2"]
    back = record_of(1, entry, "+x=2")
    assert (back.state, back.host, back.evictions, back.proc) == (JobState.RUNNING, "slot1@vm", 2, 1)
    # Never submitted: no proc, shown as idle.
    assert record_of(0, loaded.job(0), "+x=1").proc == -1


def test_bad_sweep_folders_are_one_line(tmp_path):
    with pytest.raises(ManifestError, match="is not a folder"):
        Manifest.load(str(tmp_path / "nope"))
    with pytest.raises(ManifestError, match=r"is not a sweep folder .*no \.htcondor/manifest\.json"):
        Manifest.load(str(tmp_path))
    path = manifest_path(str(tmp_path))
    os.makedirs(os.path.dirname(path))
    with open(path, "w") as f:
        f.write("{not json")
    with pytest.raises(ManifestError, match=r"unreadable sweep manifest .*JSONDecodeError"):
        Manifest.load(str(tmp_path))
    with open(path, "w") as f:
        json.dump({"version": 99}, f)
    with pytest.raises(ManifestError, match="version 99"):
        Manifest.load(str(tmp_path))


def _finished_sweep(tmp_path, states):
    m = _manifest(tmp_path, [[f"+x={i}"] for i in range(len(states))])
    os.makedirs(m.htcondor_dir)
    for num, state in enumerate(states):
        rec = JobRecord(proc=num, num=num, state=state, exit_code=0 if state is JobState.DONE else 80)
        m.record(rec, cluster=7, log_file=os.path.join(m.htcondor_dir, "batch-0-1.log"))
        status = JobStatus.COMPLETED if state is JobState.DONE else JobStatus.FAILED
        value = f"ok:{num}" if state is JobState.DONE else ValueError("boom")
        with open(m.jobs[str(num)]["result"], "wb") as f:
            cloudpickle.dump(JobReturn(status=status, _return_value=value), f)
    m.save()
    return m


def test_status_of_a_finished_sweep_from_files(tmp_path, capsys):
    _finished_sweep(tmp_path, [JobState.DONE, JobState.DONE])
    assert _cli.main(["status", str(tmp_path / "sweep")]) == _cli.EXIT_DONE
    out = capsys.readouterr().out
    assert "2 done, 0 failed of 2 jobs" in out and "7.1" in out and "#1 -> 'ok:1'" in out


def test_status_exit_codes_say_failed_and_unfinished(tmp_path, capsys):
    _finished_sweep(tmp_path, [JobState.DONE, JobState.FAILED])
    assert _cli.main(["status", str(tmp_path / "sweep")]) == _cli.EXIT_FAILED
    m = Manifest.load(str(tmp_path / "sweep"))
    m.planned(2, ["+x=2"], "/nowhere.pkl", "/o", "/e")  # crashed before submission
    m.save()
    assert _cli.main(["status", str(tmp_path / "sweep")]) == _cli.EXIT_UNFINISHED


def test_manifest_is_one_job_a_line_and_round_trips_empty(tmp_path):
    m = _manifest(tmp_path, [["+x=1"], ["+x=2"]])
    m.save()
    lines = open(m.path).read().splitlines()
    assert [line.split(":")[0].strip() for line in lines if line.startswith("  ")] == ['"0"', '"1"']
    assert json.loads(open(m.path).read())["jobs"]["1"]["overrides"] == ["+x=2"]
    empty = _manifest(tmp_path / "e")
    empty.save()
    assert Manifest.load(empty.sweep_dir).jobs == {}


def test_status_shows_the_return_values_the_launcher_noted_without_reading_results(tmp_path, capsys):
    m = _finished_sweep(tmp_path, [JobState.DONE, JobState.FAILED])
    results = {num: cloudpickle.load(open(m.jobs[str(num)]["result"], "rb")) for num in (0, 1)}
    m.returned(results)  # what the sweep engine's close() does with the results it returned
    assert Manifest.load(m.sweep_dir).job(0)["returned"] == "'ok:0'"
    for num in (0, 1):  # status now needs no result file
        with open(m.jobs[str(num)]["result"], "wb") as f:
            f.write(b"not a pickle")
    assert _cli.main(["status", m.sweep_dir]) == _cli.EXIT_FAILED
    out = capsys.readouterr().out
    assert "#0 -> 'ok:0'" in out and "#1 -> ValueError('boom')" in out
    # A job submitted again (resume) is planned afresh: no stale note.
    m.planned(1, ["+x=1"], m.jobs["1"]["result"], "/o", "/e")
    assert "returned" not in m.job(1)


def test_status_filters_by_state_and_caps_rows(tmp_path, capsys):
    _finished_sweep(tmp_path, [JobState.DONE, JobState.FAILED, JobState.DONE, JobState.FAILED])
    sweep = str(tmp_path / "sweep")
    assert _cli.main(["status", sweep, "--state", "failed"]) == _cli.EXIT_FAILED
    out = capsys.readouterr().out.splitlines()
    assert "2 done, 2 failed of 4 jobs" in out[0]  # the counts line counts every job
    assert [line.split()[0] for line in out[2:4]] == ["#1", "#3"]
    assert out[4] == "  ... and 2 more (2 done)"
    assert [line for line in out if "->" in line] == [
        "  #1 -> ValueError('boom')",
        "  #3 -> ValueError('boom')",
    ]
    assert _cli.main(["status", sweep, "--max-rows", "1", "--state", "done,failed"]) == _cli.EXIT_FAILED
    out = capsys.readouterr().out.splitlines()
    assert out[2].split()[0] == "#1" and out[3] == "  ... and 3 more (1 failed, 2 done)"
    assert len([line for line in out if "->" in line]) == 1  # return values of the rows shown
    with pytest.raises(SystemExit):
        _cli.main(["status", sweep, "--state", "done,finished"])
    err = capsys.readouterr().err
    assert (
        "invalid state 'finished' (accepted: a comma-separated list of idle, running, disconnected, held, "
        "done, failed)" in err
    )


def test_status_piped_into_head_ends_quietly(tmp_path):
    _finished_sweep(tmp_path, [JobState.DONE] * 999 + [JobState.FAILED])  # more than a pipe holds
    exe = os.path.join(os.path.dirname(sys.executable), "hydra-htcondor")
    done = subprocess.run(
        f"{exe} status {tmp_path / 'sweep'} | head -1; exit ${{PIPESTATUS[0]}}",
        shell=True,
        executable="/bin/bash",
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.stdout.startswith("sweep ") and done.stdout.count("\n") == 1
    assert done.returncode == _cli.EXIT_FAILED and "Traceback" not in done.stderr, done.stderr


def test_status_asks_the_history_only_for_jobs_not_in_the_queue(tmp_path, monkeypatch):
    m = _manifest(tmp_path, [["+x=0"], ["+x=1"]])
    recs = {n: JobRecord(proc=n, num=n, cluster=7, state=JobState.RUNNING) for n in (0, 1)}
    asked = []

    class Schedd:
        def query(self, constraint, projection):
            return [{"ClusterId": 7, "ProcId": p} for p in queue]

        def history(self, constraint, projection, match):
            asked.append(constraint)
            return [{"ClusterId": 7, "ProcId": 1}]

    monkeypatch.setattr(_cli, "_htcondor", lambda: None)
    monkeypatch.setattr(_schedd, "locate", lambda htcondor, collector, schedd: Schedd())
    queue = [0, 1]
    assert _cli._lost(m, recs) is None and asked == []
    queue = [0]
    assert _cli._lost(m, recs) is None
    assert asked == [f'ClusterId == 7 && HydraSweepId == "{m.sweep_id}" && member(ProcId, {{1}})']
    assert all(rec.state is JobState.RUNNING for rec in recs.values())


def test_cli_bad_input_is_one_line(tmp_path, capsys):
    assert _cli.main(["status", str(tmp_path)]) == _cli.EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is not a sweep folder" in err
    _finished_sweep(tmp_path, [JobState.DONE])
    assert _cli.main(["logs", str(tmp_path / "sweep"), "5"]) == _cli.EXIT_BAD_INPUT
    assert "job 5 is not in the sweep" in capsys.readouterr().err


class _Schedd:
    """The two schedd calls the cross-check makes (queue, history), answering from fixed sets."""

    def __init__(self, queue, history, fail=False):
        self.queue, self.hist, self.fail = queue, history, fail
        self.history_asked: list[str] = []

    def query(self, constraint, projection):
        if self.fail:
            raise OSError("no schedd")
        return [{"ProcId": p} for p in self.queue]

    def history(self, constraint, projection, match):
        self.history_asked.append(constraint)
        return [{"ProcId": p} for p in self.hist]


def _watcher(schedd, records):
    return _wait.ClusterWatcher(
        None,
        schedd,
        9,
        "/nonexistent.log",
        records,
        _wait.WatchPolicy(max_releases=0, poll_interval=0.1, status_interval=1, timeout_s=60),
    )


def test_crosscheck_fails_only_jobs_htcondor_no_longer_knows():
    records = {p: JobRecord(proc=p, num=p, state=JobState.RUNNING) for p in range(3)}
    records[2].state = JobState.DONE
    lost = _watcher(_Schedd(queue=[0], history=[]), records).crosscheck()
    assert lost == [1]
    assert records[1].state is JobState.REMOVED and "no longer knows" in (records[1].abort_reason or "")
    assert records[0].state is JobState.RUNNING and records[2].state is JobState.DONE


def test_crosscheck_asks_the_history_only_for_pending_jobs_missing_from_the_queue():
    records = {p: JobRecord(proc=p, num=p, state=JobState.DONE) for p in range(1000)}
    records[5].state = records[7].state = JobState.RUNNING
    schedd = _Schedd(queue=[5, 7], history=[])
    assert _watcher(schedd, records).crosscheck() == []
    assert schedd.history_asked == []  # 998 finished jobs left the queue: none of them is asked for
    schedd.queue = [5]
    assert _watcher(schedd, records).crosscheck() == [7]
    assert schedd.history_asked == ["ClusterId == 9 && member(ProcId, {7})"]


def test_crosscheck_keeps_jobs_in_history_and_when_the_schedd_is_unreachable():
    records = {p: JobRecord(proc=p, num=p, state=JobState.RUNNING) for p in range(2)}
    assert _watcher(_Schedd(queue=[0], history=[1]), records).crosscheck() == []
    assert _watcher(_Schedd(queue=[], history=[], fail=True), records).crosscheck() == []
    assert all(rec.state is JobState.RUNNING for rec in records.values())


def test_jobs_carry_the_sweep_id_in_their_classad():
    from hydra_plugins.hydra_htcondor_launcher import _submit
    from hydra_plugins.hydra_htcondor_launcher._settings import validate
    from hydra_plugins.hydra_htcondor_launcher.config import HTCondorLauncherConf

    conf = HTCondorLauncherConf(batch_name="app", htcondor_dir="/sweep/.htcondor")
    settings = validate(conf, cwd="/work", sweep_dir="/sweep", default_python="/venv/bin/python")
    plan = _submit.build_submit(settings, sweep_dir="/sweep", cwd="/work", job_nums=[0, 1], sweep_id="abc-1")
    assert plan.description["My.HydraSweepId"] == '"abc-1"'
    assert plan.description["My.HydraJobNum"] == "$(job_num)"
    bare = _submit.build_submit(settings, sweep_dir="/sweep", cwd="/work", job_nums=[0, 1])
    assert "My.HydraSweepId" not in bare.description  # the golden files' descriptions stay as they were


def test_a_disconnected_job_round_trips_and_old_manifests_still_read(tmp_path):
    m = _manifest(tmp_path, [["+x=1"], ["+x=2"]])
    rec = JobRecord(
        proc=0,
        num=0,
        state=JobState.DISCONNECTED,
        host="slot1_1@vm",
        since=100.0,
        lease_s=60.0,
        disconnected_until=160.0,
        disconnects=1,
    )
    m.record(rec, cluster=42, log_file="/l.log")
    m.save()
    back = record_of(0, Manifest.load(m.sweep_dir).job(0), "+x=1")
    assert (back.state, back.since, back.lease_s, back.disconnected_until, back.disconnects) == (
        JobState.DISCONNECTED,
        100.0,
        60.0,
        160.0,
        1,
    )
    # A manifest written before the disconnected state: the new fields take their defaults.
    old = {"proc": 1, "state": "running", "cluster": 42, "host": "slot1_2@vm", "evictions": 1, "retries": 0}
    back = record_of(1, old, "+x=2")
    assert (back.state, back.lease_s, back.disconnected_until, back.reconnect_failures) == (
        JobState.RUNNING,
        None,
        None,
        0,
    )


DISCONNECT_LOG = """\
000 (095.000.000) 2026-11-29 10:00:00 Job submitted from host: <127.0.0.1:45819?alias=vm>
...
001 (095.000.000) 2026-11-29 10:00:05 Job executing on host: <127.0.0.1:37229?alias=node1>
	SlotName: slot1_1@node1
...
022 (095.000.000) 2026-11-29 10:00:20 Job disconnected, attempting to reconnect
    Socket between submit and execute hosts closed unexpectedly
    Trying to reconnect to slot1_1@node1 <127.0.0.1:37229?alias=node1>
...
"""


def test_status_from_files_shows_a_job_disconnected_since_its_manifest_was_saved(tmp_path, utc):
    # The manifest saw the job running (with its lease); the event log says more since: status replays it.
    m = _manifest(tmp_path, [["+x=1"]])
    os.makedirs(m.htcondor_dir)
    log_file = os.path.join(m.htcondor_dir, "batch-0-0.log")
    with open(log_file, "w") as f:
        f.write(DISCONNECT_LOG)
    m.record(JobRecord(proc=0, num=0, state=JobState.RUNNING, lease_s=60.0), cluster=95, log_file=log_file)
    m.save()
    recs = _cli.records(Manifest.load(m.sweep_dir))
    assert recs[0].state is JobState.DISCONNECTED and recs[0].host == "slot1_1@node1"
    table = _cli.render(Manifest.load(m.sweep_dir), recs)
    row = next(line for line in table.splitlines() if line.lstrip().startswith("#0"))
    assert "disconnected" in row and "since 10:00:20, HTCondor waits until 10:01:20" in row
    assert _cli._exit_status(recs) == _cli.EXIT_UNFINISHED
    # --state takes it.
    assert _cli._states("disconnected") == {JobState.DISCONNECTED}


class _Flaky:
    """A schedd whose queue query fails `failures` times, then answers."""

    def __init__(self, failures):
        self.failures, self.asked = failures, 0

    def query(self, constraint, projection):
        self.asked += 1
        if self.asked <= self.failures:
            raise OSError("Failed to fetch ads from schedd, errmsg=SECMAN:2007:did not respond in time")
        return [{"ClusterId": 3, "ProcId": 0, "HydraJobNum": 0, "JobStatus": 2}]


def test_the_resumed_sweeps_query_is_retried_and_then_stops_the_run(monkeypatch):
    from hydra_plugins.hydra_htcondor_launcher import _resume
    from hydra_plugins.hydra_htcondor_launcher._errors import PoolUnreachableError

    monkeypatch.setattr(_schedd, "RETRY_BACKOFF_S", 0.0)
    once = _Flaky(failures=1)
    assert list(_resume._sweep_jobs(once, "s1", history=False)) == [0] and once.asked == 2
    never = _Flaky(failures=99)
    with pytest.raises(PoolUnreachableError) as err:
        _resume._sweep_jobs(never, "s1", history=False)
    assert never.asked == _schedd.QUERY_TRIES
    msg = str(err.value)
    assert "\n" not in msg and "did not answer when asked for the sweep's jobs in its queue" in msg
    assert "SECMAN:2007" in msg and f"({_schedd.QUERY_TRIES} tries in" in msg
    assert "nothing was submitted" in msg


def test_retried_waits_twice_as_long_each_time():
    waits = []
    calls = iter([OSError("a"), OSError("b"), 7])

    def call():
        got = next(calls)
        if isinstance(got, Exception):
            raise got
        return got

    assert _schedd.retried(call, "x", tries=3, backoff_s=1.5, sleep=waits.append) == 7
    assert waits == [1.5, 3.0]
    with pytest.raises(_schedd.Unanswered, match=r"^b \(2 tries in"):
        _schedd.retried(lambda: (_ for _ in ()).throw(OSError("b")), "x", tries=2, sleep=waits.append)


def test_the_task_hash_covers_its_package_sources_not_only_its_pickle(tmp_path, monkeypatch):
    import importlib

    from hydra_plugins.hydra_htcondor_launcher import _resume

    pkg = tmp_path / "fc_taskpkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "sub" / "task.py").write_text(
        "from fc_taskpkg import helper\ndef task(cfg):\n    return helper.f()\n"
    )
    (pkg / "helper.py").write_text("def f():\n    return 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    task = importlib.import_module("fc_taskpkg.sub.task").task
    files = _resume.task_files(task)
    assert sorted(files) == sorted(str(p) for p in pkg.rglob("*.py") if "__pycache__" not in p.parts)
    before = _resume.task_digest(task)
    assert _resume.task_digest(task) == before  # the same task, the same hash
    (pkg / "helper.py").write_text("def f():\n    return 2\n")  # pickled by reference: only the file changed
    assert _resume.task_digest(task) != before


def test_salvage_keeps_the_head_and_every_whole_job_line_of_a_cut_manifest(tmp_path):
    from hydra_plugins.hydra_htcondor_launcher._repair import _salvage

    m = _manifest(tmp_path, [["+x=1"], ["+x=2"], ["+x=3"]])
    m.save()
    text = open(m.path).read()
    head, jobs = _salvage(text[: text.index('"2":') + 12])
    assert head["sweep_id"] == m.sweep_id and head["htcondor_dir"] == m.htcondor_dir
    assert head["command"] == ["app.py", "-m"]
    assert sorted(jobs) == ["0", "1"] and jobs["1"]["overrides"] == ["+x=2"]
    assert _salvage("{ damaged") == ({}, {})


@pytest.mark.parametrize(
    ("target", "refused"),
    [
        ("hydra_plugins.hydra_optuna_sweeper.optuna_sweeper.OptunaSweeper", True),
        # Names with "optuna" in them that keep their job numbers: our streaming sweeper (trial number ==
        # job number, continued by its study), and any other sweeper so named.
        ("hydra_plugins.hydra_optuna_stream_sweeper.optuna_stream_sweeper.OptunaStreamSweeper", False),
        ("my_sweepers.optuna_grid.Sweeper", False),
        ("hydra._internal.core_plugins.basic_sweeper.BasicSweeper", False),
    ],
)
def test_only_hydras_optuna_sweeper_is_refused_resume_and_detach(target, refused):
    config = OmegaConf.create({"hydra": {"sweeper": {"_target_": target}}})
    said = "hydra.launcher.detach=true is not supported with the Optuna sweeper"
    if refused:
        with pytest.raises(ConfigError, match=said):
            _resume.refuse_sampling_sweeper(config, "hydra.launcher.detach=true")
    else:
        _resume.refuse_sampling_sweeper(config, "hydra.launcher.detach=true")
