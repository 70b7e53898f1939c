"""A lost execute machine on a real pool: the startd and everything under it killed with SIGKILL while a
sweep's jobs run. The launcher shows the jobs `disconnected` (since when, until when HTCondor waits), HTCondor
requeues them when their lease (job_lease_minutes=1) expires, and the sweep returns every job's real value.

The pool is one of this test's own (killing the session pool's startd would take other tests' jobs with it),
run with the session pool's HTCondor (no download).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from proctools import pids

pytestmark = [pytest.mark.condor, pytest.mark.slow]

CLI = Path(sys.executable).parent / "hydra-htcondor"
LEASE_S = 60  # job_lease_minutes=1
SLEEP_S = 30  # each job's run: long enough to be killed while running, short enough to finish soon after

APP = """
import time

import hydra


@hydra.main(version_base=None, config_path=None)
def main(cfg):
    time.sleep(float(cfg.sleep))
    return f"ok:{cfg.x}"


if __name__ == "__main__":
    main()
"""


def _manifest_jobs(sweep: Path) -> dict[str, dict]:
    try:
        return json.loads((sweep / ".htcondor" / "manifest.json").read_text())["jobs"]
    except (OSError, ValueError):  # not written yet
        return {}


def _await(what: str, check, deadline_s: float, proc: subprocess.Popen, out: Path):
    """Poll `check()` until it returns something true; fail naming `what` (and the launcher's output)."""
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        got = check()
        if got:
            return got
        if proc.poll() is not None:
            pytest.fail(f"the launcher exited ({proc.returncode}) before {what}:\n{out.read_text()[-3000:]}")
        time.sleep(0.2)
    pytest.fail(f"no {what} within {deadline_s:.0f} s:\n{out.read_text()[-3000:]}")


def _event_times(log_file: Path) -> dict[tuple[int, str], list[float]]:
    """(proc, event type name) -> the event's times, from the sweep's job event log."""
    import htcondor2

    times: dict[tuple[int, str], list[float]] = {}
    for event in htcondor2.JobEventLog(str(log_file)).events(stop_after=0):
        times.setdefault((event.proc, event.type.name), []).append(float(event.timestamp))
    return times


def test_jobs_of_a_killed_startd_show_disconnected_then_are_requeued_and_finish(tmp_path, private_pool):
    done = private_pool.run("start")
    assert done.returncode == 0, f"private pool start: {done.stderr[-2000:]}"
    try:
        config = str(private_pool.config())
        (tmp_path / "app.py").write_text(APP)
        sweep = tmp_path / "sweep"
        cmd = [
            sys.executable,
            str(tmp_path / "app.py"),
            "-m",
            "hydra/launcher=htcondor",
            "hydra.launcher.request_memory=256MB",
            "hydra.launcher.poll_interval=0.2",
            "hydra.launcher.status_interval=5",
            "hydra.launcher.job_lease_minutes=1",
            f"hydra.sweep.dir={sweep}",
            "+x=1,2",
            f"+sleep={SLEEP_S}",
        ]
        out = tmp_path / "launcher.out"
        with open(out, "w") as sink:
            proc = subprocess.Popen(
                cmd, cwd=tmp_path, env={**os.environ, "CONDOR_CONFIG": config}, stdout=sink, stderr=sink
            )
        try:
            _await(
                "both jobs running",
                lambda: (
                    (jobs := _manifest_jobs(sweep))
                    and all(job.get("state") == "running" for job in jobs.values())
                ),
                180,
                proc,
                out,
            )
            # The machine dies: its startd, its starters and the jobs under them, all at once.
            startd = private_pool.daemon("condor_startd")
            assert startd is not None, "no condor_startd under the private pool's master"
            starters = pids.children(startd, "condor_starter")
            assert len(starters) == 2, f"expected a starter per job, found {starters}"
            victims = pids.subtree(startd)
            killed = time.time()
            for pid in victims:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            jobs = _await(
                "disconnected jobs in the manifest",
                lambda: (
                    (jobs := _manifest_jobs(sweep))
                    and all(job.get("state") == "disconnected" for job in jobs.values())
                    and jobs
                ),
                30,
                proc,
                out,
            )
            for job in jobs.values():
                # Until when HTCondor waits: the disconnect's time plus the lease of the job's ad.
                assert job["lease_s"] == LEASE_S
                assert job["disconnected_until"] == job["since"] + LEASE_S
                assert 0 <= job["since"] - int(killed) <= 5
            # `hydra-htcondor status` (the files, and the pool for lost jobs) says the same.
            status = subprocess.run(
                [str(CLI), "status", str(sweep)],
                env={**os.environ, "CONDOR_CONFIG": config},
                capture_output=True,
                text=True,
                timeout=120,
            )
            assert status.returncode == 3, status.stdout + status.stderr  # unfinished
            assert status.stdout.count("HTCondor waits until") == 2, status.stdout
            requeued = _await(
                "the jobs back in the queue",
                lambda: (
                    (jobs := _manifest_jobs(sweep))
                    and all(job.get("reconnect_failures") for job in jobs.values())
                    and time.time()
                ),
                LEASE_S + 60,
                proc,
                out,
            )
            rc = proc.wait(timeout=SLEEP_S + 180)
            finished = time.time()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        text = out.read_text()
        assert rc == 0, text[-3000:]
        # The live table said so, with the times, and the launcher warned once per job.
        shown = [line for line in text.splitlines() if " disconnected " in line and "waits until" in line]
        assert shown, text[-3000:]
        assert text.count("disconnected from slot1_") == 2, text[-3000:]
        # Every job's real value came back.
        for x in (1, 2):
            assert f"-> 'ok:{x}'" in text, text[-3000:]
        final = _manifest_jobs(sweep)
        assert {job["state"] for job in final.values()} == {"done"}
        assert all(job["starts"] == 2 and job["reconnect_failures"] == 1 for job in final.values()), final
        # The master brought a new startd up by itself (the requeued jobs ran on it).
        assert private_pool.daemon("condor_startd") not in (None, startd)

        log_file = Path(next(iter(final.values()))["log"])
        times = _event_times(log_file)
        for p in (0, 1):
            (disconnected,) = times[(p, "JOB_DISCONNECTED")]
            (failed,) = times[(p, "JOB_RECONNECT_FAILED")]
            assert failed - disconnected == pytest.approx(LEASE_S, abs=2)  # HTCondor waited the lease
            assert len(times[(p, "EXECUTE")]) == 2
        print(
            f"\nkill -> disconnected (event): {times[(0, 'JOB_DISCONNECTED')][0] - killed:+.1f} s; "
            f"kill -> reconnect failed: {times[(0, 'JOB_RECONNECT_FAILED')][0] - killed:.1f} s; "
            f"kill -> requeued (launcher): {requeued - killed:.1f} s; "
            f"kill -> run again: {times[(0, 'EXECUTE')][1] - killed:.1f} s; "
            f"kill -> sweep returned: {finished - killed:.1f} s (job run {SLEEP_S} s)"
        )
    finally:
        private_pool.run("stop")
