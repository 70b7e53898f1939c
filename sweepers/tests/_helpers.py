"""What the sweeper's tests share: the test app's command line and a look at the study it leaves."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import optuna
from optuna.storages.journal import JournalFileBackend, JournalStorage

APP = Path(__file__).resolve().parent / "app" / "objective.py"
JOURNAL = "optuna_journal.log"  # study.JOURNAL_FILE, checked by test_sweeper_basic's first test


def command(sweep_dir: Path, *args: str) -> list[str]:
    """The test app's multirun command line with the streaming sweeper, its sweep folder in sweep_dir."""
    return [
        sys.executable,
        str(APP),
        "-m",
        "hydra/sweeper=optuna_stream",
        f"hydra.sweep.dir={sweep_dir}",
        *args,
    ]


def run(cwd: Path, sweep_dir: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """The command's run; its console (Hydra logs to stdout, errors to stderr) in order in ``stdout``."""
    return subprocess.run(
        command(sweep_dir, *args),
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=timeout,
        check=False,
    )


def study(sweep_dir: Path, name: str = "objective") -> optuna.Study:
    """The study the sweep left in its folder's journal (the app's name is the default study name)."""
    storage = JournalStorage(JournalFileBackend(str(sweep_dir / JOURNAL)))
    return optuna.load_study(study_name=name, storage=storage)


def error_line(console: str) -> str:
    """The one line Hydra prints for a CompactHydraException (before its HYDRA_FULL_ERROR hint)."""
    lines = [line for line in console.splitlines() if line.strip() and "HYDRA_FULL_ERROR" not in line]
    return lines[-1] if lines else ""
