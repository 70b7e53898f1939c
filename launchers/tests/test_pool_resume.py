"""Sweeps that outlive the terminal, on the real pool: a third-party-style Hydra app run as a subprocess,
killed with SIGKILL, detached, re-run; the schedd's history proves nothing was submitted twice."""

import functools
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.condor

APP = """
import os
import time

import hydra


@hydra.main(version_base=None, config_path=None)
def main(cfg):
    time.sleep(float(cfg.get("sleep", 0)))
    if str(cfg.x) == "fail" and not os.path.exists(str(cfg.fix)):
        raise ValueError("fails until fixed")
    return f"ok:{cfg.x}"


if __name__ == "__main__":
    main()
"""
CLI = Path(sys.executable).parent / "hydra-htcondor"


def _cmd(tmp_path: Path, *args: str) -> list[str]:
    app = tmp_path / "app.py"
    if not app.exists():
        app.write_text(APP)
    return [
        sys.executable,
        str(app),
        "-m",
        "hydra/launcher=htcondor",
        "hydra.launcher.request_memory=256MB",
        "hydra.launcher.poll_interval=0.2",
        f"hydra.sweep.dir={tmp_path / 'sweep'}",
        *args,
    ]


def _run(cmd: list[str], cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout)


def _manifest(tmp_path: Path) -> dict:
    return json.loads((tmp_path / "sweep" / ".htcondor" / "manifest.json").read_text())


def _results(out: str) -> list[str]:
    """The launcher's summary lines, e.g. "#0 : +x=1 -> 'ok:1'"."""
    return sorted(
        line.split("] ", 1)[1].strip() for line in out.splitlines() if " -> " in line and "] " in line
    )


def test_sigkilled_submitter_reattaches_and_submits_nothing_twice(tmp_path, procs_per_job):
    args = ("+x=1,2,3", "+sleep=20")
    proc = subprocess.Popen(
        _cmd(tmp_path, *args), cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            path = tmp_path / "sweep" / ".htcondor" / "manifest.json"
            if path.exists() and all(j.get("cluster") for j in _manifest(tmp_path)["jobs"].values()):
                break
            time.sleep(0.2)
        else:
            pytest.fail("the manifest never recorded the submitted cluster")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=30)
    sweep_id = _manifest(tmp_path)["sweep_id"]
    # Each job's lease (how long a disconnected job is waited for), from the cluster ad at submission: the
    # pool's default, as job_lease_minutes is unset.
    import htcondor2

    lease = float(htcondor2.param["JOB_DEFAULT_LEASE_DURATION"])
    assert {j["lease_s"] for j in _manifest(tmp_path)["jobs"].values()} == {lease}

    rerun = _run(_cmd(tmp_path, *args), tmp_path)
    out = rerun.stdout + rerun.stderr
    assert rerun.returncode == 0, out[-3000:]
    assert "resuming sweep: 0 reused, 3 re-attached, 0 resubmitted" in out, out[-3000:]
    assert _results(out) == [
        "#0 : +x=1 +sleep=20 -> 'ok:1'",
        "#1 : +x=2 +sleep=20 -> 'ok:2'",
        "#2 : +x=3 +sleep=20 -> 'ok:3'",
    ]
    assert procs_per_job(sweep_id) == {0: 1, 1: 1, 2: 1}
    assert {j["state"] for j in _manifest(tmp_path)["jobs"].values()} == {"done"}
    assert {j["lease_s"] for j in _manifest(tmp_path)["jobs"].values()} == {lease}  # from the queue's ads

    # Everything finished: the same command submits nothing and returns the stored results.
    again = _run(_cmd(tmp_path, *args), tmp_path)
    out2 = again.stdout + again.stderr
    assert again.returncode == 0, out2[-3000:]
    assert "resuming sweep: 3 reused, 0 re-attached, 0 resubmitted" in out2
    assert "submitted as cluster" not in out2
    assert _results(out2) == _results(out)
    assert procs_per_job(sweep_id) == {0: 1, 1: 1, 2: 1}


