"""The HTCondor launcher at scale, on a private local pool with more slots than the VM has cores.

Starts its own pool (``scripts/condor-pool start`` with CONDOR_POOL_DIR/PORT/CPUS from --pool-dir, --port,
--cpus; a fresh, empty queue), runs a trivial Hydra script app (``@hydra.main`` task returning ``cfg.x``) as a
user would (``python app.py -m hydra/launcher=htcondor +x=range(0,N)``, the launcher's defaults), and prints
a markdown table:

a. a --jobs (1,000) job sweep through the launcher: wall time, time until all jobs are submitted (log
   timestamp of "N job(s) submitted as cluster"), the launcher process's CPU time (user+sys, its own and its
   reaped children's) in all and after the submission (while waiting); also Hydra's own validation of the
   batch (``Validated configs of N jobs``, logged by the basic sweeper with hydra.verbose) and the pool's CPU
   time (condor_master and its descendants, reaped shadows, starters and jobs included: this 23.9 pool
   reports no RemoteUserCpu for its jobs);
b. the same number of bare jobs (``python -c pass``, one cluster, htcondor2, waited on via the event log
   every 0.5 s, the launcher's poll interval), in a child process measured the same way;
c. re-attaching to a finished --reattach-jobs (100) job sweep: the same command again (wall time; the
   launcher's own part: from Hydra's validation line to the last log line);
d. re-attaching to a running one (its jobs sleep --running-sleep s): the submitter SIGKILLed --kill-after
   seconds after its submission line, the same command again: time to the "re-attached" line and to the
   end; the schedd's queue and history must hold exactly one proc per job number (checked, reported);
e. ``hydra-htcondor status`` of the --jobs sweep folder (finished), pool running, then with the pool
   stopped (the pool is stopped at the end unless --keep-pool).

--transfer-files runs every launcher sweep (a, c, d) with ``hydra.launcher.transfer_files=true`` (HTCondor's
file transfer instead of the shared filesystem); --json FILE also writes the rows as JSON (for bench_ab.py).

    python benchmarks/bench_sweep_scale.py   # ~13 min on the 2-core VM
    python benchmarks/bench_sweep_scale.py --jobs 200 --reattach-jobs 50 --repeats 1 --running-sleep 5 \
        --skip-bare                          # a short run (~2 min)
    python benchmarks/bench_ab.py --a OLD/.venv/bin/python --b NEW/.venv/bin/python -- \
        benchmarks/bench_sweep_scale.py --skip-bare --transfer-files   # two launchers, alternating
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
POOL = REPO / "scripts" / "condor-pool"
CLI = Path(sys.executable).parent / "hydra-htcondor"
APP = """import time

import hydra


@hydra.main(version_base=None, config_path=None)
def main(cfg):
    time.sleep(float(cfg.get("sleep", 0)))
    return cfg.x


if __name__ == "__main__":
    main()
"""
LOG_TIME = re.compile(r"^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),(\d{3})\]")
TICK = os.sysconf("SC_CLK_TCK")


def proc_cpu(pid: int) -> float:
    """User+system CPU seconds of a live process and of its children it has reaped (/proc/PID/stat)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat.rsplit(")", 1)[1].split()
    return sum(int(f) for f in fields[11:15]) / TICK  # utime stime cutime cstime


