"""Failure handling, file transfer and GPU matching, each on the real HTCondor test pool."""

import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from _launch_helpers import TRIVIAL_APP, launch, run_script_app, status_tables  # noqa: F401 (a fixture)
from hydra.core.utils import JobStatus
from hydra_plugins.hydra_htcondor_launcher import _jobstate
from hydra_plugins.hydra_htcondor_launcher._errors import HeldJobError, JobFailedError

pytestmark = [pytest.mark.condor, pytest.mark.usefixtures("hydra_restore_singletons")]


def _mixed_task(cfg):
    """What job x does depends on cfg.x; runs on the pool."""
    import htcondor2
    from hydra.core.hydra_config import HydraConfig

    x = cfg.x
    if x == "raise":
        raise ValueError("task failed on purpose")
    if x == "exit3":
        print("exit3-marker: about to exit with code 3", file=sys.stderr, flush=True)
        os._exit(3)
    if x == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    if x == "hold":
        os._exit(5)  # the test's on_exit_hold policy holds exit code 5
    if x == "remove":
        job_id = HydraConfig.get().job.id
        htcondor2.Schedd().act(htcondor2.JobAction.Remove, job_id)
        time.sleep(60)
    Path("written-by-task.txt").write_text(str(x))
    # Where HTCondor says this job runs ("slot1_2@vm"), from the job ad the starter gives it.
    ad = Path(os.environ["_CONDOR_JOB_AD"]).read_text().splitlines()
    Path("remote-host.txt").write_text(next(a for a in ad if a.startswith("RemoteHost =")).split('"')[1])
    return f"ok:{x}"


def _table_rows(table):
    """{'#n': [id, state, host, time, note words..., overrides]} from a status table."""
    return {line.split()[0]: line.split()[1:] for line in table.splitlines()[2:]}


def test_failures_keep_the_other_results(tmp_path, status_tables):  # noqa: F811
    kinds = ["ok", "raise", "exit3", "kill", "hold", "remove"]
    condor_config = os.environ["CONDOR_CONFIG"]
    results = launch(
        tmp_path / "sweep",
        _mixed_task,
        [[f"+x={k}"] for k in kinds],
        [
            "hydra.job.chdir=true",
            "+hydra.launcher.submit_commands.on_exit_hold='ExitCode =?= 5'",
            """+hydra.launcher.submit_commands.on_exit_hold_reason='"exit code 5 holds"'""",
            f"+hydra.launcher.environment.CONDOR_CONFIG={condor_config}",
        ],
    )
    by = dict(zip(kinds, results, strict=True))
    htdir = tmp_path / "sweep" / ".htcondor"
    for ret in results:
        assert ret.status in (JobStatus.COMPLETED, JobStatus.FAILED)

    ok = by["ok"]
    assert ok.status == JobStatus.COMPLETED and ok.return_value == "ok:ok"
    assert (tmp_path / "sweep" / "0" / "written-by-task.txt").read_text() == "ok"
    assert (tmp_path / "sweep" / "0" / ".hydra" / "config.yaml").exists()

    raised = by["raise"]
    assert raised.status == JobStatus.FAILED
    assert isinstance(raised._return_value, ValueError)
    assert "task failed on purpose" in str(raised._return_value)
    with pytest.raises(ValueError, match="task failed on purpose"):
        _ = raised.return_value

    exit3 = by["exit3"]._return_value
    assert isinstance(exit3, JobFailedError)
    assert "exited with code 3" in str(exit3)
    assert str(htdir / "2.err") in str(exit3) and str(htdir / "batch-0-5.log") in str(exit3)
    # The job left no result: its error quotes the end of its stderr.
    assert f"last lines of {htdir / '2.err'}:" in str(exit3)
    assert "exit3-marker: about to exit with code 3" in str(exit3)

    killed = by["kill"]._return_value
    assert isinstance(killed, JobFailedError) and "signal 9" in str(killed)

    held = by["hold"]._return_value
    assert isinstance(held, HeldJobError)
    assert "exit code 5 holds" in str(held) and str(htdir / "4.out") in str(held)

    removed = by["remove"]._return_value
    assert isinstance(removed, JobFailedError) and "was removed" in str(removed)

    for num in range(len(kinds)):
        assert (htdir / f"{num}.out").exists() and (htdir / f"{num}.err").exists()

    # The final status table: each job's HTCondor outcome, where it ran, why it ended. A task that raised
    # ends its job with the worker's own exit code, so the table says so (its result carries the exception).
    final = status_tables[-1]
    counts = final.splitlines()[0].split(" [")[0]
    assert counts.endswith(": 0 idle, 0 running, 0 held, 1 done, 5 failed of 6 jobs")
    rows = _table_rows(final)
    assert [line.split()[0] for line in final.splitlines()[2:]] == ["#1", "#2", "#3", "#4", "#5", "#0"]
    remote_host = (tmp_path / "sweep" / "0" / "remote-host.txt").read_text()
    assert rows["#0"][1:3] == ["done", _jobstate.short_host(remote_host, None)]
    assert rows["#0"][4:] == ["exit", "0", "+x=ok"]
    assert rows["#1"][1] == "failed" and rows["#1"][4:] == ["exit", "80", "(task", "raised)", "+x=raise"]
    assert rows["#2"][1] == "failed" and rows["#2"][4:] == ["exit", "3", "+x=exit3"]
    assert rows["#3"][1] == "failed" and rows["#3"][4:] == ["signal", "9", "+x=kill"]
    assert rows["#4"][1] == "removed" and " ".join(rows["#4"][4:]) == "held: exit code 5 holds +x=hold"
    assert rows["#5"][1] == "removed" and rows["#5"][-1] == "+x=remove"
    assert "evicted" not in final  # the eviction a removal writes first is not one
    assert not any(p.name.endswith(".tmp") or ".tmp." in p.name for p in htdir.iterdir())


