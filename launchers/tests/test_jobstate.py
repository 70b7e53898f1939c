"""The job state machine: one transition per HTCondor event type, on scripted events (no pool)."""

import pytest
from hydra_plugins.hydra_htcondor_launcher import _jobstate
from hydra_plugins.hydra_htcondor_launcher._jobstate import JobRecord, JobState, apply

IDLE, RUNNING, HELD, DONE, FAILED, REMOVED, DISCONNECTED = (
    JobState.IDLE,
    JobState.RUNNING,
    JobState.HELD,
    JobState.DONE,
    JobState.FAILED,
    JobState.REMOVED,
    JobState.DISCONNECTED,
)
# A JOB_DISCONNECTED event's attributes as htcondor2 reads them (HTCondor 23.9, startd killed).
LOST = {
    "StartdName": "slot1_1@vm",
    "DisconnectReason": "Socket between submit and execute hosts closed unexpectedly",
}


def _rec(state=IDLE, **kw):
    return JobRecord(proc=0, num=0, state=state, **kw)


def _running(**kw):
    rec = _rec()
    apply(rec, "EXECUTE", {"SlotName": "slot1_1@vm"}, 100.0)
    for key, value in kw.items():
        setattr(rec, key, value)
    return rec


def test_every_event_type_of_the_bindings_is_handled_or_ignored_on_purpose(monkeypatch):
    # Imported here: the bindings read (and, if unset, fix) CONDOR_CONFIG at import, which must not happen
    # at collection, before the pool fixture has set it.
    monkeypatch.setenv("CONDOR_CONFIG", "/dev/null")
    import htcondor2

    names = {t.name for t in htcondor2.JobEventType}
    handled, ignored = set(_jobstate.TRANSITIONS), set(_jobstate.IGNORED)
    assert not handled & ignored
    assert names == handled | ignored, f"new or renamed event types: {names ^ (handled | ignored)}"
    assert _jobstate.ENDS_RUN <= handled


def test_submit_keeps_the_job_idle_and_starts_its_clock():
    rec = _rec()
    assert apply(rec, "SUBMIT", {}, 50.0)
    assert (rec.state, rec.since) == (IDLE, 50.0)
    apply(rec, "SUBMIT", {}, 60.0)  # a second SUBMIT (e.g. a re-read log) does not reset it
    assert rec.since == 50.0


def test_execute_runs_the_job_on_its_slot():
    rec = _rec(since=50.0)
    apply(rec, "EXECUTE", {"SlotName": "slot1_2@node7.example.org"}, 100.0)
    assert (rec.state, rec.host, rec.run_start, rec.run_end, rec.since) == (
        RUNNING,
        "slot1_2@node7",
        100.0,
        None,
        100.0,
    )
    assert (rec.starts, rec.restarts) == (1, 0)


def test_evicted_job_goes_back_to_the_queue_and_counts_it():
    rec = _running()
    apply(rec, "JOB_EVICTED", {}, 130.0)
    assert (rec.state, rec.evictions, rec.run_end, rec.since) == (IDLE, 1, 130.0, 130.0)
    apply(rec, "EXECUTE", {"SlotName": "slot1_3@vm"}, 140.0)
    assert (rec.state, rec.host, rec.starts, rec.restarts, rec.run_end) == (RUNNING, "slot1_3@vm", 2, 1, None)


def test_checkpoint_is_counted_and_the_job_keeps_running():
    rec = _running()
    apply(rec, "CHECKPOINTED", {}, 120.0)
    assert (rec.state, rec.checkpoints, rec.since, rec.run_end) == (RUNNING, 1, 100.0, None)


def test_suspended_job_keeps_its_slot_and_resumes():
    rec = _running()
    apply(rec, "JOB_SUSPENDED", {}, 110.0)
    assert (rec.state, rec.suspended, rec.since) == (RUNNING, True, 100.0)
    apply(rec, "JOB_UNSUSPENDED", {}, 120.0)
    assert (rec.state, rec.suspended, rec.host) == (RUNNING, False, "slot1_1@vm")


def test_held_then_released():
    rec = _running()
    apply(rec, "JOB_HELD", {"HoldReason": "disk full"}, 110.0)
    assert (rec.state, rec.holds, rec.hold_reason, rec.run_end) == (HELD, 1, "disk full", 110.0)
    apply(rec, "JOB_RELEASED", {}, 120.0)
    assert (rec.state, rec.since, rec.hold_reason) == (IDLE, 120.0, "disk full")  # the reason stays known
    apply(rec, "JOB_HELD", {}, 130.0)
    assert (rec.holds, rec.hold_reason) == (2, "no hold reason given")


@pytest.mark.parametrize(
    "event, counter",
    [("SHADOW_EXCEPTION", "shadow_exceptions"), ("JOB_RECONNECT_FAILED", "reconnect_failures")],
)
def test_lost_run_puts_the_job_back_in_the_queue(event, counter):
    rec = _running()
    apply(rec, event, {"Message": "lost"}, 150.0)
    assert (rec.state, getattr(rec, counter), rec.run_end) == (IDLE, 1, 150.0)