def tree_cpu(root: int) -> float:
    """CPU seconds of ``root`` and all its live descendants (each with its reaped children: no overlap)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    tree, grew = {root}, True
    while grew:
        new = {pid for pid, ppid in parents.items() if ppid in tree} - tree
        tree |= new
        grew = bool(new)
    return sum(proc_cpu(pid) for pid in tree)


@dataclass
class Run:
    """One timed command: wall seconds, CPU seconds, and when marker lines appeared."""

    rc: int = 0
    wall: float = 0.0
    cpu: float = 0.0
    seen: dict[str, float] = field(default_factory=dict)  # s after start when the line was read
    cpu_at: dict[str, float] = field(default_factory=dict)  # the process's CPU s at that moment
    logged: dict[str, float] = field(default_factory=dict)  # s after start by the line's log timestamp
    lines: dict[str, str] = field(default_factory=dict)
    last_log: float = 0.0  # s after start of the last timestamped log line
    out: str = ""


def log_time(line: str) -> float | None:
    m = LOG_TIME.match(line)
    if m is None:
        return None
    return time.mktime(time.strptime(m.group(1), "%Y-%m-%d %H:%M:%S")) + int(m.group(2)) / 1000


def run_timed(
    cmd: list[str], cwd: Path, markers: dict[str, str], kill_on: str | None = None, kill_after: float = 0.0
) -> Run:
    """Run ``cmd``; record each marker's first line (substring match); SIGKILL the process ``kill_after``
    seconds after the line of marker ``kill_on``."""
    run = Run()
    out: list[str] = []
    t0 = time.time()
    proc = subprocess.Popen(
        cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1
    )
    assert proc.stdout is not None
    for line in proc.stdout:
        out.append(line)
        stamp = log_time(line)
        if stamp is not None:
            run.last_log = stamp - t0
        for key, text in markers.items():
            if key not in run.seen and text in line:
                run.seen[key] = time.time() - t0
                run.cpu_at[key] = proc_cpu(proc.pid)
                run.lines[key] = line.strip()
                if stamp is not None:
                    run.logged[key] = stamp - t0
                if key == kill_on:
                    threading.Timer(kill_after, os.kill, (proc.pid, signal.SIGKILL)).start()
    _, status, usage = os.wait4(proc.pid, 0)
    run.wall = time.time() - t0
    proc.returncode = run.rc = os.waitstatus_to_exitcode(status)
    run.cpu = usage.ru_utime + usage.ru_stime
    run.out = "".join(out)
    logs = cwd / "logs"  # every command's output, kept with --keep-work
    logs.mkdir(exist_ok=True)
    (logs / f"{len(list(logs.iterdir())):03d}.out").write_text(f"$ {shlex.join(cmd)}\n{run.out}")
    return run


def need(run: Run, rc: int, *keys: str) -> None:
    missing = [k for k in keys if k not in run.seen]
    if run.rc != rc or missing:
        raise RuntimeError(f"exit {run.rc} (expected {rc}), missing {missing}:\n{run.out[-3000:]}")


def number(pattern: str, text: str) -> float:
    m = re.search(pattern, text)
    if m is None:
        raise RuntimeError(f"{pattern!r} not in {text!r}")
    return float(m.group(1))


class Pool:
    """The benchmark's own pool: scripts/condor-pool with its own folder, port and CPU count."""

    def __init__(self, folder: str, port: int, cpus: int) -> None:
        self.env = dict(
            os.environ, CONDOR_POOL_DIR=folder, CONDOR_POOL_PORT=str(port), CONDOR_POOL_CPUS=str(cpus)
        )

    def run(self, command: str) -> str:
        proc = subprocess.run([str(POOL), command], env=self.env, capture_output=True, text=True, timeout=600)
        if proc.returncode != 0:
            raise RuntimeError(f"condor-pool {command}: {proc.stdout[-1000:]}{proc.stderr[-2000:]}")
        return proc.stdout + proc.stderr

    def start(self) -> None:
        """A fresh pool with this CPU count: one already running in the folder is stopped first."""
        self.stop()
        self.run("start")
        info = json.loads(self.run_env())
        os.environ["CONDOR_CONFIG"] = info["CONDOR_CONFIG"]
        os.environ["PATH"] = info["bin"] + os.pathsep + os.environ["PATH"]

    def run_env(self) -> str:
        return subprocess.run(
            [str(POOL), "env", "--json"], env=self.env, capture_output=True, text=True, check=True
        ).stdout

    def stop(self) -> None:
        subprocess.run([str(POOL), "stop"], env=self.env, capture_output=True, timeout=120, check=True)

    def master_pid(self) -> int:
        return int(number(r"master pid (\d+)", self.run("status")))