def _slow_task(cfg):
    if cfg.x == "slow":
        time.sleep(300)
    return cfg.x


def test_deadline_removes_unfinished_jobs(tmp_path):
    results = launch(
        tmp_path / "sweep", _slow_task, [["+x=fast"], ["+x=slow"]], ["hydra.launcher.timeout_min=0.2"]
    )
    assert results[0].status == JobStatus.COMPLETED and results[0].return_value == "fast"
    err = results[1]._return_value
    assert results[1].status == JobStatus.FAILED
    assert isinstance(err, JobFailedError)
    assert "deadline" in str(err) and "timeout_min=0.2" in str(err)


def _transfer_task(cfg):
    from hydra.core.hydra_config import HydraConfig

    out = Path(HydraConfig.get().runtime.output_dir)
    (out / "model.txt").write_text(f"weights for {cfg.x}")
    (out / "nested").mkdir()
    (out / "nested" / "deep.txt").write_text("deep")
    return {"x": cfg.x, "cwd": os.getcwd(), "output_dir": str(out)}


def test_transfer_files_round_trip(tmp_path):
    sweep = tmp_path / "sweep"
    results = launch(
        sweep,
        _transfer_task,
        [["+x=1"], ["+x=2"]],
        ["hydra.launcher.transfer_files=true", "hydra.sweep.subdir=run_${hydra.job.override_dirname}"],
    )
    for ret, x in zip(results, (1, 2), strict=True):
        assert ret.status == JobStatus.COMPLETED
        value = ret.return_value
        job_dir = sweep / f"run_+x={x}"
        # The job ran in a scratch folder, not in the sweep folder...
        assert not value["output_dir"].startswith(str(sweep))
        # ...and its folder came back to the same place a shared-filesystem run would use.
        assert (job_dir / "model.txt").read_text() == f"weights for {x}"
        assert (job_dir / "nested" / "deep.txt").read_text() == "deep"
        assert (job_dir / ".hydra" / "overrides.yaml").exists()
        assert (job_dir / "pool_test.log").exists()
        assert ret.hydra_cfg.hydra.runtime.output_dir == str(job_dir)
        assert ret.hydra_cfg.hydra.job.id.count(".") == 1  # ClusterId.ProcId
    # Only the job folders and the launcher's own folder travel back.
    assert sorted(p.name for p in sweep.iterdir()) == [".htcondor", "run_+x=1", "run_+x=2"]


