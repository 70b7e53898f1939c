"""A sweep that runs out of disk space says so, and where, on the real pool: its folders live on tiny tmpfs
mounts (the root conftest's `tmpfs` fixture: root can mount them here)."""

import os

import pytest
from _launch_helpers import launch
from hydra.core.utils import JobStatus

pytestmark = [pytest.mark.condor, pytest.mark.usefixtures("hydra_restore_singletons")]

SIZE = "2m"
# What torch's checkpoint writer raised on a full disk in the reported sweep: nothing in it says why.
TORCH_LIKE = "[enforce fail at inline_container.cc:672] . unexpected pos 88832 vs 88784"


def _fill(folder: str) -> None:
    """Write into `folder` until its filesystem is full."""
    chunk = b"\0" * 65536
    try:
        with open(os.path.join(folder, "filler.bin"), "wb") as f:
            while True:
                f.write(chunk)
                f.flush()
    except OSError:
        pass


def _fill_then_fail(cfg):
    """Fill the job folder's filesystem, then fail as torch's writer does: not saying that the disk is full
    (raised outside the except block, so no ENOSPC is chained to it)."""
    from hydra.core.hydra_config import HydraConfig

    _fill(HydraConfig.get().runtime.output_dir)
    raise RuntimeError(TORCH_LIKE)


def _fill_then_fail_or_torch(cfg):
    """x=plain: _fill_then_fail; x=torch: a real torch.save of 4 MB into the 2 MiB job folder."""
    if cfg.x == "plain":
        _fill_then_fail(cfg)
    import torch
    from hydra.core.hydra_config import HydraConfig

    torch.save(torch.zeros(1_000_000), os.path.join(HydraConfig.get().runtime.output_dir, "big.pt"))
    return "saved"


def test_a_full_sweep_folder_is_named_when_no_result_can_be_written(tmp_path, tmpfs):
    """The sweep folder (job folders, results, logs, manifest) fills up: the worker cannot write its result,
    and the submit side, finding none, names the full filesystem. The sweep itself goes on."""
    sweep = tmp_path / "sweep"
    tmpfs(sweep, SIZE)
    [ret] = launch(sweep, _fill_then_fail, [["+x=1"]])
    assert ret.status == JobStatus.FAILED
    text = str(ret._return_value)
    assert text.startswith("job #0 (HTCondor "), text
    assert (
        f"exited with code 2 (result not written), no space left on device: {sweep}/.htcondor is on "
        f"tmpfs {sweep}: 0 bytes free of 2.0 MiB, without writing its result {sweep}/.htcondor/0.result"
    ) in text


def test_a_task_failing_on_a_full_job_folder_says_so_even_if_its_exception_does_not(tmp_path, tmpfs):
    """Each job folder is a full tmpfs, the rest of the sweep folder is not: the worker writes a FAILED
    result whose first line names the full filesystem, then the task's own exception."""
    sweep = tmp_path / "sweep"
    tmpfs(sweep / "0", SIZE)
    tmpfs(sweep / "1", SIZE)
    results = launch(sweep, _fill_then_fail_or_torch, [["+x=plain"], ["+x=torch"]])
    for num, ret in enumerate(results):
        assert ret.status == JobStatus.FAILED
        exc = ret._return_value
        assert type(exc).__name__ == "DiskFullError", repr(exc)
        first = str(exc).splitlines()[0]
        where = f"no space left on device: {sweep}/{num} is on tmpfs {sweep}/{num}: "
        assert first.startswith(where), first
        assert "RuntimeError: [enforce fail at inline_container.cc:" in first  # torch's own, or like it
        notes = "\n".join(getattr(exc, "__notes__", []))
        assert "[remote traceback, HTCondor job " in notes and "_fill_then_fail_or_torch" in notes
        # The job's stderr ends with it too (a sweep report shows that line when job folders are full).
        err = (sweep / ".htcondor" / f"{num}.err").read_text().strip().splitlines()[-1]
        assert err.endswith(first) and err.startswith("HTCondor job ")
