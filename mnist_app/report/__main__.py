"""``python -m mnist_app.report SWEEP_DIR``: rebuild a sweep's summary.csv and report.html, print it."""

from __future__ import annotations

import argparse
import os
import sys

from mnist_app.report import NotASweepError, build_report
from mnist_app.report.render import REPORT_HTML, SUMMARY_CSV, table_text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m mnist_app.report",
        description=f"Rebuild {SUMMARY_CSV} and {REPORT_HTML} of a sweep folder (finished, partial, failed "
        "or detached) and print its jobs ranked by the optimised metric.",
    )
    parser.add_argument("sweep_dir", help="a `-m` run's folder, e.g. outputs/sweeps/2026-01-31/12-00-00")
    parser.add_argument("--max-rows", type=int, default=1000, help="rows of the printed table (default 1000)")
    args = parser.parse_args(argv)
    try:
        sweep = build_report(args.sweep_dir)
    except NotASweepError as err:
        sys.stderr.write(f"python -m mnist_app.report: error: {err}\n")
        return 2
    try:
        sys.stdout.write(table_text(sweep, max_rows=args.max_rows) + "\n")
        sys.stdout.write(f"wrote {sweep.sweep_dir / SUMMARY_CSV} and {sweep.sweep_dir / REPORT_HTML}\n")
        sys.stdout.flush()
    except BrokenPipeError:  # `... | head`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0


if __name__ == "__main__":
    sys.exit(main())