def test_rerun_submits_only_the_failed_job(tmp_path, procs_per_job):
    fix = tmp_path / "fixed"
    args = ("+x=a,fail", f"+fix={fix}")
    first = _run(_cmd(tmp_path, *args), tmp_path)
    assert first.returncode == 1 and "fails until fixed" in first.stderr, first.stderr[-3000:]
    sweep_id = _manifest(tmp_path)["sweep_id"]
    fix.write_text("")
    rerun = _run(_cmd(tmp_path, *args), tmp_path)
    out = rerun.stdout + rerun.stderr
    assert rerun.returncode == 0, out[-3000:]
    assert "resuming sweep: 1 reused, 0 re-attached, 1 resubmitted" in out
    assert "1 job(s) submitted as cluster" in out
    assert procs_per_job(sweep_id) == {0: 1, 1: 2}
    assert [r.split(" -> ")[1] for r in _results(out)] == ["'ok:a'", "'ok:fail'"]


def test_detach_status_collect_changed_overrides_and_afresh(tmp_path, procs_per_job):
    args = ("+x=1,2", "+sleep=3", "hydra.launcher.detach=true")
    tic = time.monotonic()
    detached = _run(_cmd(tmp_path, *args), tmp_path, timeout=120)
    took = time.monotonic() - tic
    out = detached.stdout + detached.stderr
    assert detached.returncode == 0, out[-3000:]
    assert took < 60, took  # a bound against waiting for the jobs (they sleep), not a speed claim
    assert f"hydra-htcondor status {tmp_path / 'sweep'} --watch" in out
    assert f"hydra.sweep.dir={tmp_path / 'sweep'}" in out and " -> " not in out
    sweep_id = _manifest(tmp_path)["sweep_id"]

    status = _run([str(CLI), "status", str(tmp_path / "sweep")], tmp_path)
    assert status.returncode in (0, 3), status.stderr
    assert "#0" in status.stdout and "#1" in status.stdout and "+x=2 +sleep=3" in status.stdout

    collected = _run(_cmd(tmp_path, "+x=1,2", "+sleep=3"), tmp_path)
    out = collected.stdout + collected.stderr
    assert collected.returncode == 0, out[-3000:]
    assert "resuming sweep:" in out and "0 resubmitted" in out
    assert [r.split(" -> ")[1] for r in _results(out)] == ["'ok:1'", "'ok:2'"]
    assert procs_per_job(sweep_id) == {0: 1, 1: 1}

    done = _run([str(CLI), "status", str(tmp_path / "sweep")], tmp_path)
    assert done.returncode == 0 and "2 done" in done.stdout and "'ok:2'" in done.stdout, done.stdout

    changed = _run(_cmd(tmp_path, "+x=1,9", "+sleep=3"), tmp_path)
    assert changed.returncode == 1
    # One line (Hydra adds its usual HYDRA_FULL_ERROR hint under it).
    err_lines = [
        line for line in changed.stderr.splitlines() if line.strip() and "HYDRA_FULL_ERROR" not in line
    ]
    assert len(err_lines) == 1 and "job #1 of the sweep" in err_lines[0], changed.stderr
    assert "'+x=9' was '+x=2'" in err_lines[0] and "resume=false" in err_lines[0]

    afresh = _run(_cmd(tmp_path, "+x=1,9", "+sleep=0", "hydra.launcher.resume=false"), tmp_path)
    out = afresh.stdout + afresh.stderr
    assert afresh.returncode == 0, out[-3000:]
    assert "resuming sweep" not in out
    assert _manifest(tmp_path)["sweep_id"] != sweep_id
    assert [r.split(" -> ")[1] for r in _results(out)] == ["'ok:1'", "'ok:9'"]


