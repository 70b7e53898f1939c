"""Sweep reports (mnist_app.report): real sweeps, locally and on the local HTCondor pool, read back from disk,
in a real headless browser, and with TensorBoard's own event reader."""

from __future__ import annotations

import csv
import json
import math
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from _app_helpers import (
    POOL_SEARCH_EPOCHS,
    POOL_SEARCH_LR,
    POOL_SEARCH_TRIALS,
    PRUNE_BELOW,
    QUICK,
    app_env,
    only_sweep_dir,
    run_app,
)
from _browser import headless

from mnist_app.report import NotASweepError, load_sweep
from mnist_app.report.__main__ import main as report_main
from mnist_app.report.collect import DONE, STATUS_OF, Job, Sweep, slot_rows
from mnist_app.report.render import plot_history, render_html, table_text

# summary.csv column -> metrics.json key
METRIC_COLUMNS = {
    "val_acc": "val/acc",
    "val_loss": "val/loss",
    "test_acc": "test/acc",
    "test_loss": "test/loss",
    "epochs": "epochs",
    "wall_time_s": "wall_time_s",
    "train_images_per_sec": "train_images_per_sec",
}


def read_summary(sweep_dir: Path) -> list[dict[str, str]]:
    with (sweep_dir / "summary.csv").open(newline="") as f:
        return list(csv.DictReader(f))


def check_rows_match_metrics(sweep_dir: Path, rows: list[dict[str, str]]) -> None:
    """Every done row holds exactly its job's metrics.json values (CSV floats round-trip exactly)."""
    for row in rows:
        if row["status"] != "done":
            continue
        metrics = json.loads((sweep_dir / row["job_dir"] / "metrics.json").read_text())
        for column, key in METRIC_COLUMNS.items():
            assert float(row[column]) == metrics[key], (row["job"], column)
        assert float(row["optimized_metric"]) == metrics["test/acc"]


def log_table(output: str) -> tuple[list[str], list[list[str]]]:
    """The ranked table the callback logs: header and rows (split on runs of 2+ spaces)."""
    lines = output.splitlines()
    start = max(i for i, line in enumerate(lines) if re.search(r"\] sweep .*: \d+ jobs: ", line))
    header = re.split(r"\s{2,}", lines[start + 1].strip())
    rows = []
    for line in lines[start + 2 :]:
        if line.startswith("report: ") or not line.strip():
            break
        cells = re.split(r"\s{2,}", line.strip())
        rows.append(cells)
    return header, rows


def check_log_sorted(output: str, rows: list[dict[str, str]], metric: str = "test/acc") -> None:
    header, table = log_table(output)
    assert header[:1] == ["job"] and metric in header, header
    done = [r for r in rows if r["status"] == "done"]
    assert len(table) == len(rows)
    # Rows with a value come first, best (highest) first; the best one is marked with '*'.
    values = sorted((float(r["optimized_metric"]) for r in done), reverse=True)
    column = header.index(metric)
    logged = [cells[column + 1] if cells[0] == "*" else cells[column] for cells in table[: len(done)]]
    assert logged == [f"{v:.4f}" for v in values]  # the log shows 4 decimals
    assert table[0][0] == "*" and not any(cells[0] == "*" for cells in table[1:])
    best = max(done, key=lambda r: float(r["optimized_metric"]))
    assert table[0][1] == best["job"]


# --- the browser ---

_CHECK_SCRIPT = """<script>
window.addEventListener('load', () => {
  const imgs = [...document.images];
  const rows = [...document.querySelectorAll('#jobs tbody tr')];
  const out = {images: imgs.length, loaded: imgs.filter(i => i.complete && i.naturalWidth > 0).length,
               widths: imgs.map(i => i.naturalWidth), jobs: rows.map(r => r.dataset.job),
               best: rows.filter(r => r.classList.contains('best')).map(r => r.dataset.job),
               alts: imgs.filter(i => i.complete && i.naturalWidth > 0).map(i => i.alt),
               classes: Object.fromEntries(rows.map(r => [r.dataset.job, r.className])),
               header: [...document.querySelectorAll('#jobs thead th')].map(th => th.textContent),
               cells: rows.map(r => [...r.cells].map(c => c.textContent))};
  const pre = document.createElement('pre');
  pre.id = 'browser-check';
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
});
</script>"""


