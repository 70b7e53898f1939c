"""What a big sweep's state costs the launcher: the manifest, the live table, ``hydra-htcondor status``.

No pool runs the jobs: each sweep folder is built with the launcher's own classes, in the formats a real run
leaves. Its event log is HTCondor's text format (submit, execute, image-size, held, terminated events, as the
local pool writes them), read back with ``htcondor2.JobEventLog`` and fed to the JobRecords with
``_jobstate.apply`` (what the waiting loop does); the manifest is written with ``Manifest.planned``,
``Manifest.record`` and ``Manifest.save`` (what the sweep engine, ``_sweep``, does); every finished job has
a result file pickled like the worker's (``cloudpickle`` of a ``JobReturn`` carrying the app's composed config
and Hydra config, ~34 KB). Three folders per size: a *finished* sweep (all done, 1% failed) whose results the
launcher collected (``Manifest.returned``, as ``_sweep`` does), the same sweep *detached* (finished, nobody
collected it: ``status`` reads every result file), and a *running* one (5% done, 1% failed, 10% running,
0.5% held, the rest idle).

Per size it measures, in a fresh interpreter per variant, median of ``--repeats``:

- ``save``: one save of the whole sweep's records (``SweepEngine._save_records``: ``Manifest.record`` of
  every job, then ``Manifest.save``: JSON, temp file, fsync, rename), and the manifest's size;
- ``saves/min``: how many of those the waiting loop makes in a minute when a job changes state at every poll
  (a 1,000-job sweep in full swing), with the ``Follower``'s own throttle, on a scripted clock;
- ``table``: the live table of the running sweep (``Follower.table``), render time and lines printed;
- ``status``: ``hydra-htcondor status SWEEP_DIR`` as a subprocess (interpreter start included), wall time and
  lines printed, for the three folders. The running folder's jobs are unknown to any schedd
  (none ran), so ``status`` also asks the pool in the environment which of them it knows (queue and history):
  run it with the pool's environment (``eval "$(scripts/condor-pool env)"``) for the "pool running" number,
  or with ``CONDOR_CONFIG=/dev/null`` for "no pool".

``--baseline REV`` measures the launcher as of git revision REV too (its package exported to a temporary
folder, first on ``PYTHONPATH``), alternating with the working tree's: the before/after table.

    python benchmarks/bench_sweep_state.py [--jobs 100 1000 5000] [--repeats 3] [--baseline REV]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
PACKAGE = "launchers/hydra_plugins/hydra_htcondor_launcher"
CLUSTER = 4200
T0 = 1_790_000_000  # the sweep's submission time (epoch seconds)


# -- building a sweep folder ---------------------------------------------------------------------------
def _stamp(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))


def _event(code: str, proc: int, ts: float, text: str, body: str = "") -> str:
    return f"{code} ({CLUSTER:03d}.{proc:03d}.000) {_stamp(ts)} {text}\n{body}...\n"


_SCHEDD = "<127.0.0.1:45819?addrs=127.0.0.1-45819&alias=vm>"
_STARTD = "<127.0.0.1:37229?addrs=127.0.0.1-37229&alias=vm>"
_USAGE = "".join(
    f"\t\tUsr 0 00:00:00, Sys 0 00:00:00  -  {what} Usage\n"
    for what in ("Run Remote", "Run Local", "Total Remote", "Total Local")
) + "".join(
    f"\t0  -  {what} By Job\n"
    for what in ("Run Bytes Sent", "Run Bytes Received", "Total Bytes Sent", "Total Bytes Received")
)


def _events(proc: int, state: str) -> list[tuple[float, str]]:
    """One job's events, as the local pool writes them, for a job that ends in `state`."""
    out = [(T0, _event("000", proc, T0, f"Job submitted from host: {_SCHEDD}"))]
    if state == "idle":
        return out
    start = T0 + 5 + proc % 300
    slot = f"slot1_{proc % 16 + 1}@vm"
    out.append(
        (
            start,
            _event(
                "001", proc, start, f"Job executing on host: {_STARTD}", f"\tSlotName: {slot}\n\tCpus = 1\n"
            ),
        )
    )
    out.append(
        (
            start + 2,
            _event(
                "006",
                proc,
                start + 2,
                "Image size of job updated: 37816",
                "\t31  -  MemoryUsage of job (MB)\n\t31540  -  ResidentSetSize of job (KB)\n",
            ),
        )
    )
    end = start + 30
    if state == "held":
        reason = "Error from slot1_1@vm: Job has gone over cgroup memory limit of 256 megabytes."
        out.append((end, _event("012", proc, end, "Job was held.", f"\t{reason}\n\tCode 34 Subcode 0\n")))
    elif state in ("done", "failed"):
        code = 0 if state == "done" else 80
        body = f"\t(1) Normal termination (return value {code})\n" + _USAGE
        out.append((end, _event("005", proc, end, "Job terminated.", body)))
    return out


