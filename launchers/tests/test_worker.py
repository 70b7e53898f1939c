"""The worker entry point run for real as a subprocess (no pool): a failure around the task still writes a
FAILED result carrying the exception and its traceback, and the exit code says what kind of failure it was."""

import pickle
import subprocess
import sys
from pathlib import Path

import cloudpickle
from hydra.core.utils import JobReturn, JobStatus
from hydra_plugins.hydra_htcondor_launcher import _contract, _disk, _layout, _worker


def _spec(tmp_path, common: bytes) -> tuple:
    result = tmp_path / ".htcondor" / "0.result.pkl"
    result.parent.mkdir()
    place = {
        "num": 0,
        "overrides": ["+x=1"],
        "result_path": str(result),
        "result_relpath": ".htcondor/0.result.pkl",
        "job_subdir": "0",
        "submit_sweep_dir": str(tmp_path),
        "common_path": str(tmp_path / ".htcondor" / "common-0.pkl"),
    }
    (tmp_path / ".htcondor" / "common-0.pkl").write_bytes(common)
    spec = tmp_path / "0.spec.pkl"
    spec.write_bytes(pickle.dumps({"sys_path": [], "place": place}))
    return spec, result


def test_a_spec_that_cannot_be_unpickled_comes_back_as_a_failed_result(tmp_path):
    spec, result = _spec(tmp_path, common=b"this is not a pickle")
    # A result of an earlier attempt must not survive this one.
    stale = JobReturn(overrides=["+x=1"], status=JobStatus.COMPLETED, _return_value="stale")
    result.write_bytes(cloudpickle.dumps(stale))
    command = [sys.executable, "-m", _worker.__name__, str(spec), "12.0"]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert proc.returncode == _contract.OUTSIDE_FAILURE, proc.stderr
    assert "HTCondor job 12.0 failed outside the task" in proc.stderr
    ret = cloudpickle.loads(result.read_bytes())
    assert ret.status == JobStatus.FAILED and ret.overrides == ["+x=1"]
    exc = ret._return_value
    assert isinstance(exc, pickle.UnpicklingError)
    notes = "\n".join(getattr(exc, "__notes__", []))
    assert "[remote traceback, HTCondor job 12.0 on " in notes and "_run_task" in notes
    # The one-line note `hydra-htcondor status` reads instead of unpickling the result.
    note = Path(_layout.result_note_path(str(result))).read_text()
    assert note.startswith("UnpicklingError(") and "\n" not in note


def test_status_reads_the_workers_note_instead_of_the_result(tmp_path):
    from hydra_plugins.hydra_htcondor_launcher import _cli

    result = tmp_path / "3.result.pkl"
    result.write_bytes(b"not a pickle: only the note can say what the job returned")
    Path(_layout.result_note_path(str(result))).write_text("0.93")
    assert _cli._result_note({"result": str(result)}) == "0.93"
    Path(_layout.result_note_path(str(result))).unlink()
    _cli._notes.clear()
    assert _cli._result_note({"result": str(result)}).startswith("unreadable result")


def test_worker_exit_codes_are_distinct():
    codes = [
        0,
        _contract.WRITE_FAILED,
        _contract.TASK_RAISED,
        _contract.OUTSIDE_FAILURE,
        _contract.NO_PACKED_PYTHON,
    ]
    assert len(set(codes)) == len(codes)
    assert set(_contract.WORKER_EXIT_CODES) == set(codes[1:])


def test_full_disk_is_found_anywhere_in_the_exception_chain(tmp_path):
    import errno

    target = tmp_path / "run" / "ckpt.pt"
    enospc = OSError(errno.ENOSPC, "No space left on device", str(target))
    try:
        try:
            raise enospc
        except OSError:
            raise RuntimeError("writer failed") from None  # context kept, only not shown
    except RuntimeError as exc:
        hidden = exc
    why = _disk.full_disk([], hidden)
    assert why is not None and why.startswith(f"no space left on device: {target} is on ")
    assert " bytes free of " in why and "\n" not in why
    quota = OSError(errno.EDQUOT, "Disk quota exceeded")
    wrapped = RuntimeError("wrapped")
    wrapped.__cause__ = quota
    assert _disk.full_disk([str(tmp_path)], wrapped).startswith(f"disk quota exceeded: {tmp_path} is on ")
    # The text alone counts too (a library that re-raised the message without the errno).
    assert _disk.full_disk([str(tmp_path)], RuntimeError("write: No space left on device")) is not None


def test_a_failure_on_a_disk_with_room_is_not_called_a_full_disk(tmp_path):
    assert _disk.full_disk([str(tmp_path), str(tmp_path / "not" / "made")], RuntimeError("boom")) is None
    assert _disk.full_disk([]) is None
