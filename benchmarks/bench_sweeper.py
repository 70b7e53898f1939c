"""Hydra's Optuna sweeper vs the streaming one: the same search on the HTCondor pool, one after the other.

    CONDOR_POOL_CPUS=4 scripts/condor-pool start; eval "$(scripts/condor-pool env)"
    .venv/bin/python benchmarks/bench_sweeper.py            # ~5 min: baseline, stream, stream + 1 queued

The search is the sweeper tests' synthetic objective (sweepers/tests/app/objective.py), whose run time
depends on its parameter (min_s + (max_s - min_s) * x / 5 s, x in [0, 5]: uneven run times), 24 trials,
n_jobs=4, on a pool of exactly --jobs CPU slots. The rows run sequentially, in this order:

- baseline: hydra-optuna-sweeper 1.3.0 (`hydra/sweeper=optuna`, Optuna 2.10) with our launcher, run by the
  second environment's interpreter (.venv-optuna2): n_jobs trials per batch, the next batch when the slowest
  one ended;
- batches (only with --rows ...,batches): optuna_stream with its streaming interface hidden, so it runs
  batches like the baseline: separates streaming's gain from the samplers' differences;
- stream: optuna_stream as it is (a job per trial, submitted when a trial ends);
- ahead: optuna_stream with n_jobs = slots + 1: one trial's job always idle in the queue, so the schedd
  hands a slot freed by an ending job straight to it (claim reuse), without a negotiation cycle.

Utilisation = busy slot-seconds (each job's execute to its end, from the event logs, read through the
launcher's view.read_sweep) / available slot-seconds (slots x the span from the first submission to the last
end). The idle slot-seconds are split by what each slot waited for (see `decompose`). Event logs count whole
seconds; the job's own start-up and wrap-up come from its files' times (.hydra/config.yaml written when the
task starts, the result file when it returned).
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import htcondor2
from hydra_plugins.hydra_htcondor_launcher.view import read_sweep
from omegaconf import OmegaConf

ROOT = Path(__file__).resolve().parents[1]
APP = ROOT / "sweepers" / "tests" / "app" / "objective.py"
BASELINE_PYTHON = ROOT / ".venv-optuna2" / "bin" / "python"
BASELINE_VERSION = "1.3.0"
STREAM_MODULE = "hydra_plugins.hydra_optuna_stream_sweeper"
ROWS = ("baseline", "batches", "stream", "ahead")
# Runs the app with the sweeper's streaming module out of reach: optuna_stream falls back to batches.
AS_BATCHES = (
    "import runpy, sys\n"
    "import hydra_plugins.hydra_optuna_stream_sweeper._runners as r\n"
    "r.STREAMING_MODULE = 'hydra_plugins.no_such_module'\n"
    "sys.argv = sys.argv[1:]\n"
    "runpy.run_path(sys.argv[0], run_name='__main__')\n"
)
LABELS = {
    "baseline": "hydra-optuna-sweeper 1.3.0 (batches)",
    "batches": "optuna_stream, streaming hidden (batches)",
    "stream": "optuna_stream",
    "ahead": "optuna_stream, n_jobs = slots + 1",
}


def refuse(why: str) -> NoReturn:
    raise SystemExit(f"bench_sweeper: {why}")


def check_interpreters(baseline: Path) -> str:
    """Refuse in one line unless the baseline runs hydra-optuna-sweeper 1.3.0 with our launcher and this
    interpreter has optuna_stream. Returns the baseline's Optuna version."""
    probe = (
        "import importlib.metadata as m\n"
        "import hydra_plugins.hydra_htcondor_launcher, hydra_plugins.hydra_optuna_sweeper\n"
        "print(m.version('hydra-optuna-sweeper'), m.version('optuna'))"
    )
    try:
        done = subprocess.run([str(baseline), "-c", probe], capture_output=True, text=True, check=False)
    except OSError as err:
        refuse(f"--baseline-python {baseline}: {err.strerror}; accepted: the optuna2 env (make venv-optuna2)")
    versions = done.stdout.split()
    if done.returncode != 0 or not versions or versions[0] != BASELINE_VERSION:
        said = (done.stderr.strip().splitlines() or versions or ["?"])[-1]
        refuse(
            f"--baseline-python {baseline} does not import hydra-optuna-sweeper {BASELINE_VERSION} with the "
            f"HTCondor launcher ({said}); accepted: the optuna2 env (make venv-optuna2)"
        )
    if importlib.util.find_spec(STREAM_MODULE) is None:
        refuse(f"{sys.executable} lacks {STREAM_MODULE} (optuna_stream); run it with .venv/bin/python")
    return versions[1]