def _states(n: int, kind: str) -> list[str]:
    if kind == "finished":
        return ["failed" if i % 100 == 7 else "done" for i in range(n)]
    pattern = {7: "failed", 3: "held"}  # of every 200: 1 failed, 1 held; then done, running, idle
    out = []
    for i in range(n):
        r = i % 200
        if r in pattern:
            out.append(pattern[r])
        elif i < n * 0.05:
            out.append("done")
        elif i < n * 0.15:
            out.append("running")
        else:
            out.append("idle")
    return out


def _result_bytes(states: list[str]) -> dict[str, bytes]:
    """A done and a failed job's result file, pickled as the worker does, with the app's real configs."""
    import cloudpickle
    from hydra import compose, initialize_config_dir
    from hydra.core.utils import JobReturn, JobStatus
    from omegaconf import OmegaConf, open_dict

    from mnist_app.config import config_dir, register_configs

    register_configs()
    with initialize_config_dir(str(config_dir()), version_base=None):
        cfg = compose("config", overrides=["model.lr=0.5"], return_hydra_config=True)
    hydra_cfg = OmegaConf.create({"hydra": cfg.hydra})
    with open_dict(cfg):
        del cfg["hydra"]
    out = {}
    for state in ("done", "failed"):
        ret = JobReturn(
            overrides=["model.lr=0.5"], cfg=cfg, hydra_cfg=hydra_cfg, working_dir="0", task_name="app"
        )
        ret.status = JobStatus.COMPLETED if state == "done" else JobStatus.FAILED
        ret._return_value = {"val_acc": 0.9731, "val_loss": 0.0912} if state == "done" else ValueError("boom")
        out[state] = cloudpickle.dumps(ret)
    return out


def build_sweep(folder: str, n: int, kind: str, collected: bool = False) -> None:
    """A sweep folder of n jobs in one cluster, `kind` "finished" or "running", as the launcher leaves it;
    `collected`: the launcher returned the results (it notes their values in the manifest, ``returned``),
    else the sweep was detached and nobody collected it yet."""
    import htcondor2
    from hydra_plugins.hydra_htcondor_launcher import _jobstate
    from hydra_plugins.hydra_htcondor_launcher._jobstate import JobRecord
    from hydra_plugins.hydra_htcondor_launcher._manifest import Manifest

    htdir = os.path.join(folder, ".htcondor")
    os.makedirs(htdir)
    states = _states(n, kind)
    results = _result_bytes(states)
    m = Manifest.new(folder, htdir, command=["app.py", "-m", "model.lr=range(0,1,0.001)"])
    log_file = os.path.join(htdir, f"batch-0-{n - 1}.log")
    for num in range(n):
        m.planned(
            num,
            [f"model.lr={num / n:.4f}", "trainer.max_epochs=1"],
            os.path.join(htdir, f"{num}.result.pkl"),
            os.path.join(htdir, f"{num}.out"),
            os.path.join(htdir, f"{num}.err"),
        )
    m.save()
    events = sorted(
        (e for proc, state in enumerate(states) for e in _events(proc, state)), key=lambda e: e[0]
    )
    with open(log_file, "w") as f:
        f.writelines(text for _, text in events)
    records = {p: JobRecord(proc=p, num=p, cluster=CLUSTER) for p in range(n)}
    for event in htcondor2.JobEventLog(log_file).events(stop_after=0):
        _jobstate.apply(records[event.proc], event.type.name, event, float(event.timestamp))
    got = [rec.state.value for rec in records.values()]
    assert got == states, "the event log does not say what it was built to say"
    import cloudpickle

    # The launcher's own helpers, where they live now or (a --baseline before they moved) lived then.
    try:
        from hydra_plugins.hydra_htcondor_launcher._contract import return_note
        from hydra_plugins.hydra_htcondor_launcher._layout import result_note_path
    except ImportError:
        from hydra_plugins.hydra_htcondor_launcher._manifest import return_note  # type: ignore[no-redef]
        from hydra_plugins.hydra_htcondor_launcher._worker import (  # type: ignore[no-redef]
            return_note_path as result_note_path,
        )

    notes = {state: return_note(cloudpickle.loads(data)._return_value) for state, data in results.items()}
    for num, state in enumerate(states):
        if state in results:
            result = os.path.join(htdir, f"{num}.result.pkl")
            with open(result, "wb") as f:
                f.write(results[state])
            with open(result_note_path(result), "w") as f:  # as the worker writes it after the result
                f.write(notes[state])
    for rec in records.values():
        m.record(rec, CLUSTER, log_file)
    m.save()
    if collected:  # the sweep engine's close(), once the results are back
        rets = {state: cloudpickle.loads(data) for state, data in results.items()}
        m.returned({num: rets[state] for num, state in enumerate(states)})


