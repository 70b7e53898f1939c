"""The HTCondor launcher's own overhead, measured on the local pool (scripts/condor-pool).

1. Submit side for a sweep of --jobs (default 100) jobs as one cluster, in each environment mode, split into
   the launcher's steps: validate settings, make the jobs (with file transfer: their folder names), write the
   config snapshot, common payload, job specs and submit description, and schedd.submit() of one cluster.
   The cluster is submitted on hold and removed right away: only the launcher's work is timed. For
   comparison, Hydra composing every job's config on the submit side (which the workers do instead).
2. Wall time of a sweep of --trivial (default 8) trivial jobs through the launcher (submit, run on the pool,
   results back) against the same number of bare jobs (`python -c pass`, one cluster, no launcher) submitted
   and awaited the same way (event log), and the same bare jobs as a user would run them by hand
   (`condor_submit` of a submit file, then `condor_wait` on its log), alternating, --repeats times; medians
   reported.

    eval "$(scripts/condor-pool env)"; python benchmarks/bench_launcher.py
    python benchmarks/bench_ab.py --a OLD/.venv/bin/python --b NEW/.venv/bin/python -- \
        benchmarks/bench_launcher.py --repeats 3     # two launchers, alternating (--json FILE: the rows)
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import htcondor2
from _bare import bare_description
from hydra._internal.callbacks import Callbacks
from hydra._internal.hydra import Hydra
from hydra._internal.utils import create_config_search_path
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from hydra.core.plugins import Plugins
from hydra.types import HydraContext, RunMode
from hydra_plugins.hydra_htcondor_launcher import _core


def trivial_task(cfg):
    return cfg.x


def make_launcher(sweep_dir: Path, extra: list[str], task=trivial_task):
    hydra = Hydra.create_main_hydra2(task_name="bench", config_search_path=create_config_search_path(None))
    cfg = hydra.compose_config(
        config_name=None,
        overrides=[
            f"hydra.sweep.dir={sweep_dir}",
            "hydra/launcher=htcondor",
            "hydra.launcher.request_memory=128MB",
            "hydra.launcher.status_interval=1000",
            "hydra/hydra_logging=disabled",
            *extra,
        ],
        run_mode=RunMode.MULTIRUN,
        with_log_configuration=False,
    )
    HydraConfig.instance().set_config(cfg)
    context = HydraContext(config_loader=hydra.config_loader, callbacks=Callbacks(cfg))
    return Plugins.instance().instantiate_launcher(hydra_context=context, task_function=task, config=cfg)


def submit_overhead(tmp: Path, n_jobs: int, repeats: int, extra: list[str]) -> dict[str, float]:
    """The launcher's own submit path (new_batch, add_jobs, prepare, submit), step by step, plus Hydra's
    composition of every job's config on the submit side (what the worker now does) for comparison."""
    schedd = htcondor2.Schedd()
    rows: dict[str, list[float]] = {
        "validate settings": [],
        "jobs (+ folder names)": [],
        "snapshot + specs + description": [],
        "schedd.submit (1 cluster)": [],
        "(Hydra composing each job here)": [],
    }
    for r in range(repeats):
        sweep = tmp / f"overhead{len(extra)}-{r}"
        launcher = make_launcher(sweep, extra)
        overrides = [[f"+x={i}"] for i in range(n_jobs)]
        t0 = time.perf_counter()
        batch = _core.new_batch(
            launcher.conf, launcher.config, launcher.hydra_context, launcher.task_function
        )
        t1 = time.perf_counter()
        _core.add_jobs(batch, overrides, 0)
        t2 = time.perf_counter()
        plan = _core.prepare(batch, sweep_id="bench")
        t3 = time.perf_counter()
        plan = dataclasses.replace(plan, description=dict(plan.description, hold="True"))  # never runs
        _core.submit(batch, htcondor2, schedd, plan)
        t4 = time.perf_counter()
        schedd.act(htcondor2.JobAction.Remove, f"ClusterId == {batch.cluster}")
        loader = batch.hydra_context.config_loader
        for job in overrides:
            loader.load_sweep_config(batch.config, job)
        t5 = time.perf_counter()
        GlobalHydra.instance().clear()
        for key, value in zip(rows, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4), strict=True):
            rows[key].append(value)
    return {k: statistics.median(v) for k, v in rows.items()}


def launcher_sweep(tmp: Path, n: int, tag: str) -> float:
    launcher = make_launcher(tmp / f"sweep-{tag}", ["hydra.launcher.poll_interval=0.1"])
    t0 = time.perf_counter()
    results = launcher.launch([[f"+x={i}"] for i in range(n)], initial_job_idx=0)
    elapsed = time.perf_counter() - t0
    GlobalHydra.instance().clear()
    assert [r.return_value for r in results] == list(range(n))
    return elapsed


def bare_sweep(tmp: Path, n: int, tag: str) -> float:
    folder = tmp / f"bare-{tag}"
    folder.mkdir()
    log = folder / "cluster.log"
    desc = bare_description(folder, log)
    t0 = time.perf_counter()
    schedd = htcondor2.Schedd()
    cluster = schedd.submit(htcondor2.Submit(desc), count=n).cluster()
    done: set[int] = set()
    events = None
    deadline = time.monotonic() + 600
    while len(done) < n:
        assert time.monotonic() < deadline, "bare jobs did not finish in 10 min"
        if events is None and log.exists():
            events = htcondor2.JobEventLog(str(log))
        if events is not None:
            for ev in events.events(stop_after=0):
                if ev.cluster == cluster and ev.type == htcondor2.JobEventType.JOB_TERMINATED:
                    done.add(ev.proc)
        time.sleep(0.1)
    return time.perf_counter() - t0


