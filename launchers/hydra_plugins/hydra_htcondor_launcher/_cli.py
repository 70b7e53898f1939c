"""``hydra-htcondor``: look at and act on a sweep folder from any shell, with or without the process that
submitted it (README, "Resume, detach, status").

    hydra-htcondor status SWEEP_DIR [--watch] [--state S,..] [--max-rows N]
                                                the job table; exit 0 all done, 1 some failed, 3 unfinished
    hydra-htcondor rm SWEEP_DIR                 remove the sweep's jobs still in the queue
    hydra-htcondor logs SWEEP_DIR N             job N's stdout/stderr tails and event history
    hydra-htcondor repair SWEEP_DIR             rebuild a damaged manifest from HTCondor and the sweep folder

State comes from the sweep's reader (``view``: the manifest and every cluster of the jobs' event logs, files
only: a finished sweep never needs the pool); the schedd is asked only for what files cannot say (a job
HTCondor no longer knows) and by `rm`.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Collection, Sequence
from typing import Any

import cloudpickle

from . import _jobstate, _schedd
from ._contract import return_note
from ._errors import HTCondorLauncherError
from ._folder import SweepFolder
from ._jobstate import JobRecord, JobState
from ._layout import SweepLayout, result_note_path
from ._manifest import Manifest
from ._status import shown_jobs, status_table
from ._view import relocated, view_of

EXIT_DONE, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_UNFINISHED = 0, 1, 2, 3
TAIL_LINES = 20
# What --state accepts: the counts line's states (failed includes removed).
STATES = ("idle", "running", "disconnected", "held", "done", "failed")


def _htcondor() -> Any:
    import htcondor2

    return htcondor2


def records(manifest: Manifest) -> dict[int, JobRecord]:
    """One record per job of the manifest, as the sweep's reader (``view``) sees it from the event logs."""
    return view_of(manifest).records


def _lost(manifest: Manifest, recs: dict[int, JobRecord]) -> str | None:
    """Mark unfinished jobs the schedd knows in neither queue nor history; None, or why the pool could not
    be asked (one line)."""
    by_cluster: dict[int, list[JobRecord]] = {}
    for rec in recs.values():
        if not rec.final and rec.cluster is not None and rec.proc >= 0:
            by_cluster.setdefault(rec.cluster, []).append(rec)
    if not by_cluster:
        return None
    try:
        schedd = SweepFolder(manifest).schedd()
        known = {
            cluster: _schedd.known_procs(schedd, cluster, [rec.proc for rec in pending], manifest.sweep_id)
            for cluster, pending in by_cluster.items()
        }
    except Exception as exc:
        return (
            f"pool unreachable for live state ({' '.join(str(exc).split())[:200]}); showing the files' view"
        )
    for cluster, pending in by_cluster.items():
        for rec in pending:
            if rec.proc not in known[cluster]:
                _jobstate.lost(rec, _schedd.LOST)
    return None


# Return values read from result files, by (path, mtime, size): `status --watch` reads each file once.
_notes: dict[tuple[str, int, int], str] = {}


def _result_note(entry: dict[str, Any]) -> str | None:
    """The job's return value as the launcher noted it in the manifest when it collected the job, else as the
    worker noted it next to its result file (a detached sweep nobody collected yet), else from that file."""
    if entry.get("returned") is not None:
        return str(entry["returned"])
    path = entry.get("result")
    try:
        st = os.stat(path) if path else None
    except OSError:
        st = None
    if path is None or st is None:
        return None
    key = (path, st.st_mtime_ns, st.st_size)
    if key not in _notes:
        try:  # the worker's one-line note, written after the result
            with open(result_note_path(path), encoding="utf-8", errors="replace") as f:
                _notes[key] = f.read()
            return _notes[key]
        except OSError:
            pass
        try:
            with open(path, "rb") as f:
                ret = cloudpickle.load(f)
            _notes[key] = return_note(ret._return_value)
        except Exception as exc:
            return f"unreadable result: {type(exc).__name__}"
    return _notes[key]


def render(
    manifest: Manifest,
    recs: dict[int, JobRecord],
    *,
    max_rows: int | None = None,
    states: Collection[JobState] | None = None,
) -> str:
    """The job table (every job, or those in `states`, at most max_rows), then the return value of each
    finished job it shows, and where every job's logs are."""
    title = f"sweep {manifest.sweep_dir}"
    now = time.time()
    lines = [status_table(title, recs, now - manifest.updated, now, max_rows=max_rows, states=states)]
    names = SweepLayout(manifest.sweep_dir, manifest.htcondor_dir)
    out, err, log = (
        os.path.basename(p) for p in (names.stdout("N"), names.stderr("N"), names.batch_log("*", "*"))
    )
    lines.append(f"logs in {manifest.htcondor_dir} ({out}, {err}; event logs {log})")
    shown = shown_jobs(recs, now, max_rows=max_rows, states=states)
    for rec in sorted(shown, key=lambda rec: rec.num):
        if rec.state in (JobState.DONE, JobState.FAILED):
            note = _result_note(manifest.jobs[str(rec.num)])
            if note is not None:
                lines.append(f"  #{rec.num} -> {note}")
    return "\n".join(lines)


