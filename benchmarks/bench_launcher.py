"""The HTCondor launcher's own overhead, measured on the local pool (scripts/condor-pool).

1. Submit side for a sweep of --jobs (default 100) jobs as one cluster, split into its steps:
   compose the jobs' sweep configs (Hydra's load_sweep_config; also paid by every launcher), validate and
   build the submit description, pickle and write the job specs, and schedd.submit() of one cluster.
   The cluster is submitted on hold and removed right away: only the launcher's work is timed.
2. Wall time of a sweep of --trivial (default 8) trivial jobs through the launcher (submit, run on the pool,
   results back) against the same number of bare jobs (`python -c pass`, one cluster, no launcher) submitted
   and awaited the same way (event log), and the same bare jobs as a user would run them by hand
   (`condor_submit` of a submit file, then `condor_wait` on its log), alternating, --repeats times; medians
   reported.

    eval "$(scripts/condor-pool env)"; python benchmarks/bench_launcher.py
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import htcondor2
from hydra._internal.callbacks import Callbacks
from hydra._internal.hydra import Hydra
from hydra._internal.utils import create_config_search_path
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from hydra.core.plugins import Plugins
from hydra.types import HydraContext, RunMode
from hydra_plugins.hydra_htcondor_launcher import _core, _submit


def trivial_task(cfg):
    return cfg.x


def make_launcher(sweep_dir: Path, extra: list[str]):
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
    return Plugins.instance().instantiate_launcher(
        hydra_context=context, task_function=trivial_task, config=cfg
    )


def submit_overhead(tmp: Path, n_jobs: int, repeats: int, extra: list[str]) -> dict[str, float]:
    schedd = htcondor2.Schedd()
    rows: dict[str, list[float]] = {
        "validate + build description": [],
        "compose job configs": [],
        "pickle + write specs": [],
        "schedd.submit (1 cluster)": [],
    }
    for r in range(repeats):
        sweep = tmp / f"overhead{len(extra)}-{r}"
        launcher = make_launcher(sweep, extra)
        overrides = [[f"+x={i}"] for i in range(n_jobs)]
        t0 = time.perf_counter()
        batch = _core.new_batch(launcher)
        os.makedirs(batch.htcondor_dir, exist_ok=True)
        plan = _submit.build_submit(
            batch.settings,
            sweep_dir=str(sweep),
            cwd=os.getcwd(),
            job_nums=list(range(n_jobs)),
            job_subdirs=[str(i) for i in range(n_jobs)],  # Hydra's default subdir, ${hydra.job.num}
        )
        t1 = time.perf_counter()
        _core.add_jobs(batch, overrides, 0)
        t2 = time.perf_counter()
        _core.write_specs(batch)
        t3 = time.perf_counter()
        desc = dict(plan.description, hold="True")  # never runs: only the submission is timed
        result = schedd.submit(htcondor2.Submit(desc), itemdata=iter(plan.itemdata))
        t4 = time.perf_counter()
        schedd.act(htcondor2.JobAction.Remove, f"ClusterId == {result.cluster()}")
        GlobalHydra.instance().clear()
        for key, value in zip(rows, (t1 - t0, t2 - t1, t3 - t2, t4 - t3), strict=True):
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


def bare_description(folder: Path, log: Path) -> dict[str, str]:
    """A trivial job (`python -c pass`) with nothing to transfer: the pool's own latency, no launcher."""
    return {
        "executable": sys.executable,
        "arguments": '"-c pass"',
        "transfer_executable": "False",
        "should_transfer_files": "NO",
        "initialdir": str(folder),
        "output": str(folder / "$(ProcId).out"),
        "error": str(folder / "$(ProcId).err"),
        "log": str(log),
        "request_memory": "128MB",
    }


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


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--jobs", type=int, default=100)
    parser.add_argument("--trivial", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="bench-launcher-") as tmpname:
        tmp = Path(tmpname)
        for label, extra in (
            ("shared filesystem: workers compose their configs", []),
            ("transfer_files=true: submit side composes", ["hydra.launcher.transfer_files=true"]),
        ):
            over = submit_overhead(tmp, args.jobs, args.repeats, extra)
            total = sum(over.values())
            print(
                f"\nSubmit-side overhead, {args.jobs} jobs as one cluster, {label} (median of {args.repeats})"
            )
            print(f"{'step':<32}{'total s':>10}{'ms/job':>10}")
            for key, value in over.items():
                print(f"{key:<32}{value:>10.3f}{1000 * value / args.jobs:>10.2f}")
            print(f"{'all':<32}{total:>10.3f}{1000 * total / args.jobs:>10.2f}")

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


if __name__ == "__main__":
    main()