def condor_submit_sweep(tmp: Path, n: int, tag: str) -> float:
    """The same bare jobs through the command-line tools: condor_submit, then condor_wait on the log."""
    folder = tmp / f"cli-{tag}"
    folder.mkdir()
    log = folder / "cluster.log"
    lines = [f"{key} = {value}" for key, value in bare_description(folder, log).items()]
    (folder / "jobs.sub").write_text("\n".join([*lines, f"queue {n}"]) + "\n")
    t0 = time.perf_counter()
    for cmd in (
        ["condor_submit", "-terse", str(folder / "jobs.sub")],
        ["condor_wait", "-wait", "600", str(log)],
    ):
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            reason = " ".join(proc.stderr.split())[:300] or f"exit code {proc.returncode}"
            raise RuntimeError(f"{cmd[0]} failed: {reason}")
    return time.perf_counter() - t0


def write_json(path: str | None, rows: list[tuple[str, float, str]]) -> None:
    if path:
        Path(path).write_text(json.dumps(rows))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--jobs", type=int, default=100)
    parser.add_argument("--trivial", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--submit-only", action="store_true", help="only the submit-side table")
    parser.add_argument("--json", help="also write the rows to this file: [[what, value, notes], ...]")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="bench-launcher-") as tmpname:
        tmp = Path(tmpname)
        archive = tmp / "env.tar.gz"
        archive.write_bytes(b"")  # packed mode checks that the archive exists; these jobs never run
        modes = {
            "shared": [],
            "transfer": ["hydra.launcher.transfer_files=true"],
            "container": [
                "hydra.launcher.env_mode=container",
                "hydra.launcher.container_image=docker://python:3.11",
                "hydra.launcher.transfer_files=true",
            ],
            "packed": [
                "hydra.launcher.env_mode=packed",
                f"hydra.launcher.packed_env={archive}",
                "hydra.launcher.transfer_files=true",
            ],
        }
        table = {mode: submit_overhead(tmp, args.jobs, args.repeats, extra) for mode, extra in modes.items()}
        print(f"\nSubmit side, {args.jobs} jobs as one cluster, ms/job (median of {args.repeats})")
        print(f"{'step':<34}" + "".join(f"{mode:>11}" for mode in modes))
        steps = list(next(iter(table.values())))
        for step in steps:
            print(f"{step:<34}" + "".join(f"{1000 * table[m][step] / args.jobs:>11.2f}" for m in modes))
        totals = {m: sum(v for k, v in table[m].items() if not k.startswith("(")) for m in modes}
        print(f"{'launcher total':<34}" + "".join(f"{1000 * totals[m] / args.jobs:>11.2f}" for m in modes))
        rows: list[tuple[str, float, str]] = []  # (what, value, notes), for --json
        for mode in modes:
            per_step = {**table[mode], "launcher total": totals[mode]}
            rows += [(f"submit, {mode}: {k}", 1000 * v / args.jobs, "ms/job") for k, v in per_step.items()]
        if args.submit_only:
            write_json(args.json, rows)
            return

        # condor_submit (run as root) cannot use a folder only root may enter; the pool user must read it.
        os.chmod(tmp, 0o755)
        cli = shutil.which("condor_submit") is not None and shutil.which("condor_wait") is not None
        cli_error = "condor_submit/condor_wait not on PATH"
        launched, bare, by_cli = [], [], []
        for r in range(args.repeats):
            bare.append(bare_sweep(tmp, args.trivial, str(r)))
            if cli:
                try:
                    by_cli.append(condor_submit_sweep(tmp, args.trivial, str(r)))
                except RuntimeError as err:
                    # e.g. HTCondor 23.9's tools run as root switch to the pool user, who cannot reach a pool
                    # folder under /root (see docs/condor-pool.md); the bindings are not affected.
                    cli, cli_error = False, str(err)
            launched.append(launcher_sweep(tmp, args.trivial, str(r)))
        b, lt = statistics.median(bare), statistics.median(launched)
        print(f"\nSweep of {args.trivial} trivial jobs on the local pool (median of {args.repeats}, wall s)")
        print(f"{'bare htcondor2 submit (python -c pass)':<44}{b:>8.2f}  {'1.00x':>6}")
        if cli:
            c = statistics.median(by_cli)
            print(f"{'bare condor_submit + condor_wait (CLI)':<44}{c:>8.2f}  {c / b:>5.2f}x")
        else:
            print(f"(CLI baseline skipped: {cli_error})")
        print(f"{'hydra-htcondor-launcher (results returned)':<44}{lt:>8.2f}  {lt / b:>5.2f}x")
        print(f"{'launcher overhead per batch':<44}{lt - b:>8.2f}")
        print(
            f"runs: bare {[round(x, 2) for x in bare]}, condor_submit {[round(x, 2) for x in by_cli]}, "
            f"launcher {[round(x, 2) for x in launched]}"
        )
        rows += [
            (f"sweep of {args.trivial}: bare htcondor2", b, f"s, runs {[round(x, 2) for x in bare]}"),
            (f"sweep of {args.trivial}: launcher", lt, f"s, runs {[round(x, 2) for x in launched]}"),
            (f"sweep of {args.trivial}: launcher minus bare", lt - b, "s"),
        ]
        if cli:
            rows.append(
                (
                    f"sweep of {args.trivial}: condor_submit + condor_wait",
                    c,
                    f"s, runs {[round(x, 2) for x in by_cli]}",
                )
            )
        write_json(args.json, rows)


if __name__ == "__main__":
    main()