def _exit_status(recs: dict[int, JobRecord]) -> int:
    if not all(rec.final for rec in recs.values()):
        return EXIT_UNFINISHED
    return EXIT_DONE if all(rec.state is JobState.DONE for rec in recs.values()) else EXIT_FAILED


def status(
    sweep_dir: str,
    watch: bool = False,
    interval: float = 5.0,
    *,
    max_rows: int | None = None,
    states: Collection[JobState] | None = None,
) -> int:
    while True:
        folder = os.path.abspath(sweep_dir)
        manifest = relocated(Manifest.load(folder), folder)  # a copied sweep folder reads as itself
        view = view_of(manifest)
        recs = view.records
        problems = view.all_notes()
        problem = _lost(manifest, recs)
        if problem is not None:
            problems.append(problem)
        for problem in problems:  # a missing log is not silently "no news"
            print(f"hydra-htcondor: {problem}", file=sys.stderr)
        code = _exit_status(recs)
        try:
            print(render(manifest, recs, max_rows=max_rows, states=states), flush=True)
        except BrokenPipeError:  # `hydra-htcondor status DIR | head`: the reader has what it wanted
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
            return code
        if not watch or code != EXIT_UNFINISHED:
            return code
        time.sleep(interval)


def _states(text: str) -> set[JobState]:
    """--state's value: a comma-separated list of STATES."""
    names = [name.strip() for name in text.split(",") if name.strip()]
    bad = [name for name in names if name not in STATES]
    if bad or not names:
        raise argparse.ArgumentTypeError(
            f"invalid state {(bad or [text])[0]!r} (accepted: a comma-separated list of {', '.join(STATES)})"
        )
    return {JobState(name) for name in names}


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"invalid number of rows {text!r} (accepted: a whole number >= 1)")
    return value


def rm(sweep_dir: str) -> int:
    folder = SweepFolder.open(sweep_dir)
    try:
        removed = folder.remove_all()
    except Exception as exc:
        raise HTCondorLauncherError(f"pool unreachable: {' '.join(str(exc).split())[:300]}") from None
    ids = f": {', '.join(removed)}" if removed else ""
    print(f"removed {len(removed)} job(s) of the sweep {folder.manifest.sweep_dir}{ids}")
    return 0


def _tail(path: str, lines: int = TAIL_LINES) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 64 * 1024))
            text = f.read().decode(errors="replace")
    except OSError as exc:
        return f"  ({exc.strerror or exc})"
    return "\n".join("  " + line for line in text.splitlines()[-lines:]) or "  (empty)"


def logs(sweep_dir: str, num: int) -> int:
    folder = SweepFolder.open(sweep_dir)
    manifest = folder.manifest
    entry = manifest.job(num)
    if entry is None:
        known = ", ".join(sorted(manifest.jobs, key=int)) or "none"
        raise HTCondorLauncherError(f"job {num} is not in the sweep {manifest.sweep_dir} (jobs: {known})")
    out: list[str] = []
    paths = {"stdout": folder.layout.stdout(num), "stderr": folder.layout.stderr(num)}
    for what, default in paths.items():
        path = entry.get(what) or default
        out.append(f"== {what} {path} (last {TAIL_LINES} lines)")
        out.append(_tail(path))
    out.append(f"== events of HTCondor {entry.get('cluster')}.{entry.get('proc')} in {entry.get('log')}")
    try:
        events = folder.job_events(num)
        out += ["  (no event log)"] if events is None else [f"  {line}" for line in events]
    except Exception as exc:
        out.append(f"  (unreadable: {exc})")
    print("\n".join(out))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="hydra-htcondor", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p_status = sub.add_parser("status", help="the sweep's job table")
    p_status.add_argument("sweep_dir")
    p_status.add_argument("--watch", action="store_true", help="repeat until every job has ended")
    p_status.add_argument("--interval", type=float, default=5.0, help="seconds between tables (--watch)")
    p_status.add_argument(
        "--state",
        type=_states,
        metavar="S[,S...]",
        help=f"show only the jobs in these states ({', '.join(STATES)}); the counts line counts all",
    )
    p_status.add_argument(
        "--max-rows",
        type=_positive_int,
        metavar="N",
        help="show at most N jobs, those that matter first (held, failed, running, just done); default all",
    )
    p_rm = sub.add_parser("rm", help="remove the sweep's jobs still in the queue")
    p_rm.add_argument("sweep_dir")
    p_logs = sub.add_parser("logs", help="a job's stdout/stderr tails and event history")
    p_logs.add_argument("sweep_dir")
    p_logs.add_argument("num", type=int)
    p_repair = sub.add_parser("repair", help="rebuild a damaged manifest from HTCondor and the sweep folder")
    p_repair.add_argument("sweep_dir")
    args = parser.parse_args(argv)
    try:
        if args.command == "status":
            return status(
                args.sweep_dir,
                watch=args.watch,
                interval=args.interval,
                max_rows=args.max_rows,
                states=args.state,
            )
        if args.command == "rm":
            return rm(args.sweep_dir)
        if args.command == "repair":
            from ._repair import repair

            print(repair(args.sweep_dir, _htcondor()))
            return EXIT_DONE
        return logs(args.sweep_dir, args.num)
    except HTCondorLauncherError as exc:
        print(f"hydra-htcondor: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
