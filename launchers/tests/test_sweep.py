"""The sweep engine's events, removal and results on scripted job events (fakes at the bindings boundary, as
in test_wait; the real pool tests are in test_pool_sweep.py)."""

import pytest
from hydra.core.utils import JobStatus
from hydra_plugins.hydra_htcondor_launcher import _jobstate
from hydra_plugins.hydra_htcondor_launcher._batch import Batch, Job
from hydra_plugins.hydra_htcondor_launcher._manifest import Manifest
from hydra_plugins.hydra_htcondor_launcher._settings import validate
from hydra_plugins.hydra_htcondor_launcher._sweep import SweepEngine
from hydra_plugins.hydra_htcondor_launcher.config import HTCondorLauncherConf
from hydra_plugins.hydra_htcondor_launcher.sweep import JobState, SweepEvent
from omegaconf import OmegaConf
from test_wait import Event, EventType, FakeBindings


def _engine(tmp_path, bindings, n):
    """An engine following one submitted cluster (7) of n jobs, its event log scripted by `bindings`."""
    sweep = tmp_path / "sweep"
    htdir = sweep / ".htcondor"
    htdir.mkdir(parents=True)
    conf = HTCondorLauncherConf(htcondor_dir=str(htdir), poll_interval=0.01)
    settings = validate(conf, cwd=str(tmp_path), sweep_dir=str(sweep), default_python="/venv/bin/python")
    base = Batch(
        settings=settings,
        config=OmegaConf.create({"hydra": {"job": {"name": "app"}}}),
        hydra_context=None,  # type: ignore[arg-type]  # not used once submitted
        task_function=lambda cfg: None,
        cwd=str(tmp_path),
        sweep_dir=str(sweep),
        sweep_dir_cfg=str(sweep),
    )
    manifest = Manifest.new(str(sweep), str(htdir))
    engine = SweepEngine(base, bindings, bindings.schedd(), manifest)
    sub = Batch(**{**base.__dict__, "jobs": [Job(num, [f"+x={num}"]) for num in range(n)]})
    sub.submitted(cluster=7, first_proc=0)
    open(sub.log_file, "w").close()  # the watcher checks that the event log is the file it opened
    engine._follow(sub)
    return engine


def test_events_per_job_in_order_reports_and_exactly_one_end(tmp_path):
    b = FakeBindings(
        [
            [Event(EventType.SUBMIT, 7, 0), Event(EventType.SUBMIT, 7, 1), Event(EventType.EXECUTE, 7, 0)],
            [Event(EventType.EXECUTE, 7, 1), Event(EventType.JOB_HELD, 7, 1, HoldReason="disk full")],
            [Event(EventType.JOB_TERMINATED, 7, 0, ReturnValue=3)],
            [],
        ]
    )
    engine = _engine(tmp_path, b, 2)
    assert engine.active() == [0, 1]
    assert engine.poll() == [SweepEvent(0, "state", JobState.RUNNING)]
    rec0 = engine.records[0]
    _jobstate.reported(rec0, 1, 0.5)  # what the report channel does while the job runs
    _jobstate.reported(rec0, 2, 0.25)
    events = engine.poll()
    # Job 1 ran, was held (max_releases=0: removed at once): only the state it is in now is told.
    assert events == [
        SweepEvent(0, "report", JobState.RUNNING, step=1, value=0.5),
        SweepEvent(0, "report", JobState.RUNNING, step=2, value=0.25),
        SweepEvent(1, "state", JobState.HELD, reason="disk full"),
    ]
    assert b.actions == [("remove", "7.1")]
    assert engine.poll() == [SweepEvent(0, "ended", JobState.FAILED, reason="exit code 3")]
    assert engine.poll() == [] and engine.active() == [1]
    with pytest.raises(ValueError):
        engine.result(1)
    ret = engine.result(0)
    assert ret.status == JobStatus.FAILED and "exited with code 3" in str(ret._return_value)


def test_remove_ends_the_job_removed_with_its_reason_once_the_abort_event_is_read(tmp_path):
    b = FakeBindings(
        [
            [Event(EventType.EXECUTE, 7, 0), Event(EventType.EXECUTE, 7, 1)],
            [],
            [Event(EventType.JOB_EVICTED, 7, 1), Event(EventType.JOB_ABORTED, 7, 1, Reason="via condor_rm")],
        ]
    )
    engine = _engine(tmp_path, b, 2)
    engine.poll()
    engine.remove(1, "pruned at step 2")
    assert b.actions == [("remove", ["7.1"])]  # this job only
    assert engine.poll() == [] and 1 in engine.active()  # not ended before HTCondor says so
    assert engine.poll() == [SweepEvent(1, "ended", JobState.REMOVED, reason="pruned at step 2")]
    ret = engine.result(1)
    assert ret.status == JobStatus.FAILED and "pruned at step 2" in str(ret._return_value)
    engine.remove(1, "again")  # ended: left as it is
    assert b.actions == [("remove", ["7.1"])]
    with pytest.raises(KeyError):
        engine.remove(5, "not a job of the sweep")
