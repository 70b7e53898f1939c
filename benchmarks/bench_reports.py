"""Intermediate reports (reporting.report) on the local pool: what a report costs the job, and how long it
takes to reach the launcher's JobRecord, per channel.

One job per channel reports --reports times, --gap seconds apart; each report's value is the wall-clock time
it was sent, so the submit side's arrival time (``_jobstate.reported`` wrapped) minus the value is the
latency. Channels: the report file (shared filesystem), this package's chirp client (file transfer), and
the baseline, HTCondor's own ``condor_chirp ulog`` binary run by the same job with the same line. The
launcher polls every --poll seconds: half of that is the latency's average floor.

    eval "$(scripts/condor-pool env)"; python benchmarks/bench_reports.py
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import tempfile
import time
from pathlib import Path

import htcondor2
from bench_launcher import make_launcher
from hydra.core.global_hydra import GlobalHydra
from hydra_plugins.hydra_htcondor_launcher import _jobstate


def reporting_task(cfg):
    """Report cfg.n times, each value the time it was sent; returns each report call's seconds."""
    import subprocess

    from hydra_plugins.hydra_htcondor_launcher._contract import report_line
    from hydra_plugins.hydra_htcondor_launcher.reporting import report

    spent = []
    for step in range(cfg.n):
        now = time.time()
        if cfg.binary:  # the baseline: HTCondor's own client, a process per report
            subprocess.run([cfg.binary, "ulog", report_line(step, now)], check=True)
        else:
            report(step, now)
        spent.append(time.time() - now)
        time.sleep(cfg.gap)
    return spent


def run(channel: str, tmp: Path, args: argparse.Namespace, binary: str) -> dict[str, float]:
    arrivals: list[float] = []
    real = _jobstate.reported

    def timed(rec, step, value):
        arrivals.append(time.time() - value)
        real(rec, step, value)

    extra = [f"hydra.launcher.poll_interval={args.poll}", "hydra.launcher.status_interval=1000"]
    if channel != "file":
        extra.append("hydra.launcher.transfer_files=true")  # want_io_proxy: chirp
    _jobstate.reported = timed
    try:
        launcher = make_launcher(tmp / channel, extra, task=reporting_task)
        use = binary if channel == "baseline" else "''"
        job = [f"+n={args.reports}", f"+gap={args.gap}", f"+binary={use}"]
        (ret,) = launcher.launch([job], initial_job_idx=0)
        spent = ret.return_value
    finally:
        _jobstate.reported = real
        GlobalHydra.instance().clear()
    if len(arrivals) != args.reports:
        raise SystemExit(f"{channel}: {len(arrivals)} of {args.reports} reports arrived")
    ms = sorted(1000 * a for a in arrivals)
    return {
        "call ms (median)": 1000 * statistics.median(spent),
        "call ms (max)": 1000 * max(spent),
        "latency ms (median)": statistics.median(ms),
        "latency ms (p90)": ms[int(0.9 * (len(ms) - 1))],
        "latency ms (max)": ms[-1],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reports", type=int, default=20)
    parser.add_argument("--gap", type=float, default=0.2)
    parser.add_argument("--poll", type=float, default=0.05)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    binary = os.path.join(htcondor2.param["LIBEXEC"], "condor_chirp")  # one machine: the worker's LIBEXEC too
    labels = {
        "baseline": "`condor_chirp ulog` (baseline)",
        "chirp": "chirp, reporting.py (file transfer)",
        "file": "report file (shared filesystem)",
    }
    with tempfile.TemporaryDirectory() as tmp:
        rows = {labels[channel]: run(channel, Path(tmp), args, binary) for channel in labels}
    base = rows[labels["baseline"]]
    cols = list(base)
    print(f"{args.reports} reports per channel, {args.gap} s apart, launcher poll_interval {args.poll} s\n")
    print("| channel | " + " | ".join(cols) + " | call vs baseline | latency vs baseline |")
    print("|---|" + "---:|" * (len(cols) + 2))
    for name, row in rows.items():
        cells = " | ".join(f"{row[c]:.1f}" for c in cols)
        ratio_call = row["call ms (median)"] / base["call ms (median)"]
        ratio_lat = row["latency ms (median)"] / base["latency ms (median)"]
        print(f"| {name} | {cells} | {ratio_call:.2f}x | {ratio_lat:.2f}x |")


if __name__ == "__main__":
    main()