def test_status_of_a_finished_sweep_needs_no_pool(tmp_path):
    finished = _run(_cmd(tmp_path, "+x=1,2"), tmp_path)
    assert finished.returncode == 0, finished.stderr[-3000:]
    # A pool that is not there: a collector on a port nobody listens on.
    config = tmp_path / "no-pool.config"
    config.write_text("COLLECTOR_HOST = 127.0.0.1:1\nSCHEDD_HOST = nowhere\n")
    env = {**os.environ, "CONDOR_CONFIG": str(config)}
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    status = subprocess.run(
        [str(CLI), "status", str(tmp_path / "sweep")],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert status.returncode == 0, status.stderr
    assert status.stderr == ""
    assert "0 failed of 2 jobs" in status.stdout and "'ok:1'" in status.stdout
    assert ".htcondor" in status.stdout  # where the logs are


def test_basic_sweeper_batches_resume_and_detach_one_batch_per_run(tmp_path, procs_per_job):
    args = ("+x=1,2,3", "hydra.sweeper.max_batch_size=2", "hydra.launcher.detach=true")
    first = _run(_cmd(tmp_path, *args), tmp_path, timeout=120)
    out = first.stdout + first.stderr
    # Detach with a sweeper that needs results before its next batch: each run collects what finished and
    # submits the next batch.
    assert first.returncode == 0 and "detached: 2 job(s)" in out, out[-3000:]
    assert set(_manifest(tmp_path)["jobs"]) == {"0", "1"}
    sweep_id = _manifest(tmp_path)["sweep_id"]
    _run([str(CLI), "status", "--watch", "--interval", "0.5", str(tmp_path / "sweep")], tmp_path)

    second = _run(_cmd(tmp_path, *args), tmp_path, timeout=120)
    out = second.stdout + second.stderr
    assert second.returncode == 0, out[-3000:]
    assert "resuming sweep: 2 reused, 0 re-attached, 0 resubmitted" in out
    assert "detached: 1 job(s)" in out
    assert set(_manifest(tmp_path)["jobs"]) == {"0", "1", "2"}
    _run([str(CLI), "status", "--watch", "--interval", "0.5", str(tmp_path / "sweep")], tmp_path)

    third = _run(_cmd(tmp_path, "+x=1,2,3", "hydra.sweeper.max_batch_size=2"), tmp_path)
    out = third.stdout + third.stderr
    assert third.returncode == 0, out[-3000:]
    assert "resuming sweep: 2 reused, 0 re-attached, 0 resubmitted" in out
    assert "resuming sweep: 1 reused, 0 re-attached, 0 resubmitted" in out
    assert "submitted as cluster" not in out
    assert [r.split(" -> ")[1] for r in _results(out)] == ["'ok:1'", "'ok:2'", "'ok:3'"]
    assert procs_per_job(sweep_id) == {0: 1, 1: 1, 2: 1}


def test_jobs_lost_by_a_pool_restarted_with_an_empty_queue_fail_within_a_minute(tmp_path, private_pool):
    # A pool of this test alone (the root conftest's private_pool): it is restarted with an empty queue.
    done = private_pool.run("start")
    assert done.returncode == 0, f"private pool start: {done.stderr[-2000:]}"
    env = {**os.environ, "CONDOR_CONFIG": str(private_pool.config())}
    proc = subprocess.Popen(
        _cmd(tmp_path, "+x=1,2", "+sleep=600", "hydra.launcher.status_interval=5"),
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        path = tmp_path / "sweep" / ".htcondor" / "manifest.json"
        while time.monotonic() < deadline:
            if path.exists() and all(
                j.get("state") == "running" for j in _manifest(tmp_path)["jobs"].values()
            ):
                break
            time.sleep(0.5)
        else:
            pytest.fail("the jobs never ran on the private pool")
        for step in ("stop", "start"):  # a fresh start: empty queue, empty history
            done = private_pool.run(step)
            assert done.returncode == 0, f"private pool {step}: {done.stderr[-2000:]}"
        restarted = time.monotonic()
        out, _ = proc.communicate(timeout=120)
        took = time.monotonic() - restarted
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 1, out[-3000:]
    assert "HTCondor no longer knows this job" in out, out[-3000:]
    assert took < 60, took  # within a minute, not the 24-hour deadline
    assert {j["state"] for j in _manifest(tmp_path)["jobs"].values()} == {"removed"}


# Hydra's Optuna sweeper refusing resume and detach: test_optuna2_env.py (its own environment).


def _wait_running(tmp_path: Path, n: int) -> None:
    deadline = time.monotonic() + 120
    path = tmp_path / "sweep" / ".htcondor" / "manifest.json"
    while time.monotonic() < deadline:
        if path.exists():
            jobs = _manifest(tmp_path)["jobs"].values()
            if len(jobs) == n and all(j.get("state") == "running" for j in jobs):
                return
        time.sleep(0.3)
    pytest.fail("the jobs never ran")


def test_interrupt_keep_leaves_jobs_running_and_the_rerun_reattaches(tmp_path, procs_per_job):
    args = ("+x=1,2", "+sleep=8", "hydra.launcher.on_interrupt=keep")
    proc = subprocess.Popen(
        _cmd(tmp_path, *args), cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        _wait_running(tmp_path, 2)
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert "keeps running (on_interrupt=keep)" in out and "collect it" in out, out[-3000:]
    sweep_id = _manifest(tmp_path)["sweep_id"]
    rerun = _run(_cmd(tmp_path, *args), tmp_path)
    out = rerun.stdout + rerun.stderr
    assert rerun.returncode == 0, out[-3000:]
    assert "0 resubmitted" in out and "re-attached" in out
    assert [r.split(" -> ")[1] for r in _results(out)] == ["'ok:1'", "'ok:2'"]
    assert procs_per_job(sweep_id) == {0: 1, 1: 1}


def test_rm_and_logs_of_a_detached_sweep(tmp_path):
    detached = _run(_cmd(tmp_path, "+x=1,2", "+sleep=600", "hydra.launcher.detach=true"), tmp_path)
    assert detached.returncode == 0, detached.stderr[-3000:]
    logs = _run([str(CLI), "logs", str(tmp_path / "sweep"), "1"], tmp_path)
    assert logs.returncode == 0 and "== stderr" in logs.stdout and "SUBMIT" in logs.stdout, logs.stdout
    rm = _run([str(CLI), "rm", str(tmp_path / "sweep")], tmp_path)
    assert rm.returncode == 0 and "removed 2 job(s)" in rm.stdout, rm.stdout + rm.stderr
    status = _run([str(CLI), "status", "--watch", "--interval", "0.5", str(tmp_path / "sweep")], tmp_path)
    assert status.returncode == 1, status.stdout  # every job ended, not all done
    assert "2 failed of 2 jobs" in status.stdout and "removed" in status.stdout
    again = _run([str(CLI), "rm", str(tmp_path / "sweep")], tmp_path)
    assert again.returncode == 0 and "removed 0 job(s)" in again.stdout


def test_sigkilled_after_the_jobs_finished_the_rerun_submits_nothing(tmp_path, procs_per_job):
    args = ("+x=1,2",)
    proc = subprocess.Popen(
        _cmd(tmp_path, *args), cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    htdir = tmp_path / "sweep" / ".htcondor"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            if all((htdir / f"{n}.result.pkl").exists() for n in (0, 1)):
                break
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGKILL)  # a no-op when the run already ended: the rerun must not care
        proc.communicate(timeout=30)
    assert all((htdir / f"{n}.result.pkl").exists() for n in (0, 1))
    sweep_id = _manifest(tmp_path)["sweep_id"]
    # Await the jobs leaving the queue (a finished job is no longer re-attached to).
    import htcondor2

    deadline = time.monotonic() + 60
    while htcondor2.Schedd().query(f'HydraSweepId == "{sweep_id}"', projection=["ProcId"]):
        assert time.monotonic() < deadline, "the finished jobs were still queued after 60 s"
        time.sleep(0.2)
    rerun = _run(_cmd(tmp_path, *args), tmp_path)
    out = rerun.stdout + rerun.stderr
    assert rerun.returncode == 0, out[-3000:]
    assert "submitted as cluster" not in out
    assert "resuming sweep:" in out and "0 resubmitted" in out
    assert [r.split(" -> ")[1] for r in _results(out)] == ["'ok:1'", "'ok:2'"]
    assert procs_per_job(sweep_id) == {0: 1, 1: 1}
    assert {j["state"] for j in _manifest(tmp_path)["jobs"].values()} == {"done"}


def _one_line(out: str, needle: str) -> str:
    lines = [line for line in out.splitlines() if needle in line]
    assert len(lines) == 1, out[-3000:]
    return lines[0]


def test_a_changed_task_or_config_runs_the_jobs_again(tmp_path, procs_per_job):
    conf = tmp_path / "conf"
    conf.mkdir()
    (conf / "extra.yaml").write_text("a: 1\n")
    args = ("+x=1,2", f"--config-dir={conf}")
    first = _run(_cmd(tmp_path, *args), tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    sweep_id = _manifest(tmp_path)["sweep_id"]
    assert all(len(j["task"]) == len(j["configs"]) == 16 for j in _manifest(tmp_path)["jobs"].values())

    app = tmp_path / "app.py"
    app.write_text(app.read_text().replace('"ok:', '"v2:'))
    edited = _run(_cmd(tmp_path, *args), tmp_path)
    out = edited.stdout + edited.stderr
    assert edited.returncode == 0, out[-3000:]
    line = _one_line(out, "changed since")
    assert f"the task 'main' ({app})" in line and "changed since 2 job(s) ran (#0, #1)" in line
    assert "config sources" not in line and "running them again" in line
    assert [r.split(" -> ")[1] for r in _results(out)] == ["'v2:1'", "'v2:2'"]
    assert procs_per_job(sweep_id) == {0: 2, 1: 2}

    old = _manifest(tmp_path)["jobs"]["0"]["configs"]
    (conf / "extra.yaml").write_text("a: 2\n")
    reconfigured = _run(_cmd(tmp_path, *args), tmp_path)
    out = reconfigured.stdout + reconfigured.stderr
    assert reconfigured.returncode == 0, out[-3000:]
    line = _one_line(out, "changed since")
    assert f"the config sources (snapshot config-sources-{old} in " in line and "the task" not in line
    assert procs_per_job(sweep_id) == {0: 3, 1: 3}

    same = _run(_cmd(tmp_path, *args), tmp_path)
    out = same.stdout + same.stderr
    assert same.returncode == 0 and "resuming sweep: 2 reused" in out and "changed since" not in out, out

    # A manifest written before the fields were kept: its results are reused as they always were.
    path = tmp_path / "sweep" / ".htcondor" / "manifest.json"
    data = _manifest(tmp_path)
    for entry in data["jobs"].values():
        del entry["task"], entry["configs"]
    path.write_text(json.dumps(data))
    app.write_text(app.read_text().replace('"v2:', '"v3:'))
    legacy = _run(_cmd(tmp_path, *args), tmp_path)
    out = legacy.stdout + legacy.stderr
    assert legacy.returncode == 0 and "resuming sweep: 2 reused" in out, out[-3000:]
    assert [r.split(" -> ")[1] for r in _results(out)] == ["'v2:1'", "'v2:2'"]
    assert procs_per_job(sweep_id) == {0: 3, 1: 3}


def test_a_changed_task_with_jobs_still_queued_is_refused_until_they_are_removed(tmp_path, procs_per_job):
    args = ("+x=1,2", "+sleep=600", "hydra.launcher.detach=true")
    detached = _run(_cmd(tmp_path, *args), tmp_path)
    assert detached.returncode == 0, detached.stderr[-3000:]
    sweep_id = _manifest(tmp_path)["sweep_id"]
    sweep = tmp_path / "sweep"
    try:
        app = tmp_path / "app.py"
        app.write_text(app.read_text().replace('"ok:', '"v2:'))
        refused = _run(_cmd(tmp_path, *args), tmp_path)
        assert refused.returncode == 1, refused.stdout[-3000:]
        err = [ln for ln in refused.stderr.splitlines() if ln.strip() and "HYDRA_FULL_ERROR" not in ln]
        assert len(err) == 1, refused.stderr
        assert "the task code changed since 2 job(s) of the sweep" in err[0] and "still in HTCondor" in err[0]
        assert f"hydra-htcondor rm {sweep}" in err[0]
        assert procs_per_job(sweep_id) == {0: 1, 1: 1}

        assert _run([str(CLI), "rm", str(sweep)], tmp_path).returncode == 0
        again = _run(_cmd(tmp_path, *args), tmp_path)
        out = again.stdout + again.stderr
        assert again.returncode == 0 and "detached: 2 job(s)" in out, out[-3000:]
        assert procs_per_job(sweep_id) == {0: 2, 1: 2}
    finally:
        _run([str(CLI), "rm", str(sweep)], tmp_path)


def test_a_schedd_that_does_not_answer_stops_the_rerun_with_one_line_and_submits_nothing(
    tmp_path, private_pool, procs_per_job
):
    done = private_pool.run("start")
    assert done.returncode == 0, f"private pool start: {done.stderr[-2000:]}"
    collector = f"127.0.0.1:{private_pool.port}"
    config = str(private_pool.config())
    try:
        env = {**os.environ, "CONDOR_CONFIG": config}
        args = ("+x=1,2", "+sleep=600", "hydra.launcher.detach=true")
        detached = subprocess.run(
            _cmd(tmp_path, *args), cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
        )
        assert detached.returncode == 0, detached.stderr[-3000:]
        sweep_id = _manifest(tmp_path)["sweep_id"]
        schedd = private_pool.daemon("condor_schedd")
        assert schedd is not None, "no condor_schedd under the private pool's master"
        os.kill(schedd, signal.SIGSTOP)
        try:
            tic = time.monotonic()
            rerun = subprocess.run(
                _cmd(tmp_path, *args), cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
            )
            took = time.monotonic() - tic
        finally:
            os.kill(schedd, signal.SIGCONT)
        assert rerun.returncode == 1, rerun.stdout[-3000:]
        err = [ln for ln in rerun.stderr.splitlines() if ln.strip() and "HYDRA_FULL_ERROR" not in ln]
        assert len(err) == 1, rerun.stderr
        assert "HTCondor pool unreachable: cannot contact the schedd via" in err[0] and config in err[0]
        assert "3 tries in" in err[0] and "nothing was submitted" in err[0] and "condor_q" in err[0]
        # 3 tries of HTCondor's 20 s timeout and 1 + 2 s between them: bounded, not a hang.
        assert took < 150, took
        assert procs_per_job(sweep_id, collector=collector) == {0: 1, 1: 1}
        # Answering again, the same command re-attaches: the stopped run left nothing to undo.
        resumed = subprocess.run(
            _cmd(tmp_path, *args), cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
        )
        out = resumed.stdout + resumed.stderr
        assert resumed.returncode == 0, out[-3000:]
        assert "resuming sweep: 0 reused, 2 re-attached, 0 resubmitted" in out, out[-3000:]
        assert procs_per_job(sweep_id, collector=collector) == {0: 1, 1: 1}

        # A damaged manifest of jobs still queued: repair finds them in the queue, status follows them.
        (tmp_path / "sweep" / ".htcondor" / "manifest.json").write_text("garbage")
        cli = functools.partial(
            subprocess.run, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
        )
        repaired = cli([str(CLI), "repair", str(tmp_path / "sweep")])
        assert repaired.returncode == 0 and "2 found in HTCondor" in repaired.stdout, repaired.stderr
        jobs = _manifest(tmp_path)["jobs"]
        assert {j["state"] for j in jobs.values()} <= {"idle", "running"}
        assert all(j["cluster"] for j in jobs.values())
        status = cli([str(CLI), "status", str(tmp_path / "sweep")])
        assert status.returncode == 3 and "0 failed of 2 jobs" in status.stdout, status.stdout + status.stderr
    finally:
        subprocess.run(
            [str(CLI), "rm", str(tmp_path / "sweep")],
            env={**os.environ, "CONDOR_CONFIG": config},
            capture_output=True,
            timeout=120,
        )


def test_a_damaged_manifest_names_repair_which_rebuilds_it_losing_no_result(tmp_path, procs_per_job):
    args = ("+x=1,2",)
    first = _run(_cmd(tmp_path, *args), tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    sweep = tmp_path / "sweep"
    path = sweep / ".htcondor" / "manifest.json"
    sweep_id = _manifest(tmp_path)["sweep_id"]
    path.write_text("{ damaged")  # nothing readable left, not even the sweep id

    refused = _run(_cmd(tmp_path, *args), tmp_path)
    assert refused.returncode == 1
    err = [ln for ln in refused.stderr.splitlines() if ln.strip() and "HYDRA_FULL_ERROR" not in ln]
    assert len(err) == 1 and f"hydra-htcondor repair {sweep}" in err[0], refused.stderr
    status = _run([str(CLI), "status", str(sweep)], tmp_path)
    assert status.returncode == 2 and f"hydra-htcondor repair {sweep}" in status.stderr

    repaired = _run([str(CLI), "repair", str(sweep)], tmp_path)
    assert repaired.returncode == 0, repaired.stderr
    counts = "2 job(s) (0 from the damaged file's readable lines, 2 found in HTCondor)"
    assert repaired.stdout.startswith("repaired") and counts in repaired.stdout, repaired.stdout
    (aside,) = (sweep / ".htcondor").glob("manifest.json.damaged-*")
    assert aside.read_text() == "{ damaged"
    assert _manifest(tmp_path)["sweep_id"] == sweep_id
    status = _run([str(CLI), "status", str(sweep)], tmp_path)
    assert status.returncode == 0 and "2 done" in status.stdout and "'ok:2'" in status.stdout, status.stdout

    rerun = _run(_cmd(tmp_path, *args), tmp_path)
    out = rerun.stdout + rerun.stderr
    assert rerun.returncode == 0, out[-3000:]
    assert "resuming sweep: 2 reused" in out and "submitted as cluster" not in out, out[-3000:]
    assert [r.split(" -> ")[1] for r in _results(out)] == ["'ok:1'", "'ok:2'"]
    assert procs_per_job(sweep_id) == {0: 1, 1: 1}

    # Gone altogether: the re-run does not start afresh over the stored results, repair brings it back.
    path.unlink()
    lost = _run(_cmd(tmp_path, *args), tmp_path)
    assert lost.returncode == 1 and f"hydra-htcondor repair {sweep}" in lost.stderr, lost.stderr[-3000:]
    assert "holds job files" in lost.stderr and "resume=false" in lost.stderr
    rebuilt = _run([str(CLI), "repair", str(sweep)], tmp_path)
    assert rebuilt.returncode == 0 and "2 found in HTCondor" in rebuilt.stdout, rebuilt.stderr
    assert _manifest(tmp_path)["sweep_id"] == sweep_id

    # Cut mid-file: the head and the lines before the cut are kept as they were.
    text = path.read_text()
    path.write_text(text[: text.index('"1":') + 10])
    again = _run([str(CLI), "repair", str(sweep)], tmp_path)
    assert again.returncode == 0, again.stderr
    assert "(1 from the damaged file's readable lines, 2 found in HTCondor)" in again.stdout, again.stdout
    assert _run([str(CLI), "status", str(sweep)], tmp_path).returncode == 0
    assert _run([str(CLI), "repair", str(sweep)], tmp_path).stdout.strip().endswith("nothing to repair")
