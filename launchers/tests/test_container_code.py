"""Unmodified-style Hydra apps whose jobs need the app's own code, swept in HTCondor's container universe
with file transfer and no extra flags: the worker image has Hydra and the launcher, not the apps, so the
code snapshot (`_code`) is what lets them run. Each sweep gives the same job configs and outputs as Hydra's
basic launcher. Also the one-line errors of a module the snapshot lacks and of a data file read next to the
shipped code. The apps are in launchers/tests/apps/ (see its README)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from _launch_helpers import copy_app, run_app

pytestmark = [pytest.mark.condor, pytest.mark.container, pytest.mark.usefixtures("container_worker")]

IMAGE = "docker://mnist-app-test-worker:latest"
CONTAINER = [
    "hydra/launcher=htcondor",
    "hydra.launcher.poll_interval=0.1",
    "hydra.launcher.request_memory=256MB",
    "hydra.launcher.timeout_min=5",
    "hydra.launcher.status_interval=1",
    "hydra.launcher.env_mode=container",
    f"hydra.launcher.container_image={IMAGE}",
    "hydra.launcher.transfer_files=true",
]


def _job_files(sweep: Path) -> dict[str, str]:
    """The job folders' files by path: not the launcher's folder, nor what names the launcher or the time
    (hydra.yaml, multirun.yaml, the job's log)."""
    return {
        p.relative_to(sweep).as_posix(): p.read_text()
        for p in sorted(sweep.rglob("*"))
        if p.is_file()
        and ".htcondor" not in p.relative_to(sweep).parts
        and p.name not in ("hydra.yaml", "multirun.yaml")
        and p.suffix != ".log"
    }


def _same_as_basic(app: Path, command: list[str], *overrides: str, env: dict[str, str] | None = None) -> str:
    """Sweep `app` with the basic launcher and in containers; assert the same job folders come back and
    return the container sweep's console output."""
    basic = run_app(app, command, f"hydra.sweep.dir={app / 'basic'}", *overrides, env=env)
    assert basic.returncode == 0, basic.stdout + basic.stderr
    run = run_app(app, command, f"hydra.sweep.dir={app / 'contained'}", *CONTAINER, *overrides, env=env)
    out = run.stdout + run.stderr
    assert run.returncode == 0, out
    expected = _job_files(app / "basic")
    assert len(expected) >= 4, expected  # two jobs' configs and outputs at least
    assert _job_files(app / "contained") == expected
    # Which code every job ran: one snapshot in the sweep folder, named in each job's log.
    (snapshot,) = (app / "contained" / ".htcondor").glob("code-*")
    for err in (app / "contained" / ".htcondor").glob("*.err"):
        assert f"from the snapshot {snapshot.name} (taken at submission" in err.read_text(), err.read_text()
    return out


def test_structured_configs_registered_by_a_sibling_module(tmp_path: Path) -> None:
    app = copy_app("sibling_configs", tmp_path)
    out = _same_as_basic(app, ["my_app.py"], "db=mysql,postgresql")
    assert "-> 'mysql://localhost:3306'" in out and "-> 'postgresql://localhost:5432'" in out
    (snapshot,) = (app / "contained" / ".htcondor").glob("code-*")
    assert sorted(p.name for p in snapshot.iterdir()) == ["database_lib.py", "my_app.py"]
    # Without the snapshot (as before it existed) the jobs fail, and say what to do.
    off = run_app(
        app,
        ["my_app.py"],
        f"hydra.sweep.dir={app / 'off'}",
        *CONTAINER,
        "hydra.launcher.code_snapshot=off",
        "db=mysql",
    )
    failed = [ln for ln in (off.stdout + off.stderr).splitlines() if "#0 : db=mysql FAILED" in ln]
    assert off.returncode != 0 and failed, off.stdout + off.stderr
    assert "No module named 'database_lib' on this worker (no code snapshot was sent" in failed[0]


@pytest.mark.parametrize(
    "overrides, returned",
    [
        (
            ["db=mysql,postgresql"],
            ["MySQL connecting to localhost:3306", "PostgreSQL connecting to localhost:5432"],
        ),
        (
            ["db=mysql", "db._target_=__main__.MySQLConnection", "db.host=a,b"],
            ["MySQL connecting to a:3306", "MySQL connecting to b:3306"],
        ),
    ],
    ids=["my_app", "__main__"],
)
def test_instantiate_target_into_the_scripts_own_classes(
    tmp_path: Path, overrides: list[str], returned: list[str]
) -> None:
    """``_target_: my_app.MySQLConnection`` as Hydra's example has it, and ``__main__.MySQLConnection`` (as
    hydra-zen's ``builds`` names a class of the script): on the worker, __main__ is the launcher's."""
    app = copy_app("instantiate_target", tmp_path)
    out = _same_as_basic(app, ["my_app.py"], *overrides)
    for value in returned:
        assert f"-> {value!r}" in out, out


def test_src_layout_package_run_with_python_m(tmp_path: Path) -> None:
    app = copy_app("src_layout", tmp_path)
    path = str(app / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")
    out = _same_as_basic(app, ["-m", "shapes_pkg"], "shape=cube,sphere", env={"PYTHONPATH": path})
    assert "#0 : shape=cube -> 80\n" in out  # a cube of side 2, times the package's SCALE
    (snapshot,) = (app / "contained" / ".htcondor").glob("code-*")
    # The whole package: shapes_pkg.solids is imported only on the worker, by its _target_.
    assert (snapshot / "shapes_pkg" / "solids.py").is_file()


def test_hydra_zen_app_with_configs_built_in_main(tmp_path: Path) -> None:
    app = copy_app("hydra_zen_app", tmp_path)
    out = _same_as_basic(app, ["zen_app.py"], "shape=square,circle")
    assert "-> 8.0" in out and "-> 6.28318" in out
    (snapshot,) = (app / "contained" / ".htcondor").glob("code-*")
    assert sorted(p.name for p in snapshot.iterdir()) == ["shapes.py", "zen_app.py"]  # not hydra_zen


def test_a_missing_module_and_a_data_file_next_to_the_code_fail_in_one_line(tmp_path: Path) -> None:
    app = copy_app("broken_app", tmp_path)
    run = run_app(app, ["app.py"], f"hydra.sweep.dir={app / 'sweep'}", *CONTAINER, "use=lazy,data")
    out = run.stdout + run.stderr
    assert run.returncode != 0, out
    lazy = [ln for ln in out.splitlines() if "#0 : use=lazy FAILED: MissingModuleError" in ln]
    assert lazy, out
    assert "No module named 'lazy_helper' on this worker: the submitting process did not import it" in lazy[0]
    assert "hydra.launcher.code_modules=[app,reader,lazy_helper]" in out  # the whole line is longer than 300
    data = [ln for ln in out.splitlines() if "#1 : use=data FAILED: CodeDataFileError" in ln]
    assert data, out
    assert "table.csv was read next to the app's modules" in data[0]
