"""Rendering of the live job-status table: a counts line, then one aligned row per job that matters, the
rest summed up in a last line (pure text)."""

from __future__ import annotations

import time
from collections.abc import Collection, Mapping

from ._contract import OUTSIDE_FAILURE, TASK_RAISED
from ._jobstate import JobRecord, JobState

# Table order: what needs attention first, then what is in flight, what just finished (RECENT_S), then the
# quiet majority: waiting, then long done. A big sweep's table shows the first max_rows of these.
_ORDER = {
    JobState.HELD: 0,
    JobState.FAILED: 1,
    JobState.REMOVED: 1,
    JobState.DISCONNECTED: 2,
    JobState.RUNNING: 3,
    JobState.IDLE: 5,
    JobState.DONE: 6,
}
_RECENTLY_DONE = 4
RECENT_S = 60.0  # a few live tables' worth
# The counts line counts removed jobs as failed, and names disconnected jobs only when there are some (the
# line stays what it always was otherwise).
_COUNTED = (
    JobState.IDLE,
    JobState.RUNNING,
    JobState.DISCONNECTED,
    JobState.HELD,
    JobState.DONE,
    JobState.FAILED,
)
_COUNTED_IF_ANY = frozenset({JobState.DISCONNECTED})
MAX_ROWS = 20
_NOTE_CHARS = 60
_OVERRIDES_CHARS = 80  # the last column: longer costs no alignment


def status_line(cluster: int | str, records: Mapping[int, JobRecord], elapsed: float) -> str:
    counts = dict.fromkeys(_COUNTED, 0)
    for rec in records.values():
        counts[JobState.FAILED if rec.state is JobState.REMOVED else rec.state] += 1
    parts = ", ".join(
        f"{n} {state.value}" for state, n in counts.items() if n or state not in _COUNTED_IF_ANY
    )
    where = f"HTCondor cluster {cluster}" if isinstance(cluster, int) else cluster
    return f"{where}: {parts} of {len(records)} jobs [{elapsed:.0f}s]"


def _shorten(text: str, limit: int) -> str:
    text = " ".join(text.split())  # hold reasons can span lines
    return text if len(text) <= limit else text[: limit - 3] + "..."


