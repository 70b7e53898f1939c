"""The state of one job, followed through its HTCondor job event log.

Pure: no Hydra, no bindings. Events are matched by their ``htcondor2.JobEventType`` *name*, so tests feed
scripted events and the bindings are imported only where the log is read (``_wait``). Every event type a job
of this launcher can get has a transition in ``TRANSITIONS``; the ones that do not change what the launcher
knows about a job are listed, with the reason, in ``IGNORED``. A test checks that the two together cover
every ``htcondor2.JobEventType``, so a new HTCondor event type is a decision, not an accident.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Literal, Protocol

from ._contract import parse_report


class JobState(Enum):
    """What the launcher knows about a job; the value is what the status table shows."""

    IDLE = "idle"  # queued: not started yet, or back in the queue (released, evicted, shadow lost)
    RUNNING = "running"  # on a slot (also while suspended there: it keeps the slot)
    # Its execute machine is out of reach (a dead startd, a network outage): HTCondor keeps the job for its
    # lease (JobLeaseDuration) and reconnects if the machine comes back, else requeues it.
    DISCONNECTED = "disconnected"
    HELD = "held"
    DONE = "done"  # terminated with exit code 0
    FAILED = "failed"  # terminated with another exit code, or by a signal
    REMOVED = "removed"  # aborted: by the launcher (hold, deadline, Ctrl-C) or by someone else

    @property
    def final(self) -> bool:
        return self in _FINAL


_FINAL = frozenset({JobState.DONE, JobState.FAILED, JobState.REMOVED})


class Event(Protocol):
    """What a transition reads of an event: its attributes (``htcondor2.JobEvent`` is a mapping)."""

    def get(self, key: str, default: Any = None) -> Any: ...


@dataclass
class JobRecord:
    """One job (one HTCondor proc) as its events describe it."""

    proc: int
    num: int  # Hydra's job number
    # The job's overrides as the launcher shows them (status table only).
    overrides: str = ""
    # Its cluster where a table shows jobs of several clusters (a resumed sweep); else the table's own.
    cluster: int | None = None
    state: JobState = JobState.IDLE
    exit_code: int | None = None
    signal: int | None = None
    hold_reason: str | None = None
    holds: int = 0
    releases: int = 0
    abort_reason: str | None = None
    timed_out: bool = False
    # The launcher asked the schedd to remove this job (after a hold, a deadline or Ctrl-C).
    removed_by_launcher: bool = False
    suspended: bool = False
    # The job's lease (JobLeaseDuration, seconds, from its ad): how long HTCondor waits for a disconnected
    # job's machine; None where unknown. While DISCONNECTED: when that wait ends (epoch seconds; `since` is
    # when it began).
    lease_s: float | None = None
    disconnected_until: float | None = None
    # Where the last run was, and wall-clock times (epoch seconds, from the event log) of the current state
    # and of the last run.
    host: str | None = None
    since: float | None = None
    run_start: float | None = None
    run_end: float | None = None
    # Runs and their interruptions: a job may start more than once (after an eviction, a retry, a released
    # hold, a lost shadow or starter). A self-checkpoint restart (checkpoint_exit_code) writes no event.
    starts: int = 0
    evictions: int = 0
    # Runs that ended (exit code or signal) and that HTCondor queued again (max_retries).
    retries: int = 0
    # The last event taken into account and its time (a removal's eviction is told apart by what follows).
    last_event: str | None = None
    last_event_ts: float | None = None
    checkpoints: int = 0
    shadow_exceptions: int = 0
    disconnects: int = 0
    reconnect_failures: int = 0
    # Intermediate values the job reported, (step, value), in the order they were read; appended only by
    # reported().
    reports: list[tuple[int, float]] = field(default_factory=list)

    @property
    def final(self) -> bool:
        return self.state.final

    @property
    def restarts(self) -> int:
        return max(0, self.starts - 1)

    @property
    def attempts(self) -> int:
        """Runs that ended with an exit code or a signal: the retries and the last one."""
        return self.retries + 1


@dataclass(frozen=True)
class SweepEvent:
    """What happened to one job of a followed sweep (``sweep.Sweep.poll``), in the order it happened.

    ``kind``: "state", the job moved to another state that is not final (queued, running, held,
    disconnected); "report", the job reported an intermediate value (``step``, ``value``); "ended", the job
    reached a final state (done, failed, removed): exactly once per job, and nothing about it after.
    ``reason``: why, where HTCondor or the launcher said so (a hold reason, a removal's reason).
    """

    num: int  # hydra.job.num
    kind: Literal["state", "report", "ended"]
    state: JobState  # the job's state after the event
    step: int | None = None  # kind == "report": the step the job reported at
    value: float | None = None  # kind == "report": the value it reported
    reason: str | None = None


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


# -- transitions: one per event type that tells the launcher something -----------------------------------
def _submitted(rec: JobRecord, event: Event) -> None:
    pass  # already IDLE; `since` is set by apply()


def _executing(rec: JobRecord, event: Event) -> None:
    rec.state = JobState.RUNNING
    rec.starts += 1
    rec.suspended = False
    rec.host = short_host(event.get("SlotName"), event.get("ExecuteHost")) or rec.host


def _back_to_queue(rec: JobRecord) -> None:
    # A job the launcher removed stays on its way out: its abort event follows.
    if not rec.removed_by_launcher:
        rec.state = JobState.IDLE
    rec.suspended = False


def _evicted(rec: JobRecord, event: Event) -> None:
    if event.get("TerminatedAndRequeued", False):
        # Not an eviction: the run ended and max_retries put the job back in the queue.
        rec.retries += 1
        if event.get("TerminatedNormally", True):
            rec.exit_code, rec.signal = int(event.get("ReturnValue", 0)), None
        else:
            rec.exit_code, rec.signal = None, int(event.get("TerminatedBySignal", 0))
    else:
        rec.evictions += 1
    _back_to_queue(rec)


def _checkpointed(rec: JobRecord, event: Event) -> None:
    rec.checkpoints += 1  # the job keeps running


def _suspended(rec: JobRecord, event: Event) -> None:
    rec.suspended = True  # still on its slot: shown as running


def _unsuspended(rec: JobRecord, event: Event) -> None:
    rec.state = JobState.RUNNING  # it resumes where it was, on its slot
    rec.suspended = False


def _held(rec: JobRecord, event: Event) -> None:
    rec.state = JobState.HELD
    rec.holds += 1
    rec.suspended = False
    rec.hold_reason = event.get("HoldReason", "no hold reason given")


def _released(rec: JobRecord, event: Event) -> None:
    _back_to_queue(rec)


def _shadow_exception(rec: JobRecord, event: Event) -> None:
    # The submit side lost the job's run; HTCondor puts the job back in the queue (a hold, if any, follows
    # as its own event).
    rec.shadow_exceptions += 1
    _back_to_queue(rec)


def _disconnected(rec: JobRecord, event: Event) -> None:
    # The submit side lost touch with the job's machine; the run may go on there. apply() sets until when
    # HTCondor waits. An event with NoReconnectReason says HTCondor gives up at once and reschedules the job.
    rec.disconnects += 1
    rec.suspended = False
    if event.get("NoReconnectReason"):
        _back_to_queue(rec)
    elif not rec.removed_by_launcher:
        rec.state = JobState.DISCONNECTED


def _reconnected(rec: JobRecord, event: Event) -> None:
    rec.state = JobState.RUNNING  # the same run, on the same slot


def _reconnect_failed(rec: JobRecord, event: Event) -> None:
    # The run on a disconnected slot is given up (the lease expired, or the machine no longer knows the job);
    # HTCondor reschedules the job. It also logs an eviction next, which counts the lost run as evictions
    # are counted (seen on HTCondor 23.9: reconnect failed, then JOB_EVICTED 10 s later, then EXECUTE).
    rec.reconnect_failures += 1
    _back_to_queue(rec)


def _terminated(rec: JobRecord, event: Event) -> None:
    rec.suspended = False
    # Either an exit code or a signal: the other may be left from an earlier attempt (max_retries).
    if event.get("TerminatedNormally", True):
        rec.exit_code, rec.signal = int(event.get("ReturnValue", 0)), None
        rec.state = JobState.DONE if rec.exit_code == 0 else JobState.FAILED
    else:
        rec.exit_code, rec.signal = None, int(event.get("TerminatedBySignal", 0))
        rec.state = JobState.FAILED


def _generic(rec: JobRecord, event: Event) -> None:
    # Free text in the event log (`condor_chirp ulog`): the job's report (reporting.report, in a job with
    # file transfer or a container), or someone else's text, which changes nothing.
    parsed = parse_report(str(event.get("Info", "")))
    if parsed is not None:
        reported(rec, *parsed)


def _aborted(rec: JobRecord, event: Event) -> None:
    rec.state = JobState.REMOVED
    rec.suspended = False
    rec.abort_reason = rec.abort_reason or event.get("Reason")


TRANSITIONS: dict[str, Callable[[JobRecord, Event], None]] = {
    "SUBMIT": _submitted,
    "EXECUTE": _executing,
    "CHECKPOINTED": _checkpointed,
    "JOB_EVICTED": _evicted,
    "JOB_SUSPENDED": _suspended,
    "JOB_UNSUSPENDED": _unsuspended,
    "JOB_HELD": _held,
    "JOB_RELEASED": _released,
    "SHADOW_EXCEPTION": _shadow_exception,
    "JOB_DISCONNECTED": _disconnected,
    "JOB_RECONNECTED": _reconnected,
    "JOB_RECONNECT_FAILED": _reconnect_failed,
    "JOB_TERMINATED": _terminated,
    "JOB_ABORTED": _aborted,
    "GENERIC": _generic,
}
# States in which the job holds a slot: a run is under way (or lost, not yet given up).
ON_SLOT = frozenset({JobState.RUNNING, JobState.DISCONNECTED})
# Events that end the job's current run (for the run time shown in the table).
ENDS_RUN = frozenset(
    {"JOB_EVICTED", "JOB_HELD", "JOB_TERMINATED", "JOB_ABORTED", "SHADOW_EXCEPTION", "JOB_RECONNECT_FAILED"}
)

# Event types that change nothing the launcher tracks, and why.
IGNORED: dict[str, str] = {
    "EXECUTABLE_ERROR": "the job could not start; the hold that follows carries the reason",
    "REMOTE_ERROR": "the starter's error; the hold or eviction that follows changes the state",
    "IMAGE_SIZE": "resource usage update",
    "FILE_TRANSFER": "input/output transfer progress; a failed transfer holds the job",
    "JOB_AD_INFORMATION": "job ad attributes for tools",
    "ATTRIBUTE_UPDATE": "job ad attribute changed",
    "CLUSTER_SUBMIT": "cluster-level event (late materialization), not a job's",
    "CLUSTER_REMOVE": "cluster-level event (late materialization), not a job's",
    "FACTORY_PAUSED": "cluster-level event (late materialization), not a job's",
    "FACTORY_RESUMED": "cluster-level event (late materialization), not a job's",
    "NODE_EXECUTE": "parallel universe only",
    "NODE_TERMINATED": "parallel universe only",
    "POST_SCRIPT_TERMINATED": "DAGMan only",
    "PRESKIP": "DAGMan only",
    "GLOBUS_SUBMIT": "grid universe only",
    "GLOBUS_SUBMIT_FAILED": "grid universe only",
    "GLOBUS_RESOURCE_UP": "grid universe only",
    "GLOBUS_RESOURCE_DOWN": "grid universe only",
    "GRID_RESOURCE_UP": "grid universe only",
    "GRID_RESOURCE_DOWN": "grid universe only",
    "GRID_SUBMIT": "grid universe only",
    "JOB_STATUS_UNKNOWN": "grid universe only",
    "JOB_STATUS_KNOWN": "grid universe only",
    "JOB_STAGE_IN": "spooled (remote submit) jobs only",
    "JOB_STAGE_OUT": "spooled (remote submit) jobs only",
    "RESERVE_SPACE": "data reuse bookkeeping",
    "RELEASE_SPACE": "data reuse bookkeeping",
    "FILE_COMPLETE": "data reuse bookkeeping",
    "FILE_USED": "data reuse bookkeeping",
    "FILE_REMOVED": "data reuse bookkeeping",
    "COMMON_FILES": "common-files transfer bookkeeping",
    "DATAFLOW_JOB_SKIPPED": "dataflow jobs only (skip_if_dataflow is never set)",
    "NONE": "placeholder type",
    "EP_STARTUP": "execution-point event, not in job logs",
    "EP_READY": "execution-point event, not in job logs",
    "EP_RECONFIG": "execution-point event, not in job logs",
    "EP_SHUTDOWN": "execution-point event, not in job logs",
    "EP_REQUEST_CLAIM": "execution-point event, not in job logs",
    "EP_RELEASE_CLAIM": "execution-point event, not in job logs",
    "EP_ACTIVATE_CLAIM": "execution-point event, not in job logs",
    "EP_DEACTIVATE_CLAIM": "execution-point event, not in job logs",
    "EP_VACATE_CLAIM": "execution-point event, not in job logs",
    "EP_DRAIN": "execution-point event, not in job logs",
    "EP_RESOURCE_BREAK": "execution-point event, not in job logs",
    "EP_RESOURCE_MEND": "execution-point event, not in job logs",
}


def apply(rec: JobRecord, event_type: str, event: Event, ts: float) -> bool:
    """Move `rec` on by one event of type `event_type` (a JobEventType name) written at `ts` (epoch seconds).

    Returns whether the event was taken into account: False for an event of a job that already ended (its
    outcome is settled) and for event types in IGNORED or unknown to this launcher.
    """
    if rec.final:
        return False
    transition = TRANSITIONS.get(event_type)
    if transition is None:
        return False
    if event_type == "GENERIC":
        # A report changes no state, and must not pass for the last event (a removal's eviction is told
        # apart by the event that follows it).
        before_reports = len(rec.reports)
        transition(rec, event)
        return len(rec.reports) > before_reports
    before = rec.state
    if event_type == "SUBMIT" and rec.since is None:
        rec.since = ts
    just_evicted = rec.last_event == "JOB_EVICTED" and ts - (rec.last_event_ts or ts) <= 2
    if event_type == "JOB_ABORTED" and just_evicted:
        # A removal of a running job writes an eviction just before its abort: not an eviction of its own.
        rec.evictions = max(0, rec.evictions - 1)
    transition(rec, event)
    rec.last_event, rec.last_event_ts = event_type, ts
    if event_type == "EXECUTE":
        rec.run_start, rec.run_end = ts, None
    elif before in ON_SLOT and event_type in ENDS_RUN:
        rec.run_end = ts
    if rec.state is JobState.DISCONNECTED and before is not JobState.DISCONNECTED:
        rec.disconnected_until = None if rec.lease_s is None else ts + rec.lease_s
    elif rec.state is not JobState.DISCONNECTED:
        rec.disconnected_until = None
    if rec.state is not before:
        rec.since = ts
    return True


def release_requested(rec: JobRecord) -> None:
    """The launcher asked the schedd to release this held job; the released event requeues it."""
    rec.releases += 1


def held_removal_requested(rec: JobRecord) -> None:
    """The launcher asked the schedd to remove this held job (no releases left); the abort event ends it,
    failed with its hold reason."""
    rec.removed_by_launcher = True


def timed_out(rec: JobRecord) -> None:
    """The batch's deadline passed before this job ended (it is being removed)."""
    rec.timed_out = True


def lost(rec: JobRecord, reason: str) -> None:
    """The schedd no longer knows this unfinished job (neither its queue nor its history): it failed."""
    rec.state = JobState.REMOVED
    rec.abort_reason = reason


def remove_requested(rec: JobRecord, reason: str) -> None:
    """The launcher asked the schedd to remove this job; the abort event will end it."""
    rec.removed_by_launcher = True
    rec.abort_reason = rec.abort_reason or reason


def given_up(rec: JobRecord) -> None:
    """The launcher stopped waiting for the abort event of a job it removed."""
    if not rec.final:
        rec.state = JobState.REMOVED


def reported(rec: JobRecord, step: int, value: float) -> None:
    """The job reported an intermediate value (step, value) while it ran."""
    rec.reports.append((step, value))
