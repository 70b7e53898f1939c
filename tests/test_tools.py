"""The shims in scripts/ and the packages behind them run with a bare python3: standard library only, no venv,
no sys.path edit (scripts/condor-pool and scripts/container-runtime run before the venv exists)."""

from __future__ import annotations

import os
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import condor_pool
import container_runtime
import pack_env
import proctools

ROOT = Path(__file__).resolve().parents[1]
# The interpreter the venv was made from: none of the venv's packages.
BASE_PYTHON = getattr(sys, "_base_executable", sys.executable)
BARE_ENV = {"PATH": "/usr/bin:/bin", "HOME": os.environ.get("HOME", "/")}


def test_packages_import_with_the_standard_library_only():
    modules = [
        info.name
        for package in (condor_pool, container_runtime, pack_env, proctools)
        for info in pkgutil.walk_packages(package.__path__, package.__name__ + ".")
        if not info.name.endswith(".__main__")  # runs the command
    ]
    assert {"container_runtime.engine", "pack_env.standalone", "proctools.pids"} <= set(modules)
    # -S: no site-packages at all, the venv's or the base interpreter's.
    code = f"import importlib; [importlib.import_module(m) for m in {modules!r}]; print('ok')"
    proc = subprocess.run(
        [BASE_PYTHON, "-S", "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        env={**BARE_ENV, "PYTHONPATH": str(ROOT)},
    )
    assert proc.returncode == 0 and proc.stdout == "ok\n", proc.stderr


@pytest.mark.parametrize(
    ("argv", "first_line"),
    [
        (["scripts/container-runtime", "help"], "A container engine and the launcher's worker test image"),
        (["scripts/pack-env", "--help"], "usage: pack-env [-h] [--mode {auto,pixi-pack,standalone}]"),
        (["scripts/condor-pool", "help"], "usage: scripts/condor-pool COMMAND"),
    ],
)
def test_shims_run_from_any_folder_without_the_venv(argv, first_line, tmp_path):
    # As `python3 scripts/...` (how the tests and the pixi task call the Python shims) and by their #! line.
    runs = [[str(ROOT / argv[0]), *argv[1:]]]
    if argv[0] != "scripts/condor-pool":
        runs.append([BASE_PYTHON, str(ROOT / argv[0]), *argv[1:]])
    for cmd in runs:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=tmp_path, env=BARE_ENV)
        assert proc.returncode == 0, (cmd, proc.stderr)
        assert proc.stdout.startswith(first_line), cmd
        assert proc.stderr == ""