def test_disconnected_job_waits_its_lease_and_reconnects_to_the_same_run():
    rec = _running(lease_s=60.0)
    assert apply(rec, "JOB_DISCONNECTED", LOST, 130.0)
    assert (rec.state, rec.since, rec.disconnected_until, rec.disconnects) == (DISCONNECTED, 130.0, 190.0, 1)
    assert (rec.host, rec.run_start, rec.run_end, rec.final) == ("slot1_1@vm", 100.0, None, False)
    assert apply(rec, "JOB_RECONNECTED", {"StartdName": "slot1_1@vm"}, 150.0)
    assert (rec.state, rec.since, rec.disconnected_until) == (RUNNING, 150.0, None)
    assert (rec.starts, rec.run_start, rec.run_end) == (1, 100.0, None)  # the same run goes on


def test_disconnected_job_whose_lease_expires_goes_back_to_the_queue_and_runs_again():
    # The sequence HTCondor 23.9 writes when the startd is killed: disconnect, reconnect failed when the
    # lease expires, an eviction, a new run.
    rec = _running(lease_s=60.0)
    apply(rec, "JOB_DISCONNECTED", LOST, 130.0)
    reason = {"Reason": "Job disconnected too long: JobLeaseDuration (60 seconds) expired"}
    assert apply(rec, "JOB_RECONNECT_FAILED", reason, 190.0)
    assert (rec.state, rec.since, rec.disconnected_until, rec.reconnect_failures) == (IDLE, 190.0, None, 1)
    assert rec.run_end == 190.0  # the lost run ended when HTCondor gave it up
    apply(rec, "JOB_EVICTED", reason, 200.0)
    assert (rec.state, rec.evictions, rec.run_end) == (IDLE, 1, 190.0)  # counted as HTCondor counts it
    apply(rec, "EXECUTE", {"SlotName": "slot1_1@vm"}, 202.0)
    assert (rec.state, rec.starts, rec.restarts, rec.disconnects) == (RUNNING, 2, 1, 1)
    apply(rec, "JOB_TERMINATED", {"TerminatedNormally": True, "ReturnValue": 0}, 290.0)
    assert (rec.state, rec.run_start, rec.run_end) == (DONE, 202.0, 290.0)


def test_disconnected_job_of_unknown_lease_has_no_until():
    rec = _running()
    apply(rec, "JOB_DISCONNECTED", LOST, 130.0)
    assert (rec.state, rec.since, rec.disconnected_until) == (DISCONNECTED, 130.0, None)


def test_a_second_disconnect_keeps_the_first_deadline():
    rec = _running(lease_s=60.0)
    apply(rec, "JOB_DISCONNECTED", LOST, 130.0)
    apply(rec, "JOB_DISCONNECTED", LOST, 140.0)
    assert (rec.since, rec.disconnected_until, rec.disconnects) == (130.0, 190.0, 2)


def test_a_disconnect_htcondor_cannot_reconnect_requeues_at_once():
    rec = _running(lease_s=60.0)
    apply(rec, "JOB_DISCONNECTED", {**LOST, "NoReconnectReason": "Job has no lease"}, 130.0)
    assert (rec.state, rec.disconnected_until, rec.disconnects, rec.run_end) == (IDLE, None, 1, None)


@pytest.mark.parametrize(
    "event, attrs, state",
    [
        ("JOB_HELD", {"HoldReason": "policy"}, HELD),
        ("JOB_ABORTED", {"Reason": "via condor_rm"}, REMOVED),
        ("JOB_TERMINATED", {"TerminatedNormally": True, "ReturnValue": 0}, DONE),  # it ended while away
        ("JOB_EVICTED", {}, IDLE),
    ],
)
def test_a_disconnected_job_leaves_that_state_by_any_event_that_moves_a_running_job(event, attrs, state):
    rec = _running(lease_s=60.0)
    apply(rec, "JOB_DISCONNECTED", LOST, 130.0)
    apply(rec, event, attrs, 150.0)
    assert (rec.state, rec.disconnected_until, rec.run_end) == (state, None, 150.0)


@pytest.mark.parametrize(
    "event", ["JOB_EVICTED", "JOB_RELEASED", "SHADOW_EXCEPTION", "JOB_RECONNECT_FAILED", "JOB_DISCONNECTED"]
)
def test_a_job_the_launcher_removes_does_not_go_back_to_the_queue(event):
    rec = _running()
    _jobstate.remove_requested(rec, "deadline")
    apply(rec, event, {}, 150.0)
    assert rec.state == RUNNING and rec.abort_reason == "deadline"
    apply(rec, "JOB_ABORTED", {"Reason": "via condor_rm"}, 151.0)
    assert (rec.state, rec.abort_reason) == (REMOVED, "deadline")  # the launcher's reason wins