# -- measuring (child: whichever launcher is first on the path) ---------------------------------------
def _median_ms(fn: Any, repeats: int) -> tuple[float, float]:
    """Median wall and CPU milliseconds of fn()."""
    times, cpus = [], []
    for _ in range(repeats):
        tic, cpu = time.perf_counter(), time.process_time()
        fn()
        times.append((time.perf_counter() - tic) * 1000)
        cpus.append((time.process_time() - cpu) * 1000)
    return statistics.median(times), statistics.median(cpus)


def measure_in_process(running: str, repeats: int) -> dict[str, Any]:
    """Manifest save, the waiting loop's saves per minute, the live table: of the running sweep's folder."""
    import logging

    from hydra_plugins.hydra_htcondor_launcher import _cli, _wait
    from hydra_plugins.hydra_htcondor_launcher._jobstate import JobState
    from hydra_plugins.hydra_htcondor_launcher._manifest import Manifest

    m = Manifest.load(running)
    recs = {rec.proc: rec for rec in _cli.records(m).values()}

    def save_batch() -> None:  # _sweep.SweepEngine._save_records
        for rec in recs.values():
            m.record(rec, CLUSTER, str(m.jobs["0"]["log"]))
        m.save()

    save_ms = _median_ms(save_batch, repeats)
    size_kb = os.path.getsize(m.path) / 1024
    # The launcher's defaults (poll 0.5 s, status every 15 s), no pool: records and the clocks only.
    pacing: dict[str, Any] = dict(max_releases=0, poll_interval=0.5, status_interval=15.0, timeout_s=1e9)

    class Following:
        """The waiting loop of one cluster: a Follower of one ClusterWatcher, or (a --baseline from before
        the Follower) the ClusterWatcher's own loop."""

        def __init__(self, crosscheck_every: int | None = None, on_change: Any = None, **clocks: Any) -> None:
            more = {} if crosscheck_every is None else {"crosscheck_every": crosscheck_every}
            if not hasattr(_wait, "WatchPolicy"):  # before the watcher took one policy
                self.watcher = _wait.ClusterWatcher(
                    None,
                    None,
                    CLUSTER,
                    "/nonexistent.log",
                    recs,
                    **pacing,
                    **more,
                    **clocks,
                    on_change=on_change,
                )
                self.follower = None
                return
            policy = _wait.WatchPolicy(**pacing, **more)
            if not hasattr(_wait, "Follower"):  # before the clusters were followed together
                self.watcher = _wait.ClusterWatcher(
                    None, None, CLUSTER, "/nonexistent.log", recs, policy, **clocks, on_change=on_change
                )
                self.follower = None
                return
            self.watcher = _wait.ClusterWatcher(
                None, None, CLUSTER, "/nonexistent.log", recs, policy, **clocks
            )
            self.follower = _wait.Follower(policy, on_change=on_change, **clocks)
            self.follower.add(self.watcher)

        def table(self) -> str:
            if self.follower is None:
                return str(self.watcher.table(600.0))
            self.follower.now = self.follower.start + 600.0
            return self.follower.table()

        def wait(self) -> None:
            if self.follower is None:
                self.watcher.wait()
            else:
                self.follower.wait(until=lambda: self.watcher.done)

    following = Following(clock=lambda: 0.0, wall_clock=lambda: T0 + 600)
    table = following.table()
    table_ms = _median_ms(following.table, repeats)

    # The waiting loop on a scripted clock: one job changes state at every poll, for a minute.
    clock = [0.0]
    saves = [0]
    following = Following(
        crosscheck_every=10**9,
        clock=lambda: clock[0],
        wall_clock=lambda: T0 + 600 + clock[0],
        on_change=lambda: saves.__setitem__(0, saves[0] + 1),
    )
    pending = [rec for rec in recs.values() if not rec.final]
    polls = iter(range(10**9))

    def poll() -> None:
        i = next(polls)
        rec = pending[i % len(pending)]
        rec.holds += 1  # a state change the loop must save
        if clock[0] >= 60.0:  # the minute is over: every job ends
            for r in pending:
                r.state = JobState.DONE

    following.watcher.poll = poll  # type: ignore[method-assign]
    real_sleep = _wait.time.sleep
    _wait.time.sleep = lambda s: clock.__setitem__(0, clock[0] + s)  # type: ignore[assignment]
    logging.getLogger(_wait.__name__).setLevel(logging.WARNING)
    try:
        following.wait()
    finally:
        _wait.time.sleep = real_sleep  # type: ignore[assignment]
    return {
        "save_ms": save_ms,
        "manifest_kb": size_kb,
        "saves_per_min": saves[0],
        "table_ms": table_ms,
        "table_lines": len(table.splitlines()),
    }