def format_duration(seconds: float | None) -> str:
    """Compact and sortable by eye: 42s, 3m05s, 2h07m, 1d04h; '-' when unknown."""
    if seconds is None:
        return "-"
    s = max(0, int(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def _time(rec: JobRecord, now: float) -> float | None:
    # Running and ended jobs: run time; idle and held ones: time in that state so far.
    if rec.state is JobState.RUNNING and rec.run_start is not None:
        return now - rec.run_start
    if rec.final:
        if rec.run_start is not None and rec.run_end is not None and rec.run_end >= rec.run_start:
            return rec.run_end - rec.run_start
        return None
    return None if rec.since is None else now - rec.since


def clock_time(epoch: float) -> str:
    """A wall-clock time, local, to the second: 16:00:18 (what the table shows is within hours of now)."""
    return time.strftime("%H:%M:%S", time.localtime(epoch))


def _disconnected_note(rec: JobRecord) -> str:
    since = "since ?" if rec.since is None else f"since {clock_time(rec.since)}"
    if rec.disconnected_until is None:
        return f"{since}, HTCondor waits for its lease (length unknown)"
    return f"{since}, HTCondor waits until {clock_time(rec.disconnected_until)}"


def _exit_note(rec: JobRecord) -> str | None:
    if rec.signal is not None:
        return f"signal {rec.signal}"
    if rec.exit_code is None:
        return None
    # The worker's own codes say what failed (its result carries the exception).
    what = {TASK_RAISED: "task raised", OUTSIDE_FAILURE: "worker error"}.get(rec.exit_code)
    return f"exit {rec.exit_code}" + (f" ({what})" if what else "")


def _note(rec: JobRecord) -> str:
    parts = []
    if rec.state in (JobState.DONE, JobState.FAILED):
        note = _exit_note(rec)
        if note is not None:
            parts.append(note)
    elif rec.state is JobState.HELD or (rec.state is JobState.REMOVED and rec.hold_reason is not None):
        parts.append(f"held: {_shorten(rec.hold_reason or 'no hold reason given', _NOTE_CHARS)}")
    elif rec.state is JobState.REMOVED:
        parts.append(_shorten(rec.abort_reason or "no reason given", _NOTE_CHARS))
    elif rec.state is JobState.DISCONNECTED:
        parts.append(_disconnected_note(rec))
    if rec.releases:
        parts.append(f"released {rec.releases}x")
    if rec.evictions:
        parts.append(f"evicted x{rec.evictions}")
    if rec.reconnect_failures:
        parts.append(f"reconnect failed x{rec.reconnect_failures}")
    if rec.retries:
        last = _exit_note(rec) if not rec.final else None
        parts.append(f"retried x{rec.retries}" + (f" after {last}" if last else ""))
    return "; ".join(parts)


def _rank(rec: JobRecord, now: float) -> tuple[int, float, int]:
    if rec.state is JobState.DONE and rec.run_end is not None and now - rec.run_end <= RECENT_S:
        return (_RECENTLY_DONE, -rec.run_end, rec.num)  # the latest first
    return (_ORDER[rec.state], 0.0, rec.num)


def shown_jobs(
    records: Mapping[int, JobRecord],
    now: float,
    *,
    max_rows: int | None = MAX_ROWS,
    states: Collection[JobState] | None = None,
) -> list[JobRecord]:
    """The jobs a table shows, in its order: those in `states` (all when None; FAILED includes REMOVED, as
    counted), the ones that matter first, at most max_rows (None: no cap)."""
    if states is not None and JobState.FAILED in states:
        states = {*states, JobState.REMOVED}
    chosen = [rec for rec in records.values() if states is None or rec.state in states]
    chosen.sort(key=lambda rec: _rank(rec, now))
    return chosen if max_rows is None else chosen[:max_rows]


def status_table(
    cluster: int | str,
    records: Mapping[int, JobRecord],
    elapsed: float,
    now: float,
    *,
    max_rows: int | None = MAX_ROWS,
    states: Collection[JobState] | None = None,
) -> str:
    """The counts line (of every job), then one aligned row per job of shown_jobs(); the others summed up
    in a last line (`... and 940 more (60 running, 880 idle)`).

    `now` is wall-clock epoch seconds, the clock of the event log's timestamps. `cluster` is the cluster of
    every job, or (a sweep of several clusters) the title of the counts line, each record naming its own.
    """
    shown = shown_jobs(records, now, max_rows=max_rows, states=states)
    rows = [("job", "id", "state", "host", "time", "note", "overrides")]
    for rec in shown:
        rows.append(
            (
                f"#{rec.num}",
                "-" if rec.proc < 0 else f"{rec.cluster if rec.cluster is not None else cluster}.{rec.proc}",
                rec.state.value,
                "-" if rec.state is JobState.IDLE or rec.host is None else rec.host,
                format_duration(_time(rec, now)),
                _note(rec),
                _shorten(rec.overrides, _OVERRIDES_CHARS),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [status_line(cluster, records, elapsed)]
    if shown:
        for row in rows:
            cells = [
                cell.rjust(width) if col == 4 else cell.ljust(width)  # durations right-aligned
                for col, (cell, width) in enumerate(zip(row, widths, strict=True))
            ]
            lines.append(("  " + "  ".join(cells)).rstrip())
    if len(shown) < len(records):
        counts = dict.fromkeys(sorted(_ORDER, key=_ORDER.__getitem__), 0)
        ids = {id(rec) for rec in shown}
        for rec in records.values():
            if id(rec) not in ids:
                counts[rec.state] += 1
        summary = ", ".join(f"{n} {state.value}" for state, n in counts.items() if n)
        more = "more" if shown else "jobs, none shown"
        lines.append(f"  ... and {len(records) - len(shown)} {more} ({summary})")
    return "\n".join(lines)
