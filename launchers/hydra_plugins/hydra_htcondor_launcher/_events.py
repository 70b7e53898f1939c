"""Follow one cluster through its job event log (not by polling the schedd) until every proc has ended."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

# Job states shown in the status table; the last three are final.
IDLE, RUNNING, HELD, DONE, FAILED, REMOVED = "idle", "running", "held", "done", "failed", "removed"
FINAL = (DONE, FAILED, REMOVED)
# Table order: what needs attention first, then what is in flight, then the quiet majority.
_ORDER = {HELD: 0, FAILED: 1, REMOVED: 1, RUNNING: 2, IDLE: 3, DONE: 4}
MAX_ROWS = 20
_NOTE_CHARS = 60
_OVERRIDES_CHARS = 80  # the last column: longer costs no alignment


@dataclass
class ProcState:
    proc: int
    num: int
    state: str = IDLE
    exit_code: int | None = None
    signal: int | None = None
    hold_reason: str | None = None
    holds: int = 0
    releases: int = 0
    abort_reason: str | None = None
    timed_out: bool = False
    # The launcher asked the schedd to remove this job (after a hold, a deadline or Ctrl-C).
    removed_by_launcher: bool = False
    # For the status table: the job's overrides as the launcher shows them, where its last run was, and
    # wall-clock times (epoch seconds, from the event log) of the current state and of the last run.
    overrides: str = ""
    host: str | None = None
    since: float | None = None
    run_start: float | None = None
    run_end: float | None = None

    @property
    def final(self) -> bool:
        return self.state in FINAL


def status_line(cluster: int, states: Mapping[int, ProcState], elapsed: float) -> str:
    counts = {name: 0 for name in (IDLE, RUNNING, HELD, DONE, FAILED)}
    for st in states.values():
        counts[FAILED if st.state == REMOVED else st.state] += 1
    parts = ", ".join(f"{n} {name}" for name, n in counts.items())
    return f"HTCondor cluster {cluster}: {parts} of {len(states)} jobs [{elapsed:.0f}s]"


def short_host(slot_name: str | None, execute_host: str | None) -> str | None:
    """Where a job runs, short: the EXECUTE event's SlotName (`slot1_2@node7`, domain dropped), else the
    host from its ExecuteHost sinful string (`<10.0.0.7:9618?addrs=...&alias=node7.example.org>`)."""
    if slot_name:
        slot, _, host = str(slot_name).partition("@")
        return f"{slot}@{_drop_domain(host)}" if host else slot
    if not execute_host:
        return None
    sinful = str(execute_host).strip("<>")
    addr, _, query = sinful.partition("?")
    for param in query.split("&"):
        key, _, value = param.partition("=")
        if key == "alias" and value:
            return _drop_domain(value)
    return addr or None


def _drop_domain(host: str) -> str:
    # node7.example.org -> node7; an IP address stays whole.
    first = host.split(".")[0]
    return host if first.isdigit() else first


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


def _time(st: ProcState, now: float) -> float | None:
    # Running and ended jobs: run time; idle and held ones: time in that state so far.
    if st.state == RUNNING and st.run_start is not None:
        return now - st.run_start
    if st.final:
        if st.run_start is not None and st.run_end is not None and st.run_end >= st.run_start:
            return st.run_end - st.run_start
        return None
    return None if st.since is None else now - st.since


def _note(st: ProcState) -> str:
    parts = []
    if st.state in (DONE, FAILED):
        if st.signal is not None:
            parts.append(f"signal {st.signal}")
        elif st.exit_code is not None:
            parts.append(f"exit {st.exit_code}")
    elif st.state == HELD or (st.state == REMOVED and st.hold_reason is not None):
        parts.append(f"held: {_shorten(st.hold_reason or 'no hold reason given', _NOTE_CHARS)}")
    elif st.state == REMOVED:
        parts.append(_shorten(st.abort_reason or "no reason given", _NOTE_CHARS))
    if st.releases:
        parts.append(f"released {st.releases}x")
    return "; ".join(parts)


def status_table(
    cluster: int,
    states: Mapping[int, ProcState],
    elapsed: float,
    now: float,
    *,
    max_rows: int = MAX_ROWS,
) -> str:
    """The counts line, then one aligned row per job (at most max_rows; the rest summed up in a last line).

    `now` is wall-clock epoch seconds, the clock of the event log's timestamps.
    """
    ordered = sorted(states.values(), key=lambda st: (_ORDER[st.state], st.num))
    shown, rest = ordered[:max_rows], ordered[max_rows:]
    rows = [("job", "id", "state", "host", "time", "note", "overrides")]
    for st in shown:
        rows.append(
            (
                f"#{st.num}",
                f"{cluster}.{st.proc}",
                st.state,
                "-" if st.state == IDLE or st.host is None else st.host,
                format_duration(_time(st, now)),
                _note(st),
                _shorten(st.overrides, _OVERRIDES_CHARS),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [status_line(cluster, states, elapsed)]
    for row in rows:
        cells = [
            cell.rjust(width) if col == 4 else cell.ljust(width)  # durations right-aligned
            for col, (cell, width) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append(("  " + "  ".join(cells)).rstrip())
    if rest:
        counts = {name: 0 for name in sorted(_ORDER, key=_ORDER.__getitem__)}
        for st in rest:
            counts[st.state] += 1
        summary = ", ".join(f"{n} {name}" for name, n in counts.items() if n)
        lines.append(f"  ... and {len(rest)} more ({summary})")
    return "\n".join(lines)


class ClusterWatcher:
    """Reads the batch's event log, keeps one ProcState per proc, releases or removes held jobs."""

    def __init__(
        self,
        htcondor: Any,
        schedd: Any,
        cluster: int,
        log_file: str,
        proc_to_num: Mapping[int, int],
        *,
        max_releases: int,
        poll_interval: float,
        status_interval: float,
        timeout_s: float,
        overrides: Mapping[int, str] | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        max_rows: int = MAX_ROWS,
        change_gap_s: float = 5.0,
    ) -> None:
        self.htcondor = htcondor
        self.schedd = schedd
        self.cluster = cluster
        self.log_file = log_file
        overrides = overrides or {}
        self.states = {
            proc: ProcState(proc=proc, num=num, overrides=overrides.get(proc, ""))
            for proc, num in proc_to_num.items()
        }
        self.max_releases = max_releases
        self.poll_interval = poll_interval
        self.status_interval = status_interval
        self.timeout_s = timeout_s
        self.clock = clock
        self.wall_clock = wall_clock
        self.max_rows = max_rows
        self.change_gap_s = change_gap_s
        self._events: Any = None

    # -- schedd actions ------------------------------------------------------------------------
    def _act(self, action: str, job_spec: str | list[str]) -> None:
        try:
            self.schedd.act(getattr(self.htcondor.JobAction, action), job_spec)
        except Exception as exc:
            log.warning("HTCondor %s of %s failed: %s", action.lower(), job_spec, exc)

    def remove_unfinished(self, reason: str) -> list[int]:
        """Remove every proc that has not ended; returns their job numbers."""
        pending = [st for st in self.states.values() if not st.final]
        if pending:
            if len(pending) == len(self.states):
                self._act("Remove", f"ClusterId == {self.cluster}")
            else:
                self._act("Remove", [f"{self.cluster}.{st.proc}" for st in pending])
            for st in pending:
                st.removed_by_launcher = True
                st.abort_reason = st.abort_reason or reason
        return [st.num for st in pending]

    # -- event handling ------------------------------------------------------------------------
    def _handle(self, event: Any) -> None:
        types = self.htcondor.JobEventType
        if event.cluster != self.cluster or event.proc not in self.states:
            return
        st = self.states[event.proc]
        if st.final:
            return
        etype = event.type
        # The event's own time (the bindings' JobEvent.timestamp), not when this poll happened to read it.
        stamp = getattr(event, "timestamp", None)
        ts = float(stamp) if stamp is not None else self.wall_clock()
        before = st.state
        if etype == types.SUBMIT:
            st.since = st.since if st.since is not None else ts
        elif etype == types.EXECUTE:
            st.state = RUNNING
            st.host = short_host(event.get("SlotName"), event.get("ExecuteHost")) or st.host
            st.run_start, st.run_end = ts, None
        elif etype in (types.JOB_EVICTED, types.JOB_RELEASED):
            if not st.removed_by_launcher:
                st.state = IDLE
        elif etype == types.JOB_UNSUSPENDED:
            st.state = RUNNING  # a suspended job resumes where it was, on its slot
        elif etype == types.JOB_TERMINATED:
            if event.get("TerminatedNormally", True):
                st.exit_code = int(event.get("ReturnValue", 0))
                st.state = DONE if st.exit_code == 0 else FAILED
            else:
                st.signal = int(event.get("TerminatedBySignal", 0))
                st.state = FAILED
        elif etype == types.JOB_ABORTED:
            st.state = REMOVED
            st.abort_reason = st.abort_reason or event.get("Reason")
        elif etype == types.JOB_HELD:
            st.state = HELD
            st.holds += 1
            st.hold_reason = event.get("HoldReason", "no hold reason given")
            job = f"{self.cluster}.{st.proc}"
            if st.releases < self.max_releases:
                st.releases += 1
                log.warning(
                    "job #%d (HTCondor %s) held: %s -- releasing it (%d of %d)",
                    st.num,
                    job,
                    st.hold_reason,
                    st.releases,
                    self.max_releases,
                )
                self._act("Release", job)
            else:
                log.error("job #%d (HTCondor %s) held: %s -- removing it", st.num, job, st.hold_reason)
                st.removed_by_launcher = True
                self._act("Remove", job)
        ends_run = (types.JOB_EVICTED, types.JOB_HELD, types.JOB_TERMINATED, types.JOB_ABORTED)
        if before == RUNNING and etype in ends_run:
            st.run_end = ts
        if st.state != before:
            st.since = ts

    def poll(self) -> None:
        """Handle every event written since the last call (never blocks)."""
        if self._events is None:
            try:
                self._events = self.htcondor.JobEventLog(self.log_file)
            except Exception:
                return
        for event in self._events.events(stop_after=0):
            self._handle(event)

    def table(self, elapsed: float) -> str:
        return status_table(self.cluster, self.states, elapsed, self.wall_clock(), max_rows=self.max_rows)

    def _snapshot(self) -> tuple[tuple[str, int], ...]:
        # A hold that was released between two polls changes no state, but still deserves a table.
        return tuple((st.state, st.holds) for st in self.states.values())

    def wait(self) -> dict[int, ProcState]:
        """Block until every proc ended or the deadline passed (then the rest is removed)."""
        start = self.clock()
        deadline = start + self.timeout_s
        last_seen: tuple[tuple[str, int], ...] | None = None
        last_log = -math.inf  # the first poll logs the table: the user sees the jobs at once
        while True:
            self.poll()
            now = self.clock()
            if all(st.final for st in self.states.values()):
                log.info("%s", self.table(now - start))
                return self.states
            seen = self._snapshot()
            # On a change at most every change_gap_s (a wave of starts or ends makes one table, and a long
            # sweep's log stays readable), else every status_interval.
            gap = min(self.change_gap_s, self.status_interval)
            if (seen != last_seen and now - last_log >= gap) or now - last_log >= self.status_interval:
                log.info("%s", self.table(now - start))
                last_seen, last_log = seen, now
            if now >= deadline:
                nums = self.remove_unfinished(f"deadline of {self.timeout_s / 60:g} min passed")
                for st in self.states.values():
                    if st.num in nums:
                        st.timed_out = True
                log.error(
                    "HTCondor cluster %d: deadline (timeout_min=%g) passed, removed jobs %s",
                    self.cluster,
                    self.timeout_s / 60,
                    nums,
                )
                self._drain(grace_s=10.0)
                for st in self.states.values():
                    if not st.final:
                        st.state = REMOVED
                return self.states
            time.sleep(self.poll_interval)

    def _drain(self, grace_s: float) -> None:
        """After removing jobs, read their abort events for a short while so the log is complete."""
        end = self.clock() + grace_s
        while self.clock() < end and not all(st.final for st in self.states.values()):
            self.poll()
            time.sleep(self.poll_interval)
