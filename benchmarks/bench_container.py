"""Container universe vs vanilla universe on the local pool: latency of one trivial job.

The same job (`python3 -c pass`, file transfer on, 128 MB) is submitted alone and awaited through its event
log, alternating between HTCondor's vanilla universe (the host's python3) and its container universe (the
worker test image mnist-app-test-worker:latest, python3 inside it), --repeats times each; medians reported,
split into submit -> execute (negotiation, transfer in, container start) and execute -> terminated.

Needs the engine, the image and the pool's container jobs turned on:

    scripts/container-runtime start && scripts/container-runtime image
    scripts/condor-pool docker on
    eval "$(scripts/condor-pool env)"
    python benchmarks/bench_container.py
    scripts/condor-pool docker off && scripts/container-runtime stop
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import htcondor2

IMAGE = "docker://mnist-app-test-worker:latest"
UNIVERSES = ("vanilla", "container")


def _description(universe: str, folder: Path) -> dict[str, str]:
    desc = {
        "universe": universe,
        "initialdir": str(folder),  # not the cwd: HTCondor's docker support writes docker_stderror there
        "executable": "/usr/bin/env",
        "arguments": "python3 -c pass",
        "transfer_executable": "false",
        "should_transfer_files": "YES",
        "when_to_transfer_output": "ON_EXIT",
        "output": str(folder / "job.out"),
        "error": str(folder / "job.err"),
        "log": str(folder / "job.log"),
        "request_memory": "128MB",
        "request_disk": "100MB",
    }
    if universe == "container":
        desc["container_image"] = IMAGE
    return desc


def one_job(
    schedd: htcondor2.Schedd, universe: str, folder: Path, timeout: float = 120
) -> tuple[float, float]:
    """(submit -> execute, execute -> terminated) in seconds for one trivial job."""
    folder.mkdir(parents=True)
    tic = time.perf_counter()
    cluster = schedd.submit(htcondor2.Submit(_description(universe, folder))).cluster()
    log = htcondor2.JobEventLog(str(folder / "job.log"))
    executed = None
    deadline = tic + timeout
    while time.perf_counter() < deadline:
        for event in log.events(stop_after=0):
            now = time.perf_counter()
            if event.type == htcondor2.JobEventType.EXECUTE and executed is None:
                executed = now
            elif event.type == htcondor2.JobEventType.JOB_TERMINATED:
                if event.get("ReturnValue") != 0:
                    raise SystemExit(
                        f"{universe} job {cluster}.0 exited with {event.get('ReturnValue')}: "
                        f"see {folder / 'job.err'}"
                    )
                return (executed or now) - tic, now - (executed or now)
            elif event.type == htcondor2.JobEventType.JOB_HELD:
                raise SystemExit(f"{universe} job {cluster}.0 was held: {event.get('HoldReason')}")
        time.sleep(0.05)
    schedd.act(htcondor2.JobAction.Remove, f"{cluster}.0")
    raise SystemExit(f"{universe} job {cluster}.0 did not finish in {timeout:g} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    schedd = htcondor2.Schedd()
    runs: dict[str, list[tuple[float, float]]] = {u: [] for u in UNIVERSES}
    with tempfile.TemporaryDirectory(prefix="bench-container-") as tmp:
        one_job(schedd, "container", Path(tmp) / "warm-up")  # first container start pays for page cache
        for i in range(args.repeats):
            for universe in UNIVERSES:
                runs[universe].append(one_job(schedd, universe, Path(tmp) / f"{universe}-{i}"))
    print(f"\n### One trivial job, submit to terminated (median of {args.repeats}, alternating)\n")
    print("| universe | submit -> execute s | execute -> terminated s | total s |")
    print("|---|---:|---:|---:|")
    medians = {}
    for universe in UNIVERSES:
        start = statistics.median(r[0] for r in runs[universe])
        run = statistics.median(r[1] for r in runs[universe])
        medians[universe] = statistics.median(r[0] + r[1] for r in runs[universe])
        print(f"| {universe} | {start:.2f} | {run:.2f} | {medians[universe]:.2f} |")
    print(f"\ncontainer - vanilla: {medians['container'] - medians['vanilla']:+.2f} s per job")
    for universe in UNIVERSES:
        print(f"{universe} totals: " + ", ".join(f"{a + b:.2f}" for a, b in runs[universe]))


if __name__ == "__main__":
    main()
