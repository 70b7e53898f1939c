"""The app's code snapshot on the real pool, where a shared filesystem lets the test reach into a running
job: code edited while a job waits in the queue (`code_snapshot=always` runs the submitted code, the default
on a shared filesystem the code as it is when the job starts), and the refusal of code too big to ship.
The example apps are in launchers/tests/apps/ (see its README)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from _launch_helpers import copy_app, run_app

pytestmark = pytest.mark.condor

POOL_ARGS = [
    "hydra/launcher=htcondor",
    "hydra.launcher.poll_interval=0.1",
    "hydra.launcher.request_memory=256MB",
    "hydra.launcher.timeout_min=5",
]


def _results(out: str) -> dict[str, str]:
    """The launcher's summary lines, job number -> return value: '#1 : x=1 gate=... -> '1:v1''."""
    found = {}
    for line in out.splitlines():
        if "\t#" in line and " -> " in line:
            num = line.split("\t#", 1)[1].split(" ", 1)[0]
            found[num] = line.rsplit(" -> ", 1)[1].strip().strip("'")
    return found


def _wait_for(path: Path, proc: subprocess.Popen[str], what: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"the sweep ended before {what}: {out}{err}")
        if time.monotonic() > deadline:
            pytest.fail(f"no {what} within {timeout} s")
        time.sleep(0.1)


def test_code_edited_while_a_job_is_queued_reaches_it_only_without_the_snapshot(tmp_path: Path) -> None:
    """Job #1 is queued behind #0 (max_running=1) while the test edits version.py: with the snapshot it
    still runs the submitted code (v1); without it (the default on a shared filesystem) it runs the edit."""
    runs = {}
    for mode in ("always", "auto"):
        app = copy_app("edited_code", tmp_path / mode)
        gate = tmp_path / f"{mode}.gate"
        cmd = [
            sys.executable,
            "app.py",
            "-m",
            *POOL_ARGS,
            f"hydra.sweep.dir={app / 'sweep'}",
            f"hydra.launcher.code_snapshot={mode}",
            "hydra.launcher.max_running=1",
            "x=0,1",
            f"gate={gate}",
        ]
        proc = subprocess.Popen(cmd, cwd=app, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        runs[mode] = (app, gate, proc)
    for mode, (app, gate, proc) in runs.items():
        _wait_for(Path(f"{gate}.waiting"), proc, f"job #0 of the {mode} sweep waiting")
        (app / "version.py").write_text('VERSION = "v2"\n')  # while #0 runs and #1 is not even queued
        gate.write_text("")
    outs = {}
    for mode, (_app, _gate, proc) in runs.items():
        out, _ = proc.communicate(timeout=300)
        assert proc.returncode == 0, out
        outs[mode] = out
    assert _results(outs["always"]) == {"0": "0:v1", "1": "1:v1"}, outs["always"]
    assert _results(outs["auto"]) == {"0": "0:v1", "1": "1:v2"}, outs["auto"]  # the trap the snapshot closes

    # The sweep folder says which snapshot each job ran: the manifest's entry, the job's log, the folder.
    app = runs["always"][0]
    htcondor = app / "sweep" / ".htcondor"
    (snapshot,) = htcondor.glob("code-*")
    digest = snapshot.name.removeprefix("code-")
    assert (snapshot / "version.py").read_text() == 'VERSION = "v1"\n'
    assert sorted(p.name for p in snapshot.iterdir()) == ["app.py", "version.py"]
    jobs = json.loads((htcondor / "manifest.json").read_text())["jobs"]
    assert {num: job["code"] for num, job in jobs.items()} == {"0": digest, "1": digest}
    for num in ("0", "1"):
        err = (htcondor / f"{num}.err").read_text()
        assert f"running the app's code from the snapshot code-{digest} (taken at submission" in err, err
    assert f"the app's code travels with the jobs: code-{digest}" in outs["always"]
    # Without the snapshot nothing is written or logged about it.
    auto = runs["auto"][0] / "sweep" / ".htcondor"
    assert not list(auto.glob("code-*"))
    assert "code" not in json.loads((auto / "manifest.json").read_text())["jobs"]["0"]


def test_code_too_big_to_ship_is_refused_in_one_line_before_submitting(tmp_path: Path) -> None:
    app = copy_app("big_code", tmp_path)
    # A generated module bigger than the snapshot's limit (16 MiB), in the package's tree, never imported.
    (app / "bigpkg" / "generated_tables.py").write_text("# a generated table row\n" * 800_000)
    sweep = app / "sweep"
    run = run_app(
        app, ["app.py"], *POOL_ARGS, f"hydra.sweep.dir={sweep}", "hydra.launcher.transfer_files=true", "x=0,1"
    )
    out = run.stdout + run.stderr
    assert run.returncode != 0, out
    lines = [ln for ln in out.splitlines() if "over the limit" in ln]
    assert len(lines) == 1, out
    assert "'bigpkg'" in lines[0], lines[0]
    assert "the biggest bigpkg/generated_tables.py (18.3 MiB)" in lines[0], lines[0]
    assert "hydra.launcher.code_modules=[...]" in lines[0] and "code_snapshot=off" in lines[0]
    assert not list(sweep.rglob("*.spec.pkl")), "a job was prepared although the launcher refused"
