"""The oldest Python of requires-python (3.10) as the worker: sweeps of a plain Hydra app on the real pool
whose jobs run under a real 3.10 interpreter (the machine image's pyenv one), in a venv with the launcher.

The submitting side is this test's own Python, or the 3.10 venv too. The task function lives in an importable
module: pickled by reference, it crosses Python versions; one defined in ``__main__`` is pickled by value,
as bytecode of the submitting Python, and needs a worker of the same minor version.
"""

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.condor

PY310 = Path(os.environ.get("HYDRA_HTCONDOR_TEST_PY310", "/root/.pyenv/versions/3.10.13/bin/python3.10"))
LAUNCHERS = Path(__file__).resolve().parents[1]

APP_TASKS = """
import sys


def task(cfg):
    if cfg.x == "raise":
        raise ValueError(f"py310 task failed on purpose (x={cfg.x})")
    return {"python": "%d.%d" % sys.version_info[:2], "x": cfg.x}
"""
APP = """
import hydra

from py310app.tasks import task

main = hydra.main(version_base=None, config_path=None)(task)

if __name__ == "__main__":
    main()
"""


def _py310_venv(missing) -> Path:
    """A venv of the 3.10 interpreter with the launcher installed editable (so it runs this checkout's code),
    cached in a folder keyed by the interpreter, the launcher's requirements and this checkout: a rerun
    reuses it."""
    if not PY310.is_file():
        missing(f"Python 3.10 interpreter {PY310} not found (set HYDRA_HTCONDOR_TEST_PY310)")
    key = hashlib.sha256(
        f"{PY310.resolve()}\n{LAUNCHERS}\n".encode() + (LAUNCHERS / "pyproject.toml").read_bytes()
    ).hexdigest()[:16]
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "hydra-htcondor-launcher-tests"
    venv = cache / f"py310-venv-{key}"
    if (venv / "bin" / "python").exists():
        return venv
    # Built under a temporary name and renamed when complete: an interrupted build is never reused.
    tmp = cache / f".{venv.name}.{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        subprocess.run([str(PY310), "-m", "venv", str(tmp)], check=True, capture_output=True, timeout=300)
        pip = subprocess.run(
            [str(tmp / "bin" / "python"), "-m", "pip", "install", "-q", "-e", str(LAUNCHERS)],
            capture_output=True,
            text=True,
            timeout=900,
        )
        if pip.returncode != 0:
            missing(f"cannot install the launcher into a Python 3.10 venv: {pip.stderr.strip()[-500:]}")
        # The venv's own paths (bin/python's pyvenv.cfg, the editable .pth) do not name its folder.
        try:
            tmp.rename(venv)
        except OSError:  # another xdist worker built the same venv meanwhile: use that one
            if not (venv / "bin" / "python").exists():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return venv


@pytest.mark.parametrize("submitter", ["this_python", "py310"])
def test_a_python_310_worker_returns_results_and_failures(tmp_path, missing, submitter):
    """The worker is 3.10; the submitting side is this test's Python, or 3.10 too (which prints no exception
    notes: the launcher logs the worker's traceback itself)."""
    venv = _py310_venv(missing)
    python = venv / "bin" / "python"
    # Every module of the launcher imports under 3.10, not only what this sweep runs.
    imports = (
        "import importlib, pkgutil, sys; import hydra_plugins.hydra_htcondor_launcher as p; "
        "[importlib.import_module(f'{p.__name__}.{m.name}') for m in pkgutil.iter_modules(p.__path__)]; "
        "print(sys.version_info[:2])"
    )
    check = subprocess.run([str(python), "-c", imports], capture_output=True, text=True, timeout=120)
    assert check.returncode == 0 and check.stdout.strip() == "(3, 10)", check.stderr

    (tmp_path / "py310app").mkdir()
    (tmp_path / "py310app" / "__init__.py").write_text("")
    (tmp_path / "py310app" / "tasks.py").write_text(APP_TASKS)
    (tmp_path / "app.py").write_text(APP)
    sweep = tmp_path / "sweep"
    proc = subprocess.run(
        [
            str(python) if submitter == "py310" else sys.executable,
            "app.py",
            "-m",
            "hydra/launcher=htcondor",
            "+x=ok,raise",
            f"hydra.sweep.dir={sweep}",
            f"hydra.launcher.python={python}",
            "hydra.launcher.request_memory=256MB",
            "hydra.launcher.poll_interval=0.2",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    out = proc.stdout + proc.stderr
    # The job that raised ends the sweep with its own exception (Hydra's sweeper re-raises it) ...
    assert proc.returncode != 0, out
    assert "ValueError: py310 task failed on purpose (x=raise)" in out
    # ... whose traceback, recorded on the 3.10 worker, comes back with it.
    assert "[remote traceback, HTCondor job " in out, out
    assert 'raise ValueError(f"py310 task failed on purpose (x={cfg.x})")' in out, out
    # The other job's real return value, computed under 3.10.
    assert "-> {'python': '3.10', 'x': 'ok'}" in out, out