def pool_slots() -> int:
    """CPUs the pool's startds offer (partitionable or static slots; dynamic ones are carved from those)."""
    wanted = ["SlotType", "TotalSlotCpus", "Cpus"]
    ads = htcondor2.Collector().query(htcondor2.AdTypes.Startd, projection=wanted)
    parents = [ad for ad in ads if ad.get("SlotType") != "Dynamic"]
    return sum(int(ad.get("TotalSlotCpus", ad.get("Cpus", 0))) for ad in parents)


def _events(log: Path) -> dict[str, int]:
    first: dict[str, int] = {}
    for event in htcondor2.JobEventLog(str(log)).events(stop_after=0):
        first.setdefault(event.type.name, event.timestamp)
    return first


def _await(log: Path, kind: str, timeout_s: float = 120.0) -> dict[str, int]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if log.exists() and kind in (times := _events(log)):
            return times
        time.sleep(0.1)
    refuse(f"the claim-reuse probe's job ({log.name}) saw no {kind} in {timeout_s:g} s: is the pool idle?")


def probe_claim_reuse(folder: Path, slots: int) -> tuple[int, int]:
    """When a job ends, the schedd reuses its claim for an idle job of the same user that fits; without one it
    releases the claim and the next job waits for a negotiation cycle. Job A takes every slot; B queued
    before A ends vs submitted right after A's end: seconds from A's end to B's execute, each way."""
    schedd = htcondor2.Schedd()

    def submit(seconds: int, log: Path) -> None:
        desc = {"executable": "/bin/sleep", "arguments": str(seconds), "request_cpus": str(slots)}
        desc |= {"request_memory": "64MB", "log": str(log), "should_transfer_files": "NO"}
        schedd.submit(htcondor2.Submit(desc))

    gaps = []
    for ahead in (True, False):
        a, b = folder / f"probe-a-{ahead}.log", folder / f"probe-b-{ahead}.log"
        submit(4, a)
        _await(a, "EXECUTE")
        if ahead:
            submit(1, b)
        a_end = _await(a, "JOB_TERMINATED")["JOB_TERMINATED"]
        if not ahead:
            submit(1, b)
        gaps.append(_await(b, "EXECUTE")["EXECUTE"] - a_end)
        _await(b, "JOB_TERMINATED")
    return gaps[0], gaps[1]


@dataclass
class Job:
    submitted: float
    started: float
    ended: float
    task_start: float  # .hydra/config.yaml written (the task is about to run)
    task_end: float  # the result file written (the task returned)


@dataclass
class Row:
    wall: float
    n_jobs: int
    jobs: list[Job]
    clusters: int
    best: float


