"""Streaming vs batches: the same Optuna search on the HTCondor pool, run both ways one after the other.

    eval "$(scripts/condor-pool env)"     # a pool with at least --jobs free CPU slots
    python benchmarks/bench_sweeper.py --trials 24 --jobs 4

The search is the sweeper tests' synthetic objective (sweepers/tests/app) whose run time depends on its
parameter (sleep_s + sleep_per_x * x, x in [0, 5]: uneven run times). "batch" is the same sweeper with its
streaming interface hidden, so it runs hydra-optuna-sweeper's way: n_jobs trials through the launcher's
launch(), the next batch when the slowest one ended. Utilisation = busy slot-seconds (each job's execute to
its end, from the event logs) / (n_jobs x the span from the first submission to the last end).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import htcondor2
import optuna
from hydra_plugins.hydra_htcondor_launcher._layout import SweepLayout
from optuna.storages.journal import JournalFileBackend, JournalStorage

ROOT = Path(__file__).resolve().parents[1]
APP = ROOT / "sweepers" / "tests" / "app" / "objective.py"
# Runs the app with the sweeper's streaming module out of reach: the sweeper falls back to batches.
AS_BATCHES = (
    "import runpy, sys\n"
    "import hydra_plugins.hydra_optuna_stream_sweeper._runners as r\n"
    "r.STREAMING_MODULE = 'hydra_plugins.no_such_module'\n"
    "sys.argv = sys.argv[1:]\n"
    "runpy.run_path(sys.argv[0], run_name='__main__')\n"
)


@dataclass(frozen=True)
class JobTimes:
    """One job's times from its event log (whole seconds): execute is None for a job removed before it
    ran; end is its termination or its removal (a pruned trial's job)."""

    num: int  # its Hydra job number
    submit: int
    execute: int | None
    end: int | None

    @property
    def busy(self) -> int:
        """Slot-seconds: execute to end (0 for a job that never ran)."""
        return 0 if self.execute is None or self.end is None else self.end - self.execute


def job_times(sweep: Path) -> list[JobTimes]:
    """Every job of a sweep folder's batch event logs (streaming: a cluster per job, a log per cluster)."""
    ends = (htcondor2.JobEventType.JOB_TERMINATED, htcondor2.JobEventType.JOB_ABORTED)
    jobs = []
    for first, _last, path in SweepLayout(str(sweep)).batch_logs():
        times: dict[int, dict[htcondor2.JobEventType, int]] = {}
        for event in htcondor2.JobEventLog(path).events(stop_after=0):
            times.setdefault(event.proc, {}).setdefault(event.type, event.timestamp)
        for proc, job in times.items():  # a batch's procs are its jobs in order
            end = min((job[kind] for kind in ends if kind in job), default=None)
            execute = job.get(htcondor2.JobEventType.EXECUTE)
            jobs.append(JobTimes(first + proc, job[htcondor2.JobEventType.SUBMIT], execute, end))
    return jobs


def run(mode: str, folder: Path, args: argparse.Namespace) -> dict[str, float]:
    sweep = folder / mode
    argv = [
        str(APP),
        "-m",
        "hydra/sweeper=optuna_stream",
        "hydra/launcher=htcondor",
        "hydra.launcher.request_memory=256MB",
        "hydra.launcher.poll_interval=0.2",
        f"hydra.sweep.dir={sweep}",
        "x=interval(0, 5)",
        f"sleep_s={args.min_s}",
        f"sleep_per_x={(args.max_s - args.min_s) / 5}",
        f"hydra.sweeper.n_trials={args.trials}",
        f"hydra.sweeper.n_jobs={args.jobs}",
        f"hydra.sweeper.sampler.seed={args.seed}",
    ]
    cmd = [sys.executable, "-c", AS_BATCHES, *argv] if mode == "batch" else [sys.executable, *argv]
    began = time.monotonic()
    done = subprocess.run(cmd, cwd=folder, capture_output=True, text=True, check=False)
    wall = time.monotonic() - began
    if done.returncode != 0:
        raise SystemExit(f"{mode}: exit {done.returncode}\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    said_batches = "no streaming interface" in done.stdout
    assert said_batches == (mode == "batch"), f"{mode}: the sweeper ran the other way"
    jobs = job_times(sweep)
    submit = [j.submit for j in jobs]
    end = [j.end for j in jobs if j.end is not None]
    span = max(end) - min(submit)
    busy = sum(j.busy for j in jobs)
    # A slot's wait for its next job: each submission after the first n_jobs against the earliest end not
    # yet matched (streaming: the end that freed it; batches: the slowest of the batch comes later).
    refill = [s - e for s, e in zip(sorted(submit)[args.jobs :], sorted(end), strict=False)]
    # HTCondor: submitted -> executing
    dispatch = [j.execute - j.submit for j in jobs if j.execute is not None]
    storage = JournalStorage(JournalFileBackend(str(sweep / "optuna_journal.log")))
    best = optuna.load_study(study_name="objective", storage=storage).best_value
    return {
        "wall": wall,
        "span": span,
        "busy": busy,
        "util": busy / (args.jobs * span),
        "best": best,
        "refill": statistics.mean(refill),
        "dispatch": statistics.median(dispatch),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=24)
    parser.add_argument("--jobs", type=int, default=4)
    parser.add_argument("--min-s", type=float, default=2.0, help="shortest trial (x = 0)")
    parser.add_argument("--max-s", type=float, default=20.0, help="longest trial (x = 5)")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        rows = {mode: run(mode, Path(tmp), args) for mode in ("batch", "stream")}
    print(f"{args.trials} trials, n_jobs={args.jobs}, trial run time {args.min_s:g}-{args.max_s:g} s\n")
    print(
        "| sweeper | wall s | span s (event logs) | busy slot-s | slot utilisation | best value "
        "| mean slot wait: end -> next submit s | median submit -> execute s |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for mode, r in rows.items():
        cells = [f"{r['wall']:.1f}", f"{r['span']:.0f}", f"{r['busy']:.0f}", f"{r['util']:.0%}"]
        cells += [f"{r['best']:.4f}", f"{r['refill']:.1f}", f"{r['dispatch']:.0f}"]
        print(f"| {mode} | {' | '.join(cells)} |")
    b, s = rows["batch"], rows["stream"]
    print(f"\nstream / batch: wall {s['wall'] / b['wall']:.2f}x, span {s['span'] / b['span']:.2f}x")


if __name__ == "__main__":
    main()
