"""Collecting a batch's results from its records and result files (no pool: the records are set by hand, the
result files written as the worker writes them). The failure path never raises."""

import cloudpickle
import pytest
from hydra.core.utils import JobReturn, JobStatus
from hydra_plugins.hydra_htcondor_launcher import _contract, _results
from hydra_plugins.hydra_htcondor_launcher._batch import Batch, HTCondorJobReturn, Job
from hydra_plugins.hydra_htcondor_launcher._errors import JobFailedError
from hydra_plugins.hydra_htcondor_launcher._jobstate import JobRecord, JobState
from hydra_plugins.hydra_htcondor_launcher._settings import validate
from hydra_plugins.hydra_htcondor_launcher.config import HTCondorLauncherConf
from omegaconf import OmegaConf


def _batch(tmp_path, n):
    sweep = tmp_path / "sweep"
    htdir = sweep / ".htcondor"
    htdir.mkdir(parents=True)
    conf = HTCondorLauncherConf(batch_name="app", htcondor_dir=str(htdir))
    settings = validate(conf, cwd=str(tmp_path), sweep_dir=str(sweep), default_python="/venv/bin/python")
    # The sweep's config has an interpolation that cannot be resolved on this side: building a FAILED
    # result must not try (it used to re-compose the job's config and crash the whole batch).
    config = OmegaConf.create({"hydra": {"job": {"name": "${oc.env:NOT_SET_ANYWHERE_1234}"}}})
    batch = Batch(
        settings=settings,
        config=config,
        hydra_context=None,  # type: ignore[arg-type]  # never used when collecting
        task_function=lambda cfg: None,
        cwd=str(tmp_path),
        sweep_dir=str(sweep),
        sweep_dir_cfg=str(sweep),
        jobs=[Job(num, [f"+x={num}"]) for num in range(n)],
    )
    batch.submitted(cluster=7, first_proc=0)
    return batch, htdir


def _ended(batch, proc, state, **kw):
    rec: JobRecord = batch.records[proc]
    rec.state = JobState(state)
    for key, value in kw.items():
        setattr(rec, key, value)


def test_failures_never_raise_and_keep_the_other_results(tmp_path):
    batch, htdir = _batch(tmp_path, 4)
    # 0: completed; 1: failed outside the task (the worker's result, exit 81); 2: exit 3 without a result;
    # 3: exit 0 but an unreadable result.
    ok = JobReturn(overrides=["+x=0"], cfg=OmegaConf.create({"x": 0}), status=JobStatus.COMPLETED)
    ok.return_value = "fine"
    (htdir / "0.result.pkl").write_bytes(cloudpickle.dumps(ok))
    _ended(batch, 0, "done", exit_code=0)
    outside = KeyError("Environment variable 'ONLY_HERE' not found")
    worker_ret = JobReturn(overrides=["+x=1"], status=JobStatus.FAILED, _return_value=outside)
    (htdir / "1.result.pkl").write_bytes(cloudpickle.dumps(worker_ret))
    _ended(batch, 1, "failed", exit_code=_contract.OUTSIDE_FAILURE)
    (htdir / "2.err").write_text("noise\n\nTraceback (most recent call last):\nImportError: no module x\n")
    _ended(batch, 2, "failed", exit_code=3)
    (htdir / "3.result.pkl").write_bytes(b"not a pickle")
    _ended(batch, 3, "done", exit_code=0)

    results = _results.collect(batch)

    assert all(isinstance(ret, HTCondorJobReturn) for ret in results)
    assert results[0].status == JobStatus.COMPLETED and results[0].return_value == "fine"
    assert results[0].htcondor_id == "7.0" and results[0].attempts == 1
    assert results[1].status == JobStatus.FAILED and results[1]._return_value is not None
    assert "ONLY_HERE" in str(results[1]._return_value)
    assert results[1].overrides == ["+x=1"] and results[1].task_name is None  # unresolvable: left out
    err = results[2]._return_value
    assert isinstance(err, JobFailedError) and "exited with code 3" in str(err)
    assert f"last lines of {htdir / '2.err'}:\n    noise\n    Traceback" in str(err)
    assert str(err).endswith("ImportError: no module x")
    assert isinstance(results[3]._return_value, JobFailedError)
    assert "unreadable result" in str(results[3]._return_value)
    for ret in results[1:]:
        with pytest.raises(BaseException):  # noqa: B017 (each carries its own exception type)
            _ = ret.return_value


def test_a_result_left_by_a_crashed_run_is_not_taken(tmp_path):
    # Exit code 1 is not one of the worker's: whatever result file is there is not this run's.
    batch, htdir = _batch(tmp_path, 1)
    batch.settings.max_retries = 1
    stale = JobReturn(overrides=["+x=0"], cfg=OmegaConf.create({}), status=JobStatus.COMPLETED)
    stale.return_value = "stale"
    (htdir / "0.result.pkl").write_bytes(cloudpickle.dumps(stale))
    _ended(batch, 0, "failed", exit_code=1, retries=1)
    ret = _results.collect(batch)[0]
    assert ret.status == JobStatus.FAILED and ret.attempts == 2
    assert "exited with code 1 (attempt 2 of 2)" in str(ret._return_value)


def test_err_tail_is_empty_without_a_file(tmp_path):
    assert _results.err_tail(str(tmp_path / "missing.err")) == ""
