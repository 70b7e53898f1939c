"""The sweep manifest, the lost-job cross-check and `hydra-htcondor` on files alone (no pool)."""

import json
import os

import cloudpickle
import pytest
from hydra.core.utils import JobReturn, JobStatus
from hydra_plugins.hydra_htcondor_launcher import _cli, _wait
from hydra_plugins.hydra_htcondor_launcher._jobstate import JobRecord, JobState
from hydra_plugins.hydra_htcondor_launcher._manifest import Manifest, ManifestError, manifest_path, record_of


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

    def query(self, constraint, projection):
        if self.fail:
            raise OSError("no schedd")
        return [{"ProcId": p} for p in self.queue]

    def history(self, constraint, projection, match):
        return [{"ProcId": p} for p in self.hist]


def _watcher(schedd, records):
    return _wait.ClusterWatcher(
        None,
        schedd,
        9,
        "/nonexistent.log",
        records,
        max_releases=0,
        poll_interval=0.1,
        status_interval=1,
        timeout_s=60,
    )


def test_crosscheck_fails_only_jobs_htcondor_no_longer_knows():
    records = {p: JobRecord(proc=p, num=p, state=JobState.RUNNING) for p in range(3)}
    records[2].state = JobState.DONE
    lost = _watcher(_Schedd(queue=[0], history=[]), records).crosscheck()
    assert lost == [1]
    assert records[1].state is JobState.REMOVED and "no longer knows" in (records[1].abort_reason or "")
    assert records[0].state is JobState.RUNNING and records[2].state is JobState.DONE


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