@pytest.mark.parametrize(
    "attrs, state, exit_code, signal",
    [
        ({"TerminatedNormally": True, "ReturnValue": 0}, DONE, 0, None),
        ({"TerminatedNormally": True, "ReturnValue": 3}, FAILED, 3, None),
        ({"TerminatedNormally": False, "TerminatedBySignal": 9}, FAILED, None, 9),
    ],
)
def test_terminated(attrs, state, exit_code, signal):
    rec = _running()
    apply(rec, "JOB_TERMINATED", attrs, 160.0)
    assert (rec.state, rec.exit_code, rec.signal, rec.run_end) == (state, exit_code, signal, 160.0)
    assert rec.final


def test_aborted_by_someone_else_keeps_their_reason():
    rec = _rec()
    apply(rec, "JOB_ABORTED", {"Reason": "removed by a user"}, 170.0)
    assert (rec.state, rec.abort_reason, rec.final) == (REMOVED, "removed by a user", True)


def test_an_ended_job_takes_no_more_events():
    rec = _running()
    apply(rec, "JOB_TERMINATED", {"TerminatedNormally": True, "ReturnValue": 0}, 160.0)
    assert not apply(rec, "JOB_HELD", {"HoldReason": "late"}, 170.0)
    assert not apply(rec, "JOB_ABORTED", {}, 171.0)
    assert (rec.state, rec.holds, rec.since) == (DONE, 0, 160.0)


@pytest.mark.parametrize("event", sorted(_jobstate.IGNORED))
def test_ignored_events_change_nothing(event):
    rec = _running()
    before = JobRecord(**vars(rec))
    assert not apply(rec, event, {"HoldReason": "x", "ReturnValue": 1}, 500.0)
    assert rec == before


def test_unknown_event_types_are_ignored():
    rec = _running()
    assert not apply(rec, "SOME_FUTURE_EVENT", {}, 500.0) and rec.state == RUNNING


def test_given_up_ends_a_removed_job_whose_abort_event_never_came():
    running, done = _running(), _rec(DONE)
    for rec in (running, done):
        _jobstate.given_up(rec)
    assert (running.state, done.state) == (REMOVED, DONE)


def test_short_host_prefers_the_slot_name():
    sinful = "<127.0.0.1:38493?addrs=127.0.0.1-38493&alias=vm>"
    assert _jobstate.short_host("slot1_2@vm", sinful) == "slot1_2@vm"
    assert _jobstate.short_host("slot1_2@e42.chtc.wisc.edu", None) == "slot1_2@e42"
    assert (
        _jobstate.short_host(None, "<10.0.0.7:9618?addrs=10.0.0.7-9618&alias=node7.example.org>") == "node7"
    )
    assert _jobstate.short_host(None, "<10.0.0.7:9618>") == "10.0.0.7:9618"
    assert _jobstate.short_host("slot1@10.0.0.7", None) == "slot1@10.0.0.7"
    assert _jobstate.short_host(None, None) is None


def test_a_retry_is_counted_apart_from_evictions():
    rec = JobRecord(proc=0, num=0)
    apply(rec, "EXECUTE", {}, 1.0)
    requeued = {"TerminatedAndRequeued": True, "TerminatedNormally": True, "ReturnValue": 3}
    assert apply(rec, "JOB_EVICTED", requeued, 2.0)
    assert (rec.state, rec.retries, rec.evictions, rec.exit_code) == (JobState.IDLE, 1, 0, 3)
    apply(rec, "EXECUTE", {}, 3.0)
    apply(rec, "JOB_TERMINATED", {"TerminatedNormally": True, "ReturnValue": 0}, 4.0)
    assert (rec.state, rec.attempts, rec.exit_code) == (JobState.DONE, 2, 0)


def test_the_eviction_a_removal_writes_is_not_counted():
    rec = JobRecord(proc=0, num=0)
    apply(rec, "EXECUTE", {}, 1.0)
    apply(rec, "JOB_EVICTED", {}, 5.0)  # a real eviction: counted
    apply(rec, "EXECUTE", {}, 9.0)
    apply(rec, "JOB_EVICTED", {}, 20.0)  # written by the removal, just before its abort
    apply(rec, "JOB_ABORTED", {"Reason": "removed"}, 20.1)
    assert (rec.state, rec.evictions) == (JobState.REMOVED, 1)


def test_a_retry_after_a_signal_that_then_succeeds_is_done_without_the_signal():
    rec = JobRecord(proc=0, num=0)
    apply(rec, "EXECUTE", {}, 1.0)
    killed = {"TerminatedAndRequeued": True, "TerminatedNormally": False, "TerminatedBySignal": 9}
    apply(rec, "JOB_EVICTED", killed, 2.0)
    assert (rec.signal, rec.exit_code, rec.retries) == (9, None, 1)
    apply(rec, "EXECUTE", {}, 3.0)
    apply(rec, "JOB_TERMINATED", {"TerminatedNormally": True, "ReturnValue": 0}, 4.0)
    assert (rec.state, rec.signal, rec.exit_code) == (JobState.DONE, None, 0)