def _cuda_env_task(cfg):
    return os.environ.get("CUDA_VISIBLE_DEVICES")


def test_gpu_job_matches_the_simulated_gpu(tmp_path):
    results = launch(
        tmp_path / "sweep",
        _cuda_env_task,
        [[]],
        ["hydra.launcher.request_gpus=1", "hydra.launcher.gpus_minimum_capability=7.0"],
    )
    assert results[0].status == JobStatus.COMPLETED
    assert results[0].return_value == "0"


def test_unreachable_pool_is_one_line_and_creates_no_job_folder(tmp_path):
    proc = run_script_app(
        tmp_path,
        TRIVIAL_APP,
        "+x=1,2",
        "hydra.launcher.collector=127.0.0.1:1",
        "hydra.sweep.dir=sweep",
        timeout=120,
    )
    assert proc.returncode == 1
    lines = [line for line in proc.stderr.splitlines() if "HTCondor pool unreachable" in line]
    assert len(lines) == 1, proc.stderr
    assert "127.0.0.1:1" in lines[0]
    assert "Traceback" not in proc.stderr
    sweep = tmp_path / "sweep"
    assert not (sweep / "0").exists() and not (sweep / ".htcondor").exists()


def _exit5_task(cfg):
    os._exit(5)


def test_held_job_is_released_max_releases_times_then_removed(tmp_path):
    results = launch(
        tmp_path / "sweep",
        _exit5_task,
        [[]],
        [
            "hydra.launcher.max_releases=1",
            "+hydra.launcher.submit_commands.on_exit_hold='ExitCode =?= 5'",
            """+hydra.launcher.submit_commands.on_exit_hold_reason='"exit code 5 holds"'""",
        ],
    )
    err = results[0]._return_value
    assert results[0].status == JobStatus.FAILED and isinstance(err, HeldJobError)
    assert "held 2 time(s)" in str(err) and "exit code 5 holds" in str(err)