def _status(
    env: dict[str, str], folder: str, repeats: int, variant_path: str | None
) -> tuple[float, float, int]:
    """`hydra-htcondor status folder`: median wall and CPU seconds (the machine may be shared), lines."""
    if variant_path is None:
        cmd = [str(REPO / ".venv/bin/hydra-htcondor"), "status", folder]
    else:
        cmd = [
            sys.executable,
            "-c",
            "import sys; from hydra_plugins.hydra_htcondor_launcher._cli import main; sys.exit(main())",
            "status",
            folder,
        ]
    times, cpus, lines = [], [], 0
    for _ in range(repeats):
        before = _children_cpu()
        tic = time.perf_counter()
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
        times.append(time.perf_counter() - tic)
        cpus.append(_children_cpu() - before)
        lines = len(proc.stdout.splitlines())
    return statistics.median(times), statistics.median(cpus), lines


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _export(rev: str, into: str) -> str:
    """The launcher package as of git revision `rev`, in a folder to put first on PYTHONPATH."""
    target = os.path.join(into, "hydra_plugins", "hydra_htcondor_launcher")
    shutil.rmtree(into, ignore_errors=True)
    os.makedirs(target)
    names = subprocess.run(
        ["git", "ls-tree", "--name-only", rev, PACKAGE + "/"],
        cwd=REPO,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    for name in names:
        data = subprocess.run(
            ["git", "show", f"{rev}:{name}"], cwd=REPO, check=True, capture_output=True
        ).stdout
        with open(os.path.join(target, os.path.basename(name)), "wb") as f:
            f.write(data)
    return into


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, nargs="+", default=[100, 1000, 5000])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--baseline", help="also measure the launcher as of this git revision")
    parser.add_argument("--keep", help="build the sweep folders here and keep them")
    parser.add_argument("--child", nargs=2, metavar=("RUNNING_DIR", "REPEATS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure_in_process(args.child[0], int(args.child[1]))))
        return

    work = args.keep or tempfile.mkdtemp(prefix="bench-sweep-state-")
    variants: list[tuple[str, str | None]] = [("now", None)]
    if args.baseline:
        variants.insert(0, (args.baseline[:10], _export(args.baseline, os.path.join(work, "baseline"))))
    pool = "pool" if os.environ.get("CONDOR_CONFIG", "/dev/null") != "/dev/null" else "no pool"
    print(f"# {time.strftime('%Y-%m-%d %H:%M')}, {os.cpu_count()} CPUs, status of the running sweep: {pool}")
    print("# wall (CPU): ms or s, median; the CPU time holds on a busy machine, the wall time does not")
    header = (
        "| jobs | launcher | save ms | manifest KB | saves/min | table ms | table lines "
        "| status collected s | status detached s | lines | status running s | lines |"
    )
    print(header)
    print("|---" * (header.count("|") - 1) + "|")
    for n in args.jobs:
        finished, running = os.path.join(work, f"finished-{n}"), os.path.join(work, f"running-{n}")
        detached = os.path.join(work, f"detached-{n}")
        for folder, kind, collected in (
            (finished, "finished", True),
            (detached, "finished", False),
            (running, "running", False),
        ):
            if not os.path.exists(folder):
                build_sweep(folder, n, kind, collected)
        for name, path in variants:
            env = dict(os.environ)
            if path is not None:
                env["PYTHONPATH"] = path + os.pathsep + env.get("PYTHONPATH", "")
            # A copy per variant: each writes the manifest in its own format.
            copy = running + f"-{name}"
            shutil.rmtree(copy, ignore_errors=True)
            shutil.copytree(running, copy)
            child = subprocess.run(
                [sys.executable, __file__, "--child", copy, str(args.repeats)],
                env=env,
                check=True,
                capture_output=True,
                text=True,
                timeout=600,
            )
            got = json.loads(child.stdout.splitlines()[-1])
            fin = _status(env, finished, args.repeats, path)
            det = _status(env, detached, args.repeats, path)
            run = _status(env, running, args.repeats, path)
            save, table = got["save_ms"], got["table_ms"]
            print(
                f"| {n} | {name} | {save[0]:.1f} ({save[1]:.1f}) | {got['manifest_kb']:.0f} "
                f"| {got['saves_per_min']} | {table[0]:.1f} ({table[1]:.1f}) | {got['table_lines']} "
                f"| {fin[0]:.2f} ({fin[1]:.2f}) | {det[0]:.2f} ({det[1]:.2f}) | {fin[2]} "
                f"| {run[0]:.2f} ({run[1]:.2f}) | {run[2]} |",
                flush=True,
            )
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