def open_in_browser(report: Path, out_dir: Path) -> dict[str, Any]:
    """Load the report in headless Chromium: a screenshot into out_dir, and what the loaded page holds."""
    base = headless(out_dir)
    shot = out_dir / "report.png"
    subprocess.run(
        [*base, "--window-size=1400,2400", f"--screenshot={shot}", report.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert shot.stat().st_size > 10_000, "screenshot too small"
    # The same page with a probe appended, so the browser itself reports what it loaded.
    probe = out_dir / "report-probe.html"
    probe.write_text(report.read_text().replace("</body>", _CHECK_SCRIPT + "</body>"))
    dom = subprocess.run(
        [*base, "--virtual-time-budget=15000", "--dump-dom", probe.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    match = re.search(r'<pre id="browser-check">(.*?)</pre>', dom)
    assert match, dom[-2000:]
    return json.loads(match.group(1).replace("&quot;", '"'))


def check_in_browser(sweep_dir: Path, out_dir: Path, n_jobs: int, n_images: int) -> dict[str, Any]:
    seen = open_in_browser(sweep_dir / "report.html", out_dir)
    assert seen["images"] == n_images, seen
    assert seen["loaded"] == n_images and all(w > 0 for w in seen["widths"]), seen
    assert sorted(seen["jobs"], key=int) == [str(n) for n in range(n_jobs)], seen
    assert len(seen["best"]) == 1, seen
    return seen


# --- a real local sweep ---


@pytest.fixture(scope="module")
def local_sweep(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess[str]]:
    cwd = tmp_path_factory.mktemp("local_sweep")
    proc = run_app(cwd, "-m", "model.lr=0.5,1.0", *QUICK)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return only_sweep_dir(cwd), proc


@pytest.mark.slow
def test_local_sweep_summary_equals_metrics(local_sweep):
    sweep_dir, proc = local_sweep
    rows = read_summary(sweep_dir)
    assert [r["job"] for r in rows] == ["0", "1"]
    assert [float(r["model.lr"]) for r in rows] == [0.5, 1.0]
    assert {r["status"] for r in rows} == {"done"}
    check_rows_match_metrics(sweep_dir, rows)
    assert "host" not in rows[0]  # no HTCondor columns for a local sweep
    check_log_sorted(proc.stdout + proc.stderr, rows)


@pytest.mark.slow
def test_local_report_in_a_real_browser(local_sweep, tmp_path):
    sweep_dir, _ = local_sweep
    # Two plots: the metric against model.lr, and validation accuracy per epoch.
    check_in_browser(sweep_dir, tmp_path, n_jobs=2, n_images=2)


@pytest.mark.slow
def test_tensorboard_holds_an_hparams_summary_per_job(local_sweep):
    from tensorboard.backend.event_processing.plugin_event_multiplexer import EventMultiplexer
    from tensorboard.plugins.hparams import metadata
    from tensorboard.util import tensor_util

    sweep_dir, _ = local_sweep
    mux = EventMultiplexer().AddRunsFromDirectory(str(sweep_dir))
    mux.Reload()
    runs = mux.PluginRunToTagToContent(metadata.PLUGIN_NAME)
    for job, lr in (("0", 0.5), ("1", 1.0)):
        run = f"{job}/tensorboard"
        assert run in runs, sorted(runs)
        start = metadata.parse_session_start_info_plugin_data(runs[run][metadata.SESSION_START_INFO_TAG])
        # The first summary (the one TensorBoard shows) holds the swept value, not Lightning's whole config.
        assert start.hparams["model.lr"].number_value == lr
        assert "hp_metric" not in mux.GetAccumulator(run).Tags()["tensors"]
        experiment = metadata.parse_experiment_plugin_data(runs[run][metadata.EXPERIMENT_TAG])
        names = {info.name.tag for info in experiment.metric_infos}
        assert {"val/acc", "test/acc", "test/loss"} <= names
        metrics = json.loads((sweep_dir / job / "metrics.json").read_text())
        last = mux.Tensors(run, "test/acc")[-1]
        assert math.isclose(
            float(tensor_util.make_ndarray(last.tensor_proto)), metrics["test/acc"], rel_tol=1e-6
        )


@pytest.mark.slow
def test_report_cli_rebuilds_a_partial_sweep(local_sweep, tmp_path, capsys):
    sweep_dir, _ = local_sweep
    copy = tmp_path / "sweep"
    shutil.copytree(sweep_dir, copy)
    before = (copy / "summary.csv").read_text()
    (copy / "summary.csv").unlink()
    (copy / "report.html").unlink()
    assert report_main([str(copy)]) == 0
    printed = capsys.readouterr().out
    assert (copy / "summary.csv").read_text() == before.replace(str(sweep_dir), str(copy))
    assert (copy / "report.html").is_file() and "2 jobs: 2 done" in printed
    # Job 1 still running: no metrics, no status yet.
    (copy / "1" / "metrics.json").unlink()
    (copy / "1" / "job_status.json").unlink()
    sweep = load_sweep(copy)
    assert [j.status for j in sweep.jobs] == ["done", "running"]
    assert report_main([str(copy)]) == 0
    assert "1 done, 0 failed, 1 running" in capsys.readouterr().out


@pytest.mark.parametrize("make", ["missing", "not_a_sweep", "bad_yaml"])
def test_report_cli_bad_input_is_one_line(tmp_path, make):
    target = tmp_path / "x"
    if make != "missing":
        target.mkdir()
    if make == "bad_yaml":
        (target / "multirun.yaml").write_text("a: [unclosed\n")
    proc = subprocess.run(
        [sys.executable, "-m", "mnist_app.report", str(target)], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 2
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and str(target) in lines[0] and "error" in lines[0], proc.stderr
    with pytest.raises(NotASweepError):
        load_sweep(target)


def test_the_optuna_line_reads_one_objective_and_a_pareto_front(tmp_path):
    # optimization_results.yaml as hydra-optuna-sweeper and optuna_stream write it (trial number: job number).
    jobs = [
        Job(0, {"model.lr": 0.5}, DONE, None, {"val/acc": 0.8}),
        Job(1, {"model.lr": 1.0}, DONE, None, {"val/acc": 0.9}),
    ]
    best = {"name": "optuna", "best_params": {"model.lr": 1.0}, "best_value": 0.9}
    single = Sweep(tmp_path, ["model.lr"], "val/acc", True, jobs, False, best)
    assert table_text(single).splitlines()[-1] == (
        "Optuna: best trial 1 (job 1); optimization_results.yaml: best_value 0.9000, "
        "best_params {'model.lr': 1.0}"
    )
    front = [{"params": {"model.lr": lr}, "values": [acc, 1 / lr]} for lr, acc in ((0.5, 0.8), (1.0, 0.9))]
    pareto = {"name": "optuna", "solutions": front}
    multi = Sweep(tmp_path, ["model.lr"], "val/acc", True, jobs, False, pareto)
    assert table_text(multi).splitlines()[-1] == (
        "Optuna: Pareto front of 2 trial(s) in optimization_results.yaml: "
        "values [0.8000, 2.0000] at {'model.lr': 0.5}; values [0.9000, 1.0000] at {'model.lr': 1.0}"
    )
    assert "Pareto front of 2 trial(s)" in render_html(multi)


def _study_sweep(sweep_dir: Path, directions: list[str]) -> Any:
    """A sweep folder as the streaming sweeper leaves one (its study in the folder's journal, its config in
    multirun.yaml); job folders are the caller's. Returns the study to fill, written by Optuna itself."""
    import optuna
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    sweep_dir.mkdir()
    cfg = {
        "optimized_metric": "val/acc",
        "hydra": {
            "sweeper": {"storage": None, "study_name": "s", "direction": directions},
            "job": {"name": "app"},
            "runtime": {"cwd": "/nonexistent"},  # a relative storage path only would be read from there
        },
    }
    (sweep_dir / "multirun.yaml").write_text(yaml.safe_dump(cfg))
    storage = JournalStorage(JournalFileBackend(str(sweep_dir / "optuna_journal.log")))
    return optuna.create_study(storage=storage, study_name="s", directions=directions)


def _job_folder(sweep_dir: Path, num: int, x: float, status: dict[str, Any] | None) -> None:
    hydra_dir = sweep_dir / str(num) / ".hydra"
    hydra_dir.mkdir(parents=True)
    (hydra_dir / "hydra.yaml").write_text(yaml.safe_dump({"hydra": {"job": {"num": num}}}))
    (hydra_dir / "overrides.yaml").write_text(yaml.safe_dump([f"x={x}"]))
    if status is not None:
        (sweep_dir / str(num) / "job_status.json").write_text(json.dumps({"job": num, **status}))


def test_the_report_shows_each_trials_state_from_the_study(tmp_path):
    """Trial states come from the study (read as the sweeper found it: hydra.sweeper.storage, study_name):
    a pruned job (here pruned in-process: its task raised TrialPruned) is PRUNED with its last report, not
    failed; a FAIL carries the sweeper's cause where the job left none; a running trial is running."""
    from optuna.trial import TrialState

    sweep_dir = tmp_path / "sweep"
    study = _study_sweep(sweep_dir, ["maximize"])
    outcomes = [
        ("COMPLETE", {"status": "done"}),
        ("PRUNED", {"status": "failed", "error": "TrialPruned: pruned at step 1"}),
        ("FAIL", None),  # its job left nothing: the sweeper's cause stands
        ("RUNNING", None),
    ]
    for num, (state, status) in enumerate(outcomes):
        trial = study.ask()
        trial.suggest_float("x", 0.0, 1.0)
        for step in range(2):
            trial.report(0.5 + 0.1 * step, step)
        if state == "COMPLETE":
            study.tell(trial, 0.9)
        elif state == "PRUNED":
            study.tell(trial, state=TrialState.PRUNED)
        elif state == "FAIL":
            trial.set_user_attr("failure", "lost: neither HTCondor nor the sweep folder knows its job")
            study.tell(trial, state=TrialState.FAIL)
        _job_folder(sweep_dir, num, trial.params["x"], status)
    sweep = load_sweep(sweep_dir)
    assert [(j.status, j.trial.state if j.trial else None) for j in sweep.jobs] == [
        ("done", "COMPLETE"),
        ("pruned", "PRUNED"),
        ("failed", "FAIL"),
        ("running", "RUNNING"),
    ]
    assert sweep.jobs[1].error is None
    assert sweep.jobs[2].error == "lost: neither HTCondor nor the sweep folder knows its job"
    assert report_main([str(sweep_dir)]) == 0
    rows = read_summary(sweep_dir)
    assert [(r["status"], r["optuna_state"], r["pruned_at_step"], r["last_reported_step"]) for r in rows] == [
        ("done", "COMPLETE", "", "1"),
        ("pruned", "PRUNED", "1", "1"),
        ("failed", "FAIL", "", "1"),
        ("running", "RUNNING", "", "1"),
    ]
    assert rows[2]["optuna_failure"].startswith("lost: ") and float(rows[1]["last_reported_value"]) == 0.6
    text = table_text(sweep)
    assert "1 done, 1 failed, 1 pruned, 1 running" in text
    assert "PRUNED at step 1 (0.6)" in text and "RUNNING (step 1: 0.6)" in text
    html = (sweep_dir / "report.html").read_text()
    assert "<tr class='pruned' data-job='1'>" in html and "Optuna optimisation history (val/acc)" in html


@pytest.mark.parametrize("direction", ["minimize", "maximize"])
def test_an_app_without_metrics_is_ranked_by_its_trials_values(tmp_path, direction):
    """Any Hydra app: no metrics.json, so the best job is the COMPLETE trial with the best returned value,
    in the study's direction (a one-element direction list as the sweeper accepts it)."""
    sweep_dir = tmp_path / "sweep"
    study = _study_sweep(sweep_dir, [direction])
    for num, value in enumerate([0.3, 0.8, 0.5]):
        trial = study.ask()
        trial.suggest_float("x", 0.0, 1.0)
        study.tell(trial, value)
        _job_folder(sweep_dir, num, trial.params["x"], {"status": "done"})
    sweep = load_sweep(sweep_dir)
    best = sweep.best()
    assert best is not None and best.num == (0 if direction == "minimize" else 1)
    text = table_text(sweep)
    assert f"best: job {best.num} (objective {best.trial.values[0]:.4f})" in text, text.splitlines()[0]


def test_the_history_of_a_multi_objective_study_has_a_panel_per_objective(tmp_path):
    import base64
    import io

    from matplotlib.image import imread

    sweep_dir = tmp_path / "sweep"
    study = _study_sweep(sweep_dir, ["minimize", "maximize"])
    for num in range(3):
        trial = study.ask()
        x = trial.suggest_float("x", 0.0, 1.0)
        study.tell(trial, [x, 1 - x])
        _job_folder(sweep_dir, num, x, {"status": "done"})
    sweep = load_sweep(sweep_dir)
    assert sweep.study is not None and sweep.study.directions == ["minimize", "maximize"]
    png = plot_history(sweep)
    assert png is not None
    height, width, _ = imread(io.BytesIO(base64.b64decode(png))).shape
    assert height > 600 and width == 900  # two panels of 340 px, 9 inches wide
    assert "Optuna optimisation history (2 objectives: one panel each)" in render_html(sweep)


# --- HTCondor event logs (a hand-written log in HTCondor's own format: evictions and holds on demand) ---

EVENT_LOG = """\
000 (095.000.000) 2026-11-29 10:00:00 Job submitted from host: <127.0.0.1:45819?alias=vm>
...
000 (095.001.000) 2026-11-29 10:00:00 Job submitted from host: <127.0.0.1:45819?alias=vm>
...
001 (095.000.000) 2026-11-29 10:00:05 Job executing on host: <127.0.0.1:37229?alias=node1>
	SlotName: slot1_1@node1
...
004 (095.000.000) 2026-11-29 10:00:20 Job was evicted.
	(0) Job was not checkpointed.
		Usr 0 00:00:00, Sys 0 00:00:00  -  Run Remote Usage
		Usr 0 00:00:00, Sys 0 00:00:00  -  Run Local Usage
	0  -  Run Bytes Sent By Job
	0  -  Run Bytes Received By Job
...
012 (095.001.000) 2026-11-29 10:00:21 Job was held.
	Error from slot1_2@vm: out of memory
	Code 34 Subcode 0
...
001 (095.000.000) 2026-11-29 10:00:30 Job executing on host: <127.0.0.1:37229?alias=node2>
	SlotName: slot1_3@node2
...
013 (095.001.000) 2026-11-29 10:00:31 Job was released.
	via condor_release (by user root)
...
009 (095.001.000) 2026-11-29 10:00:40 Job was aborted.
	via condor_rm (by user root)
...
005 (095.000.000) 2026-11-29 10:01:00 Job terminated.
	(1) Normal termination (return value 0)
		Usr 0 00:00:08, Sys 0 00:00:00  -  Run Remote Usage
		Usr 0 00:00:00, Sys 0 00:00:00  -  Run Local Usage
		Usr 0 00:00:08, Sys 0 00:00:00  -  Total Remote Usage
		Usr 0 00:00:00, Sys 0 00:00:00  -  Total Local Usage
	0  -  Run Bytes Sent By Job
	0  -  Run Bytes Received By Job
	0  -  Total Bytes Sent By Job
	0  -  Total Bytes Received By Job
...
000 (095.002.000) 2026-11-29 10:00:00 Job submitted from host: <127.0.0.1:45819?alias=vm>
...
001 (095.002.000) 2026-11-29 10:00:06 Job executing on host: <127.0.0.1:37229?alias=node1>
	SlotName: slot1_2@node1
...
004 (095.002.000) 2026-11-29 10:00:50 Job was evicted.
	(0) Job was not checkpointed.
		Usr 0 00:00:00, Sys 0 00:00:00  -  Run Remote Usage
		Usr 0 00:00:00, Sys 0 00:00:00  -  Run Local Usage
	0  -  Run Bytes Sent By Job
	0  -  Run Bytes Received By Job
...
009 (095.002.000) 2026-11-29 10:00:50 Job was aborted.
	via condor_rm (by user root)
...
"""


def test_event_log_gives_attempts_evictions_waits_and_timeline(tmp_path):
    from hydra_plugins.hydra_htcondor_launcher.view import JobState

    (tmp_path / ".htcondor").mkdir()
    (tmp_path / ".htcondor" / "batch-4-6.log").write_text(EVENT_LOG)
    (tmp_path / ".htcondor" / "4.err").write_text("Traceback ...\nRuntimeError: worker lost its data\n")
    sweep = load_sweep(tmp_path)  # no multirun.yaml, no job folders: every job died before Hydra ran
    evicted, removed, removed_running = sweep.jobs
    assert (evicted.num, removed.num, removed_running.num) == (4, 5, 6)  # batch-4-6: proc p is job 4 + p
    cj = evicted.condor  # the launcher's view of the job (hydra_plugins.hydra_htcondor_launcher.view)
    assert cj is not None and cj.ids == ["95.0"]
    assert (cj.host, cj.starts, cj.evictions, cj.queue_wait_s) == ("slot1_3@node2", 2, 1, 5.0)
    t0 = cj.submitted
    assert t0 is not None
    assert [(seg.state.value, seg.start - t0, seg.end and seg.end - t0) for seg in cj.timeline] == [
        ("idle", 0, 5),
        ("running", 5, 20),
        ("idle", 20, 30),
        ("running", 30, 60),
        ("done", 60, 60),
    ]
    assert [t - t0 for t in cj.evicted_at] == [20]
    # Each run's slot, and the slot view: node1's partitionable slot ran jobs 4 and 6 at once (two rows),
    # job 4, evicted there, then ran on node2's; job 6 was removed while it ran (an eviction, then the abort).
    assert [seg.slot for seg in cj.timeline] == [None, "slot1_1@node1", None, "slot1_3@node2", None]
    assert [
        (row.label, [(run.num, run.slot, run.start - t0, (run.end or 0) - t0, run.then) for run in row.runs])
        for row in slot_rows(sweep)
    ] == [
        ("slot1@node1 #1", [(4, "slot1_1@node1", 5, 20, JobState.IDLE)]),
        ("slot1@node1 #2", [(6, "slot1_2@node1", 6, 50, JobState.REMOVED)]),
        ("slot1@node2", [(4, "slot1_3@node2", 30, 60, JobState.DONE)]),
    ]
    assert evicted.status == "failed"
    assert (
        evicted.error
        == "HTCondor job ended (exit code 0) without results; 4.err: RuntimeError: worker lost its data"
    )
    assert removed.status == "failed" and removed.condor is not None and removed.condor.starts == 0
    assert "removed (via condor_rm" in (removed.error or "") and "out of memory" in (removed.error or "")
    assert [seg.state.value for seg in removed.condor.timeline] == ["idle", "held", "idle", "removed"]
    # condor_rm of a running job logs an eviction first: that is no eviction of the job's own.
    assert removed_running.condor is not None and removed_running.condor.evictions == 0
    assert removed_running.condor.starts == 1 and removed_running.status == "failed"
    assert report_main([str(tmp_path)]) == 0
    assert len(read_summary(tmp_path)) == 3


DISCONNECT_LOG = """\
000 (096.000.000) 2026-11-29 10:00:00 Job submitted from host: <127.0.0.1:45819?alias=vm>
...
000 (096.001.000) 2026-11-29 10:00:00 Job submitted from host: <127.0.0.1:45819?alias=vm>
...
001 (096.000.000) 2026-11-29 10:00:05 Job executing on host: <127.0.0.1:37229?alias=node1>
	SlotName: slot1_1@node1
...
001 (096.001.000) 2026-11-29 10:00:05 Job executing on host: <127.0.0.1:37229?alias=node1>
	SlotName: slot1_2@node1
...
022 (096.000.000) 2026-11-29 10:00:20 Job disconnected, attempting to reconnect
    Socket between submit and execute hosts closed unexpectedly
    Trying to reconnect to slot1_1@node1 <127.0.0.1:37229?alias=node1>
...
022 (096.001.000) 2026-11-29 10:00:20 Job disconnected, attempting to reconnect
    Socket between submit and execute hosts closed unexpectedly
    Trying to reconnect to slot1_2@node1 <127.0.0.1:37229?alias=node1>
...
024 (096.001.000) 2026-11-29 10:01:20 Job reconnection failed
    Job disconnected too long: JobLeaseDuration (60 seconds) expired
    Can not reconnect to slot1_2@node1, rescheduling job
...
004 (096.001.000) 2026-11-29 10:01:30 Job was evicted.
	(0) CPU times
		Usr 0 00:00:00, Sys 0 00:00:00  -  Run Remote Usage
		Usr 0 00:00:00, Sys 0 00:00:00  -  Run Local Usage
	0  -  Run Bytes Sent By Job
	0  -  Run Bytes Received By Job
	Job disconnected too long: JobLeaseDuration (60 seconds) expired
...
001 (096.001.000) 2026-11-29 10:01:32 Job executing on host: <127.0.0.1:37231?alias=node1>
	SlotName: slot1_2@node1
...
"""


def test_event_log_shows_a_disconnected_job_and_one_requeued_after_its_lease(tmp_path):
    (tmp_path / ".htcondor").mkdir()
    (tmp_path / ".htcondor" / "batch-0-1.log").write_text(DISCONNECT_LOG)
    sweep = load_sweep(tmp_path)
    lost, requeued = sweep.jobs
    assert lost.status == "disconnected" and requeued.status == "running"
    assert lost.condor is not None and requeued.condor is not None
    assert [(seg.state.value, seg.end is None) for seg in lost.condor.timeline] == [
        ("idle", False),
        ("running", False),
        ("disconnected", True),  # still waiting for its machine
    ]
    assert [seg.state.value for seg in requeued.condor.timeline] == [
        "idle",
        "running",
        "disconnected",
        "idle",
        "running",
    ]
    assert len(requeued.condor.evicted_at) == 1
    assert (requeued.condor.starts, requeued.condor.evictions) == (2, 1)
    assert sweep.counts()["disconnected"] == 1
    assert report_main([str(tmp_path)]) == 0
    assert [row["status"] for row in read_summary(tmp_path)] == ["disconnected", "running"]


# --- on the local HTCondor pool ---


@pytest.mark.condor
@pytest.mark.slow
def test_pool_sweep_with_a_failing_job(tmp_path):
    # lr=-1 passes the command-line checks (a float) and fails inside the job (torch's optimizer refuses it).
    proc = run_app(tmp_path, "-m", "launcher=htcondor_cpu", "model.lr=0.5,1.0,-1.0", *QUICK)
    assert proc.returncode != 0
    output = proc.stdout + proc.stderr
    sweep_dir = only_sweep_dir(tmp_path)
    rows = read_summary(sweep_dir)
    assert [r["job"] for r in rows] == ["0", "1", "2"]
    assert [r["status"] for r in rows] == ["done", "done", "failed"]
    failed = rows[2]
    assert "Invalid learning rate" in failed["error"] and failed["optimized_metric"] == ""
    check_rows_match_metrics(sweep_dir, rows)
    for row in rows:  # from the launcher's event log
        assert row["host"] and int(row["attempts"]) == 1 and row["evictions"] == "0"
        assert float(row["queue_wait_s"]) >= 0
    check_log_sorted(output, rows)
    # Four plots: metric against model.lr, validation curves, the HTCondor timeline by job and by slot.
    check_in_browser(sweep_dir, tmp_path, n_jobs=3, n_images=4)


# Any Hydra app with the report's callback: its task fills its job folder's filesystem, then fails as torch's
# checkpoint writer does, with an error that does not say the disk is full.
FILLING_APP = """
import os

import hydra
from hydra.core.hydra_config import HydraConfig


@hydra.main(version_base=None, config_path=None)
def main(cfg):
    try:
        with open(os.path.join(HydraConfig.get().runtime.output_dir, "filler.bin"), "wb") as f:
            while True:
                f.write(bytes(65536))
                f.flush()
    except OSError:
        pass
    raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 88832 vs 88784")


if __name__ == "__main__":
    main()
"""


@pytest.mark.condor
def test_pool_sweep_on_a_full_disk_names_it_in_the_error_column(tmp_path, tmpfs):
    """The job folder is a full 2 MiB tmpfs (so the callback cannot write job_status.json there): the console
    and the report's error column say "no space left on device" and where, not only torch's words."""
    sweep = tmp_path / "sweep"
    tmpfs(sweep / "0", "2m")
    (tmp_path / "app.py").write_text(FILLING_APP)
    proc = subprocess.run(
        [
            sys.executable,
            "app.py",
            "-m",
            "hydra/launcher=htcondor",
            "+x=1",
            f"hydra.sweep.dir={sweep}",
            "hydra.launcher.request_memory=256MB",
            "+hydra.callbacks.report._target_=mnist_app.report.hydra_callback.SweepReport",
        ],
        cwd=tmp_path,
        env=app_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0, output
    where = f"no space left on device: {sweep}/0 is on tmpfs {sweep}/0: 0 bytes free of 2.0 MiB"
    assert f"DiskFullError: {where}; RuntimeError: [enforce fail at inline_container.cc:672]" in output
    [row] = read_summary(sweep)
    assert row["status"] == "failed" and where in row["error"], row
    assert where in (load_sweep(sweep).jobs[0].error or "")


# The plots of an Optuna search on the pool: the history, metric vs params, validation curves, the HTCondor
# timeline by job and by slot.
OPTUNA_POOL_PLOTS = (
    "optimisation history",
    "metric vs params",
    "validation curves",
    "HTCondor timeline",
    "HTCondor slots",
)
# The longest a slot freed by a pruned trial may wait for the next trial's job to be submitted (the event
# logs count whole seconds).
REFILL_S = 3


@pytest.mark.condor
@pytest.mark.slow
@pytest.mark.shares("pool_optuna_sweep")
def test_optuna_search_on_the_pool_marks_the_best_trial(pool_optuna_sweep, tmp_path):
    sweep_dir = pool_optuna_sweep
    results = yaml.safe_load((sweep_dir / "optimization_results.yaml").read_text())
    sweep = load_sweep(sweep_dir)
    assert sweep.metric == "val/acc" and sweep.maximize and len(sweep.jobs) == POOL_SEARCH_TRIALS
    best = sweep.best()
    assert best is not None
    assert best.metric("val/acc") == pytest.approx(results["best_value"])
    for key, value in results["best_params"].items():
        assert (
            best.params[key] == pytest.approx(value)
            if isinstance(value, float)
            else best.params[key] == value
        )
    rows = read_summary(sweep_dir)
    assert [r["optuna_trial"] for r in rows] == [str(n) for n in range(POOL_SEARCH_TRIALS)]
    html = (sweep_dir / "report.html").read_text()
    assert f"best trial {best.num} (job {best.num})" in html
    assert re.search(rf"<tr class='best' data-job='{best.num}'>", html)
    seen = check_in_browser(sweep_dir, tmp_path, n_jobs=POOL_SEARCH_TRIALS, n_images=len(OPTUNA_POOL_PLOTS))
    assert sorted(seen["alts"]) == sorted(OPTUNA_POOL_PLOTS), seen


def _journal_study(sweep_dir: Path) -> Any:
    """The sweep's study, read with Optuna's own API from the journal the sweeper writes."""
    import optuna
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    storage = JournalStorage(JournalFileBackend(str(sweep_dir / "optuna_journal.log")))
    return optuna.load_study(study_name="mnist_app", storage=storage)  # hparams_search/optuna's name


@pytest.mark.condor
@pytest.mark.slow
@pytest.mark.shares("pool_optuna_sweep")
def test_optuna_search_on_the_pool_prunes_and_the_report_shows_it(pool_optuna_sweep, tmp_path):
    """hparams_search=optuna on the pool with a pruner (issue 22): each trial's intermediate values are its
    job's val/acc per epoch; a diverging trial is PRUNED, its HTCondor job removed with the reason and its
    slot refilled; the study reaches n_trials; summary.csv and report.html (in a real browser) show the
    pruned state apart from failures, and the optimisation history."""
    import htcondor2
    from hydra_plugins.hydra_htcondor_launcher.view import JobState, read_sweep
    from optuna.trial import TrialState

    from mnist_app.report.collect import slot_rows

    sweep_dir = pool_optuna_sweep
    trials = _journal_study(sweep_dir).get_trials()
    assert [t.number for t in trials] == list(range(POOL_SEARCH_TRIALS))  # n_trials reached
    assert {t.params["model.lr"] for t in trials} == set(POOL_SEARCH_LR), "the test needs both lr values"
    sweep = load_sweep(sweep_dir)
    jobs = {job.num: job for job in sweep.jobs}
    view = read_sweep(str(sweep_dir))
    manifest = json.loads((sweep_dir / ".htcondor" / "manifest.json").read_text())
    schedd_status = {
        int(ad["HydraJobNum"]): int(ad["JobStatus"])
        for ad in htcondor2.Schedd().history(
            f'HydraSweepId == "{manifest["sweep_id"]}"', ["HydraJobNum", "JobStatus"], match=-1
        )
    }
    rows = {int(r["job"]): r for r in read_summary(sweep_dir)}
    pruned = [t for t in trials if t.params["model.lr"] == max(POOL_SEARCH_LR)]
    for t in trials:
        job, row = jobs[t.number], rows[t.number]
        curve = dict(job.val_curve)  # the job's own val/acc per epoch (Lightning's CSV log)
        if t in pruned:
            assert t.state == TrialState.PRUNED, (t.number, t.state)
            # Pruned at its first report (step 1: epochs trained), its value the job's val/acc there
            # (Lightning's CSV counts epochs from 0).
            assert list(t.intermediate_values) == [1] and t.intermediate_values[1] < PRUNE_BELOW
            assert t.intermediate_values[1] == curve[0]
            # Removed from HTCondor by the sweeper, with the reason.
            assert schedd_status[t.number] == 3  # REMOVED
            record = view.jobs[t.number].record
            assert record.state is JobState.REMOVED and record.abort_reason == "pruned at epoch 1"
            # The report: pruned with its step and value, not a failure.
            assert job.status == "pruned" and job.error is None
            assert (row["status"], row["optuna_state"], row["pruned_at_step"]) == ("pruned", "PRUNED", "1")
            assert float(row["last_reported_value"]) == t.intermediate_values[1] and row["error"] == ""
        else:
            assert t.state == TrialState.COMPLETE, (t.number, t.state)
            assert t.intermediate_values == {e + 1: v for e, v in curve.items()}
            assert sorted(curve) == list(range(POOL_SEARCH_EPOCHS))
            metrics = json.loads((job.job_dir / "metrics.json").read_text())
            assert t.value == metrics["val/acc"] == curve[POOL_SEARCH_EPOCHS - 1]
            assert schedd_status[t.number] == 4  # COMPLETED
            assert (row["status"], row["optuna_state"], row["pruned_at_step"]) == ("done", "COMPLETE", "")
    # Each pruned trial's slot refilled: the next job submitted after the sweeper pruned it (when trials
    # were left to ask) came right away.
    refilled = 0
    for t in pruned:
        assert t.datetime_complete is not None
        when = t.datetime_complete.timestamp()
        later = sorted(j.submitted for j in view.jobs.values() if j.submitted and j.submitted >= int(when))
        if later:
            assert later[0] - when <= REFILL_S, (t.number, when, later)
            refilled += 1
    assert refilled, "no pruned trial was followed by another: the test needs one"
    # The slot view holds every job's run once, on the pool's one partitionable slot.
    runs = sorted(run.num for row in slot_rows(sweep) for run in row.runs)
    assert runs == list(range(POOL_SEARCH_TRIALS))

    # The browser shows the trial state of each job, pruned rows apart from failed ones.
    seen = check_in_browser(sweep_dir, tmp_path, n_jobs=POOL_SEARCH_TRIALS, n_images=len(OPTUNA_POOL_PLOTS))
    header = seen["header"]
    shown = {int(cells[1]): cells for cells in seen["cells"]}
    for t in trials:
        cells = shown[t.number]
        if t in pruned:
            assert cells[header.index("status")] == "pruned"
            assert cells[header.index("trial")] == f"PRUNED at step 1 ({t.intermediate_values[1]:.4g})"
            assert seen["classes"][str(t.number)] == "pruned"
        else:
            assert cells[header.index("trial")] == f"COMPLETE ({t.value:.4g})"
    assert "optimisation history" in seen["alts"]
    html = (sweep_dir / "report.html").read_text()
    assert f"Optuna optimisation history ({sweep.metric})" in html
    assert f"{len(pruned)} pruned" in html  # the counts line


# Any Hydra app: what job x does (ok, sleep, or fail when unsaid) is in a file the test writes, so a re-run
# of the same command line can change it.
RESUBMIT_APP = """
import os
import time

import hydra


@hydra.main(version_base=None, config_path=None)
def main(cfg):
    told = os.path.join(str(cfg.marks), str(cfg.x))
    what = open(told).read() if os.path.exists(told) else "fail"
    if what == "sleep":
        time.sleep(600)
    elif what != "ok":
        raise ValueError(f"job {cfg.x} fails until told otherwise")
    return f"ok:{cfg.x}"


if __name__ == "__main__":
    main()
"""
HYDRA_HTCONDOR = Path(sys.executable).parent / "hydra-htcondor"


def status_rows(sweep_dir: Path) -> dict[int, tuple[str, str]]:
    """`hydra-htcondor status SWEEP_DIR` (the command line): job number -> (HTCondor id, state)."""
    proc = subprocess.run(
        [str(HYDRA_HTCONDOR), "status", str(sweep_dir)], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode in (0, 1, 3) and "Traceback" not in proc.stderr, proc.stderr
    rows = {}
    for line in proc.stdout.splitlines():
        cells = line.split()
        if len(cells) > 2 and re.fullmatch(r"#\d+", cells[0]) and re.fullmatch(r"\d+\.\d+|-", cells[1]):
            rows[int(cells[0][1:])] = (cells[1], cells[2])  # a table row (not a `#N -> value` line)
    return rows


def wait_for_states(sweep_dir: Path, states: dict[int, str], timeout: float = 180) -> dict[int, str]:
    """Poll `hydra-htcondor status` until the jobs are in `states`; their HTCondor ids."""
    deadline = time.monotonic() + timeout
    while True:
        rows = status_rows(sweep_dir)
        if {num: state for num, (_, state) in rows.items()} == states:
            return {num: htcondor_id for num, (htcondor_id, _) in rows.items()}
        if time.monotonic() > deadline:
            pytest.fail(f"the jobs never reached {states}: status says {rows}")
        time.sleep(0.5)


def check_same_states(sweep_dir: Path, out_dir: Path, states: dict[int, str]) -> list[dict[str, str]]:
    """`hydra-htcondor status`, the report's summary.csv and its report.html in a real browser give every
    job the same state (the report's words for the launcher's: STATUS_OF); the summary's rows."""
    from hydra_plugins.hydra_htcondor_launcher.view import JobState

    assert {num: state for num, (_, state) in status_rows(sweep_dir).items()} == states
    expected = {str(num): STATUS_OF[JobState(state)] for num, state in states.items()}
    built = subprocess.run(
        [sys.executable, "-m", "mnist_app.report", str(sweep_dir)],
        env=app_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert built.returncode == 0, built.stderr[-3000:]
    rows = read_summary(sweep_dir)
    assert {row["job"]: row["status"] for row in rows} == expected
    out_dir.mkdir()
    seen = open_in_browser(sweep_dir / "report.html", out_dir)
    column = seen["header"].index("status")
    assert {cells[1]: cells[column] for cells in seen["cells"]} == expected, seen
    return rows


@pytest.mark.condor
def test_a_resubmitted_job_has_the_same_state_in_status_summary_and_report(tmp_path):
    """A re-run submits three failed jobs of four again as one cluster appended to the first run's event
    log (batch-0-3.log): its procs 0, 1, 2 are jobs 0, 2 and 3. `hydra-htcondor status`, summary.csv and
    report.html agree on every job's state while one resubmitted job runs, and after it is removed."""
    sweep, marks = tmp_path / "sweep", tmp_path / "marks"
    marks.mkdir()
    (marks / "b").write_text("ok")
    (tmp_path / "app.py").write_text(RESUBMIT_APP)
    cmd = [
        sys.executable,
        "app.py",
        "-m",
        "hydra/launcher=htcondor",
        "+x=a,b,c,d",
        f"+marks={marks}",
        f"hydra.sweep.dir={sweep}",
        "hydra.launcher.request_memory=256MB",
        "hydra.launcher.poll_interval=0.2",
        "+hydra.callbacks.report._target_=mnist_app.report.hydra_callback.SweepReport",
    ]
    env = app_env()
    first = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert first.returncode != 0 and "job a fails until told otherwise" in first.stderr, first.stderr[-3000:]
    before = wait_for_states(sweep, {0: "failed", 1: "done", 2: "failed", 3: "failed"}, timeout=10)
    logs = sorted(p.name for p in (sweep / ".htcondor").glob("*.log"))

    (marks / "a").write_text("ok")
    (marks / "c").write_text("sleep")
    detach = [*cmd, "hydra.launcher.detach=true"]
    rerun = subprocess.run(detach, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    out = rerun.stdout + rerun.stderr
    assert rerun.returncode == 0 and "resuming sweep: 1 reused, 0 re-attached, 3 resubmitted" in out, out
    assert sorted(p.name for p in (sweep / ".htcondor").glob("*.log")) == logs  # appended, no new log
    running = {0: "done", 1: "done", 2: "running", 3: "failed"}
    ids = wait_for_states(sweep, running)
    second = ids[0].split(".")[0]
    assert ids == {0: f"{second}.0", 1: before[1], 2: f"{second}.1", 3: f"{second}.2"}
    check_same_states(sweep, tmp_path / "running", running)

    removed = subprocess.run(
        [str(HYDRA_HTCONDOR), "rm", str(sweep)], capture_output=True, text=True, timeout=120
    )
    assert removed.returncode == 0 and f"{second}.1" in removed.stdout, removed.stderr
    final = {**running, 2: "removed"}
    wait_for_states(sweep, final)
    rows = check_same_states(sweep, tmp_path / "final", final)
    # The error of each failed job is its latest submission's: job 2's first run's is stale.
    errors = {row["job"]: row["error"] for row in rows}
    assert errors["2"].startswith("removed (") and "job d fails until told otherwise" in errors["3"], errors
    from hydra_plugins.hydra_htcondor_launcher.view import read_sweep

    view = read_sweep(str(sweep))
    assert view.jobs[2].ids == [before[2], f"{second}.1"] and view.jobs[1].ids == [before[1]]
    assert [len(job.attempts) for job in view.jobs.values()] == [2, 1, 2, 2]