def test_ctrl_c_removes_the_cluster_and_says_so(tmp_path):
    import htcondor2

    app = tmp_path / "sleepy.py"
    app.write_text(
        "import time, hydra\n"
        "@hydra.main(version_base=None, config_path=None)\n"
        "def main(cfg):\n    time.sleep(300)\n"
        "if __name__ == '__main__':\n    main()\n"
    )
    proc = subprocess.Popen(
        [sys.executable, str(app), "-m", "hydra/launcher=htcondor", "+x=1,2", "hydra.sweep.dir=sweep"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    output = []
    cluster = None
    try:
        for line in proc.stdout:
            output.append(line)
            if "submitted as cluster" in line:
                cluster = int(line.split("submitted as cluster")[1].split()[0])
            if cluster is not None and " running" in line and "0 running" not in line:
                break
        assert cluster is not None, "".join(output)
        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    text = "".join(output) + rest
    assert proc.returncode != 0
    assert f"Interrupted: removed HTCondor cluster {cluster}" in text
    # The jobs left the queue (removed, not left running on the pool).
    schedd = htcondor2.Schedd()
    deadline = time.monotonic() + 30
    while schedd.query(constraint=f"ClusterId == {cluster}", projection=["JobStatus"]):
        assert time.monotonic() < deadline, "cluster still queued 30 s after Ctrl-C"
        time.sleep(0.5)


def _where_am_i(cfg):
    import sys as _sys

    return {"executable": _sys.executable, "packed": os.environ.get("PACKED_ENV_USED"), "x": cfg.x}


@pytest.mark.parametrize("transfer", [False, True], ids=["shared_fs", "transfer"])
def test_packed_env_is_unpacked_and_used_on_the_worker(tmp_path, transfer):
    """A tiny archive whose env/bin/python hands over to this venv's interpreter stands in for a real pack
    (the real ones need conda-forge); the generated wrapper, archive transfer and cleanup run for real."""
    import tarfile

    src = tmp_path / "envsrc" / "bin"
    src.mkdir(parents=True)
    (src / "python").write_text(f'#!/bin/sh\nexport PACKED_ENV_USED=1\nexec {sys.executable} "$@"\n')
    (src / "python").chmod(0o755)
    archive = tmp_path / "env.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(src, arcname="bin")
    sweep = tmp_path / "sweep"
    results = launch(
        sweep,
        _where_am_i,
        [["+x=1"]],
        [
            "hydra.launcher.env_mode=packed",
            f"hydra.launcher.packed_env={archive}",
            f"hydra.launcher.transfer_files={str(transfer).lower()}",
        ],
    )
    ret = results[0]
    assert ret.status == JobStatus.COMPLETED, ret._return_value
    assert ret.return_value["x"] == 1
    assert ret.return_value["packed"] == "1"  # it ran through env/bin/python from the archive
    assert (sweep / ".htcondor" / "packed-env-wrapper.sh").exists()
    assert (sweep / "0" / ".hydra" / "config.yaml").exists()
    # Neither the archive nor the unpacked environment came back.
    assert not (sweep / "env").exists() and not (sweep / "env.tar.gz").exists()
    assert not (tmp_path / "env").exists()


def test_a_deleted_event_log_fails_and_removes_its_batch_after_the_grace(tmp_path, caplog):
    """The watcher of a real cluster whose event log is deleted under it (the launcher builds the same
    watcher with the 3-minute EVENT_LOG_GRACE_S; 3 s here)."""
    import htcondor2
    from hydra_plugins.hydra_htcondor_launcher import _wait

    log_file = tmp_path / "batch-0-1.log"
    schedd = htcondor2.Schedd()
    sub = htcondor2.Submit(
        {"executable": "/bin/sleep", "arguments": "600", "log": str(log_file), "request_memory": "16MB"}
    )
    cluster = schedd.submit(sub, count=2).cluster()
    try:
        records = {p: _jobstate.JobRecord(proc=p, num=p, cluster=cluster) for p in (0, 1)}
        watcher = _wait.ClusterWatcher(
            htcondor2, schedd, cluster, str(log_file), records,
            _wait.WatchPolicy(
                max_releases=0, poll_interval=0.1, status_interval=1000.0, timeout_s=300.0, log_grace_s=3.0
            ),
        )  # fmt: skip
        deadline = time.monotonic() + 60
        while not all(rec.last_event for rec in records.values()):  # both SUBMIT events read
            assert time.monotonic() < deadline, "the SUBMIT events never came"
            watcher.poll()
            time.sleep(0.1)
        log_file.unlink()
        tic = time.monotonic()
        follower = _wait.Follower(watcher.policy)
        follower.add(watcher)
        with caplog.at_level(logging.WARNING, logger=_wait.__name__):
            follower.wait(until=lambda: watcher.done)
        took = time.monotonic() - tic
        assert 3.0 <= took < 30, took
        warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1 and f"cannot read its event log {log_file}" in warnings[0], warnings
        for rec in records.values():
            assert rec.state is _jobstate.JobState.REMOVED
            reason = rec.abort_reason or ""
            assert reason.startswith(f"its event log {log_file} stayed unreadable for 3 s: "), reason
        # Removed from HTCondor too: nothing of the batch runs on unseen.
        deadline = time.monotonic() + 60
        while True:
            live = schedd.query(f"ClusterId == {cluster} && JobStatus != 3", projection=["ProcId"])
            if not live:
                break
            assert time.monotonic() < deadline, f"still queued: {live}"
            time.sleep(0.2)
    finally:
        schedd.act(htcondor2.JobAction.Remove, f"ClusterId == {cluster}")