def run_row(key: str, folder: Path, args: argparse.Namespace) -> Row:
    sweep = folder / key
    n_jobs = args.jobs + 1 if key == "ahead" else args.jobs
    argv = [
        str(APP),
        "-m",
        "hydra/sweeper=optuna" if key == "baseline" else "hydra/sweeper=optuna_stream",
        "hydra/launcher=htcondor",
        "hydra.launcher.request_memory=256MB",
        f"hydra.launcher.poll_interval={args.poll}",
        f"hydra.sweep.dir={sweep}",
        "x=interval(0, 5)",
        f"sleep_s={args.min_s}",
        f"sleep_per_x={(args.max_s - args.min_s) / 5}",
        f"hydra.sweeper.n_trials={args.trials}",
        f"hydra.sweeper.n_jobs={n_jobs}",
        f"hydra.sweeper.sampler.seed={args.seed}",
    ]
    python = str(args.baseline_python) if key == "baseline" else sys.executable
    cmd = [python, "-c", AS_BATCHES, *argv] if key == "batches" else [python, *argv]
    began = time.monotonic()
    done = subprocess.run(cmd, cwd=folder, capture_output=True, text=True, check=False)
    wall = time.monotonic() - began
    if done.returncode != 0:
        refuse(f"{key}: exit {done.returncode}\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    view = read_sweep(str(sweep))
    jobs = []
    for job in view.jobs.values():
        assert job.submitted is not None and job.started is not None and job.ended is not None, job.num
        task_start = (sweep / str(job.num) / ".hydra" / "config.yaml").stat().st_mtime
        task_end = Path(job.paths.result).stat().st_mtime
        jobs.append(Job(job.submitted, job.started, job.ended, task_start, task_end))
    clusters = len({a.cluster for job in view.jobs.values() for a in job.attempts})
    if len(jobs) != args.trials:
        refuse(f"{key}: {len(jobs)} jobs for {args.trials} trials")
    said_batches = "no streaming interface" in done.stdout + done.stderr  # optuna_stream's one line
    if key != "baseline" and said_batches != (key == "batches"):
        refuse(f"{key}: the sweeper ran the other way ({clusters} clusters)")
    best = float(OmegaConf.load(sweep / "optimization_results.yaml").best_value)
    return Row(wall, n_jobs, jobs, clusters, best)


def decompose(jobs: list[Job], slots: int) -> dict[str, float]:
    """Slot-seconds from the first submission (t0) to the last end (t1), split exactly:

    slots x (t1 - t0) = busy + first dispatch + sum over refills (wait for a submission + HTCondor) + tail.

    The k-th job to start (k > slots) took the slot freed by the (k - slots)-th end (with `slots` slots,
    that many jobs had ended before it started). Its gap, that end -> its execute, is split into the wait
    for a submission (end -> submit: a batch's slowest trial, then the sweeper's reaction to the last end it
    waited for) and HTCondor's part (from the later of end and submit to execute: negotiation, the claim,
    shadow and starter; ~0 when a queued job reuses the claim). First dispatch: the first jobs' t0 ->
    execute; tail: each slot's last end -> t1 (fewer trials left than slots)."""
    t0 = min(j.submitted for j in jobs)
    t1 = max(j.ended for j in jobs)
    by_start = sorted(jobs, key=lambda j: j.started)
    ends = sorted(j.ended for j in jobs)
    out = dict.fromkeys(("batch", "reaction", "htcondor"), 0.0)
    reactions, htc = [], []
    for job, freed in zip(by_start[slots:], ends, strict=False):
        waited = max(0.0, job.submitted - freed)
        # The sweeper's own reaction: from the last end before this submission to the submission.
        last_end = max((e for e in ends if e <= job.submitted), default=job.submitted)
        reaction = min(waited, job.submitted - last_end)
        out["batch"] += waited - reaction
        out["reaction"] += reaction
        out["htcondor"] += job.started - max(freed, job.submitted)
        reactions.append(reaction)
        htc.append(job.started - max(freed, job.submitted))
    out["first"] = sum(j.started - t0 for j in by_start[:slots])
    out["tail"] = sum(t1 - e for e in ends[-slots:])
    out["busy"] = sum(j.ended - j.started for j in jobs)
    out["available"] = slots * (t1 - t0)
    out["span"] = t1 - t0
    out["overhead"] = sum((j.task_start - j.started) + (j.ended - j.task_end) for j in jobs)
    out["per_reaction"] = statistics.mean(reactions)
    out["per_htcondor"] = statistics.mean(htc)
    gaps = out["first"] + out["batch"] + out["reaction"] + out["htcondor"] + out["tail"]
    assert abs(out["busy"] + gaps - out["available"]) < 1e-6, (out, gaps)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=24)
    parser.add_argument("--jobs", type=int, default=4, help="n_jobs, and the pool's CPU slots")
    parser.add_argument("--min-s", type=float, default=2.0, help="shortest trial (x = 0)")
    parser.add_argument("--max-s", type=float, default=20.0, help="longest trial (x = 5)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--poll", type=float, default=0.5, help="hydra.launcher.poll_interval (its default)")
    parser.add_argument("--rows", default="baseline,stream,ahead", help=f"comma-separated: {','.join(ROWS)}")
    parser.add_argument("--baseline-python", type=Path, default=BASELINE_PYTHON)
    args = parser.parse_args()
    keys = args.rows.split(",")
    if "baseline" not in keys or not set(keys) <= set(ROWS):
        refuse(f"--rows {args.rows}: accepted: baseline and any of {', '.join(ROWS[1:])}, comma-separated")
    optuna2 = check_interpreters(args.baseline_python)
    slots = pool_slots()
    if slots != args.jobs:
        refuse(
            f"the pool offers {slots} CPU slots; accepted: exactly --jobs={args.jobs} "
            f"(CONDOR_POOL_CPUS={args.jobs} scripts/condor-pool start)"
        )
    rows: dict[str, Row] = {}
    with tempfile.TemporaryDirectory() as tmp:
        ahead, after = probe_claim_reuse(Path(tmp), slots)
        for key in sorted(keys, key=ROWS.index):
            rows[key] = run_row(key, Path(tmp), args)
    parts = {key: decompose(row.jobs, slots) for key, row in rows.items()}
    print(
        f"{args.trials} trials, trial run time {args.min_s:g}-{args.max_s:g} s, {slots} CPU slots, "
        f"poll_interval {args.poll:g} s; baseline Optuna {optuna2}; rows run sequentially in this order\n"
    )
    print(
        f"claim reuse (probe): a job queued before the slot's job ended executed {ahead} s after that end; "
        f"one submitted just after the end, {after} s after it\n"
    )
    print(
        "| sweeper | n_jobs | wall s | span s | busy slot-s | available slot-s | slot utilisation "
        "| best value | wall / baseline | utilisation / baseline |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    base, base_util = rows["baseline"], parts["baseline"]["busy"] / parts["baseline"]["available"]
    for key, row in rows.items():
        p = parts[key]
        util = p["busy"] / p["available"]
        cells = [LABELS[key], str(row.n_jobs), f"{row.wall:.1f}", f"{p['span']:.0f}", f"{p['busy']:.0f}"]
        cells += [f"{p['available']:.0f}", f"{util:.0%}", f"{row.best:.4f}", f"{row.wall / base.wall:.2f}x"]
        cells += [f"{util / base_util:.2f}x"]
        print(f"| {' | '.join(cells)} |")
    print(
        "\nWhere the idle slot-seconds went (slot-s; per refill: mean s per job after the first slots')\n\n"
        "| sweeper | idle | first dispatch | waiting for a batch's slowest "
        "| sweeper reaction: end -> submit | HTCondor: submit (or slot freed) -> execute | tail "
        "| per refill: sweeper s | per refill: HTCondor s | in busy: job start-up + wrap-up |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for key, p in parts.items():
        cells = [LABELS[key], f"{p['available'] - p['busy']:.0f}"]
        cells += [f"{p[k]:.0f}" for k in ("first", "batch", "reaction", "htcondor", "tail")]
        cells += [f"{p['per_reaction']:.2f}", f"{p['per_htcondor']:.2f}", f"{p['overhead']:.0f}"]
        print(f"| {' | '.join(cells)} |")


if __name__ == "__main__":
    main()