def launcher_cmd(app: Path, sweep: Path, n: int, *extra: str) -> list[str]:
    """The user's command line (MODE: the environment mode's overrides, set by main)."""
    return [
        sys.executable,
        str(app),
        "-m",
        "hydra/launcher=htcondor",
        "hydra.launcher.request_memory=128MB",
        "hydra.verbose=hydra._internal.core_plugins.basic_sweeper",  # "Validated configs of N jobs in X s"
        f"hydra.sweep.dir={sweep}",
        f"+x=range(0,{n})",
        *MODE,
        *extra,
    ]


MODE: list[str] = []  # --transfer-files: ["hydra.launcher.transfer_files=true"]


MARKERS = {
    "validated": "Validated configs of",
    "resuming": "resuming sweep:",
    "submitted": "job(s) submitted as cluster",
    "reattached": "re-attached to cluster",
    "completed": "job(s) completed",
}


def procs_per_job(sweep_id: str) -> dict[int, int]:
    """How many procs the schedd ever had per Hydra job number of the sweep (queue and history)."""
    import htcondor2
    from hydra_plugins.hydra_htcondor_launcher import _resume

    schedd = htcondor2.Schedd()
    ids = {  # the launcher's own query of a sweep's jobs (the tests check it independently)
        (int(ad["ClusterId"]), int(ad["ProcId"])): num
        for history in (False, True)
        for num, ads in _resume._sweep_jobs(schedd, sweep_id, history).items()
        for ad in ads
    }
    counts: dict[int, int] = {}
    for num in ids.values():
        counts[num] = counts.get(num, 0) + 1
    return counts


def bare_child(n: int, folder: Path) -> None:
    """Runs in a child process (``--bare-child``): n bare jobs as one cluster, waited on via the event log."""
    import htcondor2
    from _bare import bare_description

    log = folder / "cluster.log"
    desc = bare_description(folder, log)
    cluster = htcondor2.Schedd().submit(htcondor2.Submit(desc), count=n).cluster()
    print(f"bare: {n} jobs submitted as cluster {cluster}", flush=True)
    ended = (htcondor2.JobEventType.JOB_TERMINATED, htcondor2.JobEventType.JOB_ABORTED)
    done: set[int] = set()
    events = None
    while len(done) < n:
        if events is None and log.exists():
            events = htcondor2.JobEventLog(str(log))
        if events is not None:
            for ev in events.events(stop_after=0):
                if ev.cluster == cluster and ev.type in ended:
                    done.add(ev.proc)
        time.sleep(0.5)
    print(f"bare: all {n} jobs of cluster {cluster} ended", flush=True)


def validation_s(run: Run) -> float:
    """Hydra's basic sweeper's own timing of its batch validation (it composes every job's config)."""
    return number(r"jobs in ([\d.]+) seconds", run.lines["validated"])


def submit_s(run: Run) -> float:
    """The launcher's own timing of its submission (its log line: "... as cluster C in X s")."""
    return number(r" in ([\d.]+)s;", run.lines["submitted"])


