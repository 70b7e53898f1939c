"""What the sweeper's tests share: the test app's command line and a look at the study it leaves."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import optuna
from optuna.storages.journal import JournalFileBackend, JournalStorage

APP = Path(__file__).resolve().parent / "app" / "objective.py"
JOURNAL = "optuna_journal.log"  # study.JOURNAL_FILE, checked by test_sweeper_basic's first test


# The HTCondor launcher on the test pool, as the sweeper's pool tests run it.
POOL = ("hydra/launcher=htcondor", "hydra.launcher.request_memory=256MB", "hydra.launcher.poll_interval=0.2")


def sweep_id(sweep_dir: Path) -> str:
    """The sweep's id in HTCondor (HydraSweepId), from the launcher's manifest."""
    from hydra_plugins.hydra_htcondor_launcher._layout import SweepLayout

    return str(json.loads(Path(SweepLayout(str(sweep_dir)).manifest).read_text())["sweep_id"])


def left_in_queue(sweep_dir: Path) -> list:
    """The sweep's jobs still in HTCondor's queue, removed ones on their way out (JobStatus 3) aside."""
    import htcondor2

    return list(
        htcondor2.Schedd().query(
            f'HydraSweepId == "{sweep_id(sweep_dir)}" && JobStatus != 3', projection=["ProcId"]
        )
    )


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
