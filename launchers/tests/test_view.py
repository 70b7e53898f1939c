"""The sweep reader (`view`): a sweep's jobs over every submission, from the manifest and event logs in
HTCondor's own format (a re-run's cluster appended to an older batch's log), with no schedd."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time

from hydra_plugins.hydra_htcondor_launcher import _cli
from hydra_plugins.hydra_htcondor_launcher._jobstate import JobRecord, JobState
from hydra_plugins.hydra_htcondor_launcher._layout import SweepLayout
from hydra_plugins.hydra_htcondor_launcher._manifest import Manifest
from hydra_plugins.hydra_htcondor_launcher.view import read_sweep


def _event(code: str, cluster: int, proc: int, clock: str, text: str) -> str:
    return f"{code} ({cluster:03d}.{proc:03d}.000) 2026-11-29 {clock} {text}\n...\n"


def _submit(cluster: int, proc: int, clock: str) -> str:
    return _event("000", cluster, proc, clock, "Job submitted from host: <127.0.0.1:45819?alias=vm>")


def _execute(cluster: int, proc: int, clock: str, slot: str) -> str:
    text = f"Job executing on host: <127.0.0.1:37229?alias=node1>\n\tSlotName: {slot}"
    return _event("001", cluster, proc, clock, text)


def _terminated(cluster: int, proc: int, clock: str, code: int) -> str:
    usage = "Usr 0 00:00:00, Sys 0 00:00:00"
    text = "\n".join(
        [
            f"Job terminated.\n\t(1) Normal termination (return value {code})",
            *(f"\t\t{usage}  -  {what}" for what in ("Run Remote Usage", "Run Local Usage")),
            *(f"\t\t{usage}  -  {what}" for what in ("Total Remote Usage", "Total Local Usage")),
            *(f"\t0  -  {what}" for what in ("Run Bytes Sent By Job", "Run Bytes Received By Job")),
            *(f"\t0  -  {what}" for what in ("Total Bytes Sent By Job", "Total Bytes Received By Job")),
        ]
    )
    return _event("005", cluster, proc, clock, text)


# The first run (cluster 95): jobs 0 and 2 fail, job 1 is done. A re-run submits jobs 0 and 2 again as one
# cluster (96) whose event log is the same file: its proc 1 is job 2, not job 1.
FIRST = "".join(
    [
        *(_submit(95, p, "10:00:00") for p in range(3)),
        *(_execute(95, p, f"10:00:0{p + 1}", f"slot1_{p + 1}@node1") for p in range(3)),
        _terminated(95, 0, "10:00:30", 80),
        _terminated(95, 1, "10:00:31", 0),
        _terminated(95, 2, "10:00:32", 80),
    ]
)
RERUN = "".join(
    [
        _submit(96, 0, "10:05:00"),
        _submit(96, 1, "10:05:00"),
        _execute(96, 0, "10:05:02", "slot1_1@node2"),
        _execute(96, 1, "10:05:03", "slot1_2@node2"),
        _terminated(96, 0, "10:05:20", 0),
    ]
)


def _stamp(clock: str) -> float:
    return time.mktime(time.strptime(f"2026-11-29 {clock}", "%Y-%m-%d %H:%M:%S"))


def _sweep(tmp_path, log_text: str = FIRST + RERUN) -> Manifest:
    """A sweep folder as the launcher leaves it after the re-run submitted jobs 0 and 2 again (the manifest
    saved at submission: it has not seen their events yet)."""
    sweep = str(tmp_path / "sweep")
    names = SweepLayout(sweep)
    os.makedirs(names.htcondor_dir)
    log_file = names.batch_log(0, 2)
    with open(log_file, "w") as f:
        f.write(log_text)
    m = Manifest.new(sweep, names.htcondor_dir)
    for num in range(3):
        m.planned(num, [f"+x={num}"], names.result(num), names.stdout(num), names.stderr(num))
        state = JobState.DONE if num == 1 else JobState.FAILED
        m.record(JobRecord(proc=num, num=num, state=state, exit_code=0 if num == 1 else 80), 95, log_file)
    for proc, num in enumerate((0, 2)):
        m.planned(num, [f"+x={num}"], names.result(num), names.stdout(num), names.stderr(num))
        m.record(JobRecord(proc=proc, num=num), 96, log_file)
    m.save()
    return m


def test_a_resubmitted_job_is_read_from_every_cluster_of_an_appended_log(tmp_path):
    m = _sweep(tmp_path)
    assert m.job(2)["earlier"] == [
        {"cluster": 95, "proc": 2, "log": m.job(2)["log"], "state": "failed"}
    ]  # kept by Manifest.planned
    sweep = read_sweep(m.sweep_dir)
    assert sweep.all_notes() == []
    assert {num: (job.ids, job.state) for num, job in sweep.jobs.items()} == {
        0: (["95.0", "96.0"], JobState.DONE),
        1: (["95.1"], JobState.DONE),
        2: (["95.2", "96.1"], JobState.RUNNING),  # 96.1 is job 2: it was never job 1
    }
    rerun = sweep.jobs[2]
    assert (rerun.record.cluster, rerun.record.proc, rerun.host) == (96, 1, "slot1_2@node2")
    assert [a.record.state for a in rerun.attempts] == [JobState.FAILED, JobState.RUNNING]
    assert rerun.attempts[0].record.exit_code == 80 and rerun.starts == 2
    assert (rerun.submitted, rerun.started, rerun.ended) == (_stamp("10:05:00"), _stamp("10:05:03"), None)
    again = sweep.jobs[0]
    t0 = _stamp("10:00:00")
    shown = [(s.state.value, s.start - t0, s.end if s.end is None else s.end - t0) for s in again.timeline]
    assert shown == [
        ("idle", 0, 1),
        ("running", 1, 30),
        ("failed", 30, 30),
        ("idle", 300, 302),
        ("running", 302, 320),
        ("done", 320, 320),
    ]
    assert again.ended == _stamp("10:05:20") and again.queue_wait_s == 2.0
    assert again.running_s() == 29 + 18
    assert again.paths.stderr == SweepLayout(m.sweep_dir).stderr(0)
    # hydra-htcondor status reads the same
    table = _cli.render(m, _cli.records(m))
    rows = {row.split()[0]: row.split()[1:3] for row in table.splitlines() if row.lstrip().startswith("#")}
    assert rows == {"#0": ["96.0", "done"], "#1": ["95.1", "done"], "#2": ["96.1", "running"]}


def test_a_copied_sweep_folder_reads_the_same(tmp_path):
    m = _sweep(tmp_path)
    copy = tmp_path / "elsewhere" / "copy"
    shutil.copytree(m.sweep_dir, copy)
    shutil.rmtree(m.sweep_dir)
    sweep = read_sweep(str(copy))
    assert sweep.all_notes() == [] and sweep.sweep_dir == str(copy)
    assert [job.state for job in sweep.jobs.values()] == [JobState.DONE, JobState.DONE, JobState.RUNNING]
    assert sweep.jobs[2].paths.stdout.startswith(str(copy) + os.sep)


def test_a_missing_or_damaged_log_is_a_note_and_the_manifest_view(tmp_path):
    m = _sweep(tmp_path)
    os.remove(m.job(0)["log"])
    sweep = read_sweep(m.sweep_dir)
    assert [job.state for job in sweep.jobs.values()] == [JobState.IDLE, JobState.DONE, JobState.IDLE]
    assert sweep.all_notes() == [f"event log {m.job(0)['log']} missing: showing the manifest's view"]
    assert sweep.jobs[0].notes == sweep.all_notes() and sweep.jobs[0].timeline == []

    # Garbage in the middle: HTCondor's reader stops there without a word; the reader says where.
    damaged = _sweep(tmp_path / "d", FIRST + "torn\nwrite\n...\n" + RERUN)
    sweep = read_sweep(damaged.sweep_dir)
    [note] = sweep.all_notes()
    pattern = rf"event log {damaged.job(0)['log']} damaged at byte (\d+) \(after 9 events\): .*"
    where = re.fullmatch(pattern, note)
    assert where and len(FIRST) <= int(where[1]) < len(FIRST) + len("torn\nwrite\n"), note
    # What was read stands (the first run); the rest is the manifest's view, not a guess.
    assert [a.record.state for a in sweep.jobs[2].attempts] == [JobState.FAILED, JobState.IDLE]
    # A last event still being written is no damage.
    live = _sweep(tmp_path / "l", FIRST + RERUN + "005 (096.001.000) 2026-11-29 10:05:40 Job termin")
    assert read_sweep(live.sweep_dir).all_notes() == []


def test_a_job_the_launcher_found_lost_stays_so(tmp_path):
    m = _sweep(tmp_path)
    rec = JobRecord(proc=1, num=2, state=JobState.REMOVED, abort_reason="HTCondor no longer knows it")
    m.record(rec, 96, m.job(2)["log"])
    m.save()
    job = read_sweep(m.sweep_dir).jobs[2]
    assert job.state is JobState.REMOVED and job.record.abort_reason == "HTCondor no longer knows it"
    assert job.ids == ["95.2", "96.1"] and job.attempts[-1].record.state is JobState.RUNNING


def test_a_job_planned_again_but_not_submitted_yet_is_idle(tmp_path):
    m = _sweep(tmp_path)
    m.planned(1, ["+x=1"], m.job(1)["result"], m.job(1)["stdout"], m.job(1)["stderr"])  # a crash follows
    m.save()
    job = read_sweep(m.sweep_dir).jobs[1]
    assert job.state is JobState.IDLE and job.ids == ["95.1"]
    assert job.attempts[0].record.state is JobState.DONE  # the earlier submission, as its log tells it


def test_a_folder_without_manifest_reads_whole_batches_from_their_logs(tmp_path):
    m = _sweep(tmp_path)
    os.remove(m.path)
    sweep = read_sweep(m.sweep_dir)
    assert "no .htcondor/manifest.json" in sweep.notes[0]
    # Cluster 95 holds the whole batch 0..2 (proc p is job p); the re-run's cluster 96 cannot be placed.
    assert {num: job.ids for num, job in sweep.jobs.items()} == {0: ["95.0"], 1: ["95.1"], 2: ["95.2"]}
    assert read_sweep(str(tmp_path / "nothing")).jobs == {}


def test_the_public_module_is_light_and_complete():
    # Hydra imports it at every start-up: neither the reader nor the bindings load before a sweep is read.
    code = (
        "import sys; import hydra_plugins.hydra_htcondor_launcher.view as v; "
        "assert 'htcondor2' not in sys.modules and 'hydra_plugins.hydra_htcondor_launcher._view' not in "
        "sys.modules; [getattr(v, n) for n in v.__all__]; print('ok')"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.stdout.strip() == "ok", done.stderr