def fmt(x: float | str) -> str:
    return x if isinstance(x, str) else f"{x:.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--jobs", type=int, default=1000, help="jobs of the big sweep (a, b, e)")
    parser.add_argument(
        "--reattach-jobs", type=int, default=100, help="jobs of the re-attached sweeps (c, d)"
    )
    parser.add_argument("--repeats", type=int, default=3, help="runs of c and e (median reported)")
    parser.add_argument("--skip-bare", action="store_true", help="no bare htcondor2 row (b)")
    parser.add_argument("--skip-big", action="store_true", help="no big sweep (a, b, e)")
    parser.add_argument("--running-repeats", type=int, default=1, help="runs of d")
    parser.add_argument("--running-sleep", type=float, default=20.0, help="d: each job sleeps this long")
    parser.add_argument("--kill-after", type=float, default=1.0, help="d: s after the submission line")
    parser.add_argument("--cpus", type=int, default=16, help="CPUs of the pool's partitionable slot")
    parser.add_argument("--pool-dir", default="/var/tmp/mnist-app-scale-pool")
    parser.add_argument("--port", type=int, default=9731)
    parser.add_argument("--keep-pool", action="store_true", help="leave the pool running (no stopped row)")
    parser.add_argument("--keep-work", action="store_true", help="keep the sweeps and logs (/var/tmp)")
    parser.add_argument("--copy-sweep", help="copy the big sweep's folder here (cp -a) when it has finished")
    parser.add_argument(
        "--transfer-files",
        action="store_true",
        help="the launcher sweeps with hydra.launcher.transfer_files=true (HTCondor file transfer)",
    )
    parser.add_argument("--json", help="also write the rows to this file: [[what, value, notes], ...]")
    parser.add_argument("--bare-child", nargs=2, metavar=("N", "FOLDER"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.bare_child:
        bare_child(int(args.bare_child[0]), Path(args.bare_child[1]))
        return
    if args.transfer_files:
        MODE.append("hydra.launcher.transfer_files=true")

    pool = Pool(args.pool_dir, args.port, args.cpus)
    print(f"starting the pool in {args.pool_dir} ({args.cpus} CPUs, port {args.port})", flush=True)
    pool.start()
    # The commit of the launcher under test: its checkout may not be this script's (bench_ab.py).
    spec = importlib.util.find_spec("hydra_plugins.hydra_htcondor_launcher")
    plugin = (spec.submodule_search_locations or ["?"])[0] if spec else "?"
    tree = str(Path(plugin).parents[1]) if spec else str(REPO)
    head = subprocess.run(["git", "-C", tree, "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    diff = subprocess.run(
        ["git", "-C", tree, "diff", "--shortstat", "HEAD", "--", "."], capture_output=True, text=True
    )
    print(
        f"{time.strftime('%Y-%m-%d %H:%M')}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}; "
        f"launcher's commit {head.stdout.strip()}, "
        f"its tree vs HEAD: {diff.stdout.strip() or 'no changes'}; "
        f"launcher imported from {plugin}; mode: {shlex.join(MODE) or 'shared filesystem'}",
        flush=True,
    )
    rows: list[tuple[str, float | str, str]] = []  # (row, measured s or a word, notes)
    work = Path(tempfile.mkdtemp(prefix="bench-sweep-scale-", dir="/var/tmp"))
    os.chmod(work, 0o755)  # the pool user runs the jobs and writes into the sweep folders
    app = work / "app.py"
    app.write_text(APP)
    big = work / "big"
    try:
        if not args.skip_big:
            n = args.jobs
            master = pool.master_pid()
            pool_cpu0, load0 = tree_cpu(master), os.getloadavg()[0]
            run = run_timed(launcher_cmd(app, big, n), work, MARKERS)
            need(run, 0, "validated", "submitted", "completed")
            assert f"{n} of {n} job(s) completed" in run.lines["completed"], run.lines["completed"]
            pool_cpu = tree_cpu(master) - pool_cpu0
            waiting = run.cpu - run.cpu_at["submitted"]
            wait_wall = run.wall - run.seen["submitted"]
            validate = validation_s(run)
            print(f"a. launcher sweep of {n}: wall {run.wall:.1f} s, cpu {run.cpu:.1f} s", flush=True)
            rows += [
                (
                    f"a. {n}-job sweep through the launcher: wall, command start to exit",
                    run.wall,
                    f"load {load0:.1f} at start",
                ),
                (
                    "... Hydra's basic sweeper validates the batch (composes each job's config)",
                    validate,
                    "`Validated configs of N jobs in X seconds`",
                ),
                (
                    "... until all jobs are submitted (log time of the submission line)",
                    run.logged["submitted"],
                    f"the launcher's own part: {submit_s(run):.2f} s",
                ),
                ("... waiting: submission line to exit", wait_wall, f"{n / wait_wall:.1f} jobs/s"),
                ("... launcher process CPU (user+sys), all", run.cpu, ""),
                (
                    "... launcher process CPU while waiting (after the submission line)",
                    waiting,
                    f"{100 * waiting / wait_wall:.1f}% of one core",
                ),
                (
                    "... the pool's CPU: daemons, shadows, starters and the jobs (workers)",
                    pool_cpu,
                    f"{1000 * pool_cpu / n:.0f} ms/job; {pool_cpu / run.wall:.2f} cores busy on average",
                ),
            ]
            if args.copy_sweep:
                shutil.copytree(big, args.copy_sweep, symlinks=True)
            if not args.skip_bare:
                folder = work / "bare"
                folder.mkdir()
                os.chmod(folder, 0o755)
                pool_cpu0 = tree_cpu(master)
                bare = run_timed(
                    [sys.executable, __file__, "--bare-child", str(n), str(folder)],
                    work,
                    {"submitted": "jobs submitted as cluster", "ended": "jobs of cluster"},
                )
                need(bare, 0, "submitted", "ended")
                bare_pool = tree_cpu(master) - pool_cpu0
                bare_wait = bare.cpu - bare.cpu_at["submitted"]
                bare_wait_wall = bare.wall - bare.seen["submitted"]
                print(f"b. bare {n}: wall {bare.wall:.1f} s, cpu {bare.cpu:.1f} s", flush=True)
                rows += [
                    (
                        f"b. {n} bare jobs (`python -c pass`, htcondor2, event log): wall",
                        bare.wall,
                        f"launcher / bare: {run.wall / bare.wall:.2f}x",
                    ),
                    (
                        "... until submitted",
                        bare.seen["submitted"],
                        "interpreter + htcondor2 import + submit",
                    ),
                    ("... waiting", bare_wait_wall, f"{n / bare_wait_wall:.1f} jobs/s"),
                    ("... process CPU, all", bare.cpu, f"launcher / bare: {run.cpu / bare.cpu:.1f}x"),
                    (
                        "... process CPU while waiting",
                        bare_wait,
                        f"launcher / bare: {waiting / max(bare_wait, 0.01):.1f}x",
                    ),
                    (
                        "... the pool's CPU (daemons, shadows, starters, jobs)",
                        bare_pool,
                        f"{1000 * bare_pool / n:.0f} ms/job; launcher minus bare "
                        f"{1000 * (pool_cpu - bare_pool) / n:.0f} ms/job (the worker's own work)",
                    ),
                ]

        # c. re-attach to a finished sweep: the same command again.
        m = args.reattach_jobs
        done_sweep = work / "finished"
        first = run_timed(launcher_cmd(app, done_sweep, m), work, MARKERS)
        need(first, 0, "submitted", "completed")
        rows.append(
            (
                f"c0. {m}-job sweep, first run (for reference): wall",
                first.wall,
                f"submitted after {first.logged['submitted']:.2f} s",
            )
        )
        again = []
        for _ in range(args.repeats):
            r = run_timed(launcher_cmd(app, done_sweep, m), work, MARKERS)
            need(r, 0, "validated", "resuming", "completed")
            assert "submitted" not in r.seen, r.out[-2000:]
            assert f"{m} reused, 0 re-attached, 0 resubmitted" in r.lines["resuming"], r.lines["resuming"]
            again.append(r)
        rows += [
            (
                f"c. re-attach to a finished {m}-job sweep (same command): wall",
                statistics.median(r.wall for r in again),
                f"runs {[round(r.wall, 2) for r in again]}; {m} reused, nothing submitted",
            ),
            (
                "... start to Hydra's validation line (interpreter, imports, compose, validate)",
                statistics.median(r.logged["validated"] for r in again),
                f"of which validation {statistics.median(validation_s(r) for r in again):.2f} s",
            ),
            (
                "... the launcher's own part (validation line to last log line)",
                statistics.median(r.last_log - r.logged["validated"] for r in again),
                "",
            ),
        ]

        # d. re-attach to a running sweep: SIGKILL the submitter once its jobs are in the queue. The jobs
        # sleep, so that the pool's workers (on this machine's cores, unlike a real pool's) leave the CPU
        # to the re-attaching process most of the time.
        sleep = f"+sleep={args.running_sleep:g}"
        to_line, to_end, kinds, once, own = [], [], [], [], []
        for i in range(args.running_repeats):
            sweep = work / f"running{i}"
            killed = run_timed(
                launcher_cmd(app, sweep, m, sleep), work, MARKERS, "submitted", args.kill_after
            )
            if killed.rc != -signal.SIGKILL:
                raise RuntimeError(f"the submitter was not killed (exit {killed.rc}):\n{killed.out[-2000:]}")
            r = run_timed(launcher_cmd(app, sweep, m, sleep), work, MARKERS)
            need(r, 0, "validated", "resuming", "reattached", "completed")
            assert "submitted" not in r.seen, r.out[-2000:]
            to_line.append(r.logged["reattached"])
            to_end.append(r.wall)
            own.append(
                (r.logged["validated"], validation_s(r), r.logged["reattached"] - r.logged["validated"])
            )
            kinds.append(r.lines["resuming"].split("resuming sweep: ", 1)[1])
            sweep_id = json.loads((sweep / ".htcondor" / "manifest.json").read_text())["sweep_id"]
            counts = procs_per_job(sweep_id)
            once.append(sorted(counts) == list(range(m)) and set(counts.values()) == {1})
        rows += [
            (
                f"d. re-attach to a running {m}-job sweep (jobs sleep {args.running_sleep:g} s): "
                "start to the `re-attached` line",
                statistics.median(to_line),
                f"SIGKILL {args.kill_after:g} s after the submission line; {'; '.join(kinds)}",
            ),
            (
                "... start to Hydra's validation line",
                statistics.median(v for v, _, _ in own),
                f"of which validation {statistics.median(x for _, x, _ in own):.2f} s",
            ),
            (
                "... the launcher's own part (validation line to the `re-attached` line)",
                statistics.median(x for _, _, x in own),
                "manifest, schedd query, plan",
            ),
            (
                "... start to exit (all jobs collected)",
                statistics.median(to_end),
                f"runs {[round(x, 2) for x in to_end]}",
            ),
            (
                "... one proc per job number in the schedd's queue+history",
                "yes" if all(once) else "NO",
                f"{sum(once)} of {len(once)} runs",
            ),
        ]
        if not all(once):
            raise RuntimeError("a job number was submitted twice (or never)")

        # e. status of the big sweep's folder, pool running, then stopped.
        if not args.skip_big:
            states = ["running"] + ([] if args.keep_pool else ["stopped"])
            for state in states:
                if state == "stopped":
                    pool.stop()
                walls, codes = [], set()
                for _ in range(args.repeats):
                    r = run_timed([str(CLI), "status", str(big)], work, {})
                    walls.append(r.wall)
                    codes.add(r.rc)
                rows.append(
                    (
                        f"e. `hydra-htcondor status` of the {args.jobs}-job folder, pool {state}",
                        statistics.median(walls),
                        f"runs {[round(x, 2) for x in walls]}, exit {sorted(codes)}",
                    )
                )
    finally:
        if not args.keep_pool:
            pool.stop()
        if args.keep_work:
            print(f"work folder (sweeps, logs): {work}", flush=True)
        else:
            shutil.rmtree(work, ignore_errors=True)

    print(f"\nload average at the end: {os.getloadavg()[0]:.2f}")
    print("\n| what | s | notes |\n|---|---:|---|")
    for what, value, notes in rows:
        print(f"| {what} | {fmt(value)} | {notes} |")
    if args.json:
        Path(args.json).write_text(json.dumps(rows))


if __name__ == "__main__":
    main()
