"""Follow one cluster through its job event log (not by polling the schedd) until every proc has ended."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

# Job states shown in the status line; the last three are final.
IDLE, RUNNING, HELD, DONE, FAILED, REMOVED = "idle", "running", "held", "done", "failed", "removed"
FINAL = (DONE, FAILED, REMOVED)


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

    @property
    def final(self) -> bool:
        return self.state in FINAL


def status_line(cluster: int, states: Mapping[int, ProcState], elapsed: float) -> str:
    counts = {name: 0 for name in (IDLE, RUNNING, HELD, DONE, FAILED)}
    for st in states.values():
        counts[FAILED if st.state == REMOVED else st.state] += 1
    parts = ", ".join(f"{n} {name}" for name, n in counts.items())
    return f"HTCondor cluster {cluster}: {parts} of {len(states)} jobs [{elapsed:.0f}s]"


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
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.htcondor = htcondor
        self.schedd = schedd
        self.cluster = cluster
        self.log_file = log_file
        self.states = {proc: ProcState(proc=proc, num=num) for proc, num in proc_to_num.items()}
        self.max_releases = max_releases
        self.poll_interval = poll_interval
        self.status_interval = status_interval
        self.timeout_s = timeout_s
        self.clock = clock
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
        if etype == types.EXECUTE:
            st.state = RUNNING
        elif etype in (types.JOB_EVICTED, types.JOB_RELEASED, types.JOB_UNSUSPENDED):
            if not st.removed_by_launcher:
                st.state = IDLE
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

    def poll(self) -> None:
        """Handle every event written since the last call (never blocks)."""
        if self._events is None:
            try:
                self._events = self.htcondor.JobEventLog(self.log_file)
            except Exception:
                return
        for event in self._events.events(stop_after=0):
            self._handle(event)

    def wait(self) -> dict[int, ProcState]:
        """Block until every proc ended or the deadline passed (then the rest is removed)."""
        start = self.clock()
        deadline = start + self.timeout_s
        last_line = ""
        last_log = start
        while True:
            self.poll()
            now = self.clock()
            line = status_line(self.cluster, self.states, now - start)
            counts = line.split(" [")[0]
            if all(st.final for st in self.states.values()):
                log.info(line)
                return self.states
            if (
                counts != last_line.split(" [")[0] and now - last_log >= 1.0
            ) or now - last_log >= self.status_interval:
                log.info(line)
                last_line, last_log = line, now
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
