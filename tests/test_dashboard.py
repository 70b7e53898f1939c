"""`optuna-dashboard <the study file>` works on a sweep's study (issue 22): the real dashboard people use for
Optuna, started as a subprocess on an Optuna journal file, read through its JSON API and in a real headless
browser (`make browser`).

The study here is written with Optuna's own JournalStorage/JournalFileBackend: COMPLETE trials and one PRUNED
trial with intermediate values, as a streaming search with a pruner leaves them. To check a study the sweeper
wrote, give `check_dashboard` its journal file, study name and trial states.
"""

from __future__ import annotations

import html
import itertools
import json
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from _browser import headless

STUDY = "mnist_app-dashboard-check"
# (value at the end or None, [(step, intermediate value)], state): three finished trials, one pruned early.
TRIALS = [
    (0.25, [(0, 0.5), (1, 0.3)], "COMPLETE"),
    (0.04, [(0, 0.4), (1, 0.1)], "COMPLETE"),
    (0.81, [(0, 0.9), (1, 0.85)], "COMPLETE"),
    (None, [(0, 5.0), (1, 6.0)], "PRUNED"),
]
# How the dashboard names a state (its UI and its API).
SHOWN = {"COMPLETE": "Complete", "PRUNED": "Pruned", "FAIL": "Fail", "RUNNING": "Running"}
START_DEADLINE_S = 60


@pytest.fixture
def dashboard_installed(missing) -> None:
    try:
        import optuna  # noqa: F401
        import optuna_dashboard  # noqa: F401
        from optuna.storages.journal import JournalFileBackend  # noqa: F401 (optuna >= 4.0)
    except ImportError as exc:
        missing(f"optuna-dashboard with optuna >= 4 is not installed in this environment: {exc}")


def write_journal_study(path: Path) -> None:
    """A study in an Optuna journal file at ``path``, with TRIALS (minimize)."""
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend
    from optuna.trial import TrialState

    storage = JournalStorage(JournalFileBackend(str(path)))
    study = optuna.create_study(study_name=STUDY, storage=storage, direction="minimize")
    for value, reports, state in TRIALS:
        trial = study.ask()
        trial.suggest_float("x", -1.0, 1.0)
        for step, intermediate in reports:
            trial.report(intermediate, step)
        study.tell(trial, value, state=TrialState[state])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


@contextmanager
def dashboard(study_file: Path, log_file: Path) -> Iterator[str]:
    """`optuna-dashboard <study_file>` on a free port, answering; yields its base URL; stopped afterwards."""
    port = _free_port()
    command = [
        str(Path(sys.executable).parent / "optuna-dashboard"),
        str(study_file),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    with log_file.open("w") as log:
        proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_DEADLINE_S
        while True:
            if proc.poll() is not None:
                pytest.fail(f"optuna-dashboard exited with {proc.returncode}: {log_file.read_text()[-2000:]}")
            try:
                _get_json(f"{base}/api/studies")
                break
            except (urllib.error.URLError, ConnectionError):
                if time.monotonic() > deadline:
                    pytest.fail(
                        f"optuna-dashboard did not answer within {START_DEADLINE_S} s: "
                        f"{log_file.read_text()[-2000:]}"
                    )
                time.sleep(0.1)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def _page_text(dom: str) -> list[str]:
    """The visible text of a dumped DOM, one string per element text."""
    dom = re.sub(r"<(style|script|svg)\b.*?</\1>", "", dom, flags=re.S)
    return [t for t in (html.unescape(part).strip() for part in re.split(r"<[^>]+>", dom)) if t]


def check_dashboard(
    study_file: Path, study_name: str, states: dict[int, str], out_dir: Path
) -> list[dict[str, Any]]:
    """The dashboard started on ``study_file`` lists ``study_name`` with ``states`` (trial number -> Optuna
    state name), in its API and on the page a browser renders. Returns the API's trials, by number."""
    with dashboard(study_file, out_dir / "optuna-dashboard.log") as base:
        studies = _get_json(f"{base}/api/studies")["study_summaries"]
        [study_id] = [s["study_id"] for s in studies if s["study_name"] == study_name]
        detail = _get_json(f"{base}/api/studies/{study_id}?after=0")
        assert detail["name"] == study_name
        assert {t["number"]: t["state"] for t in detail["trials"]} == {n: SHOWN[s] for n, s in states.items()}
        dom = subprocess.run(
            [
                *headless(out_dir),
                "--virtual-time-budget=15000",
                "--dump-dom",
                f"{base}/dashboard/studies/{study_id}/trials",
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        ).stdout
    text = _page_text(dom)
    assert f"{study_name} (id={study_id})" in text, text[:40]
    # The trial list: "Trial N" then its state, once per trial, as the page renders them.
    shown = {}
    for here, after in itertools.pairwise(text):
        match = re.fullmatch(r"Trial (\d+)", here)
        if match and int(match[1]) not in shown:
            shown[int(match[1])] = after
    assert shown == {n: SHOWN[s] for n, s in states.items()}, text[:60]
    return sorted(detail["trials"], key=lambda t: t["number"])


@pytest.mark.usefixtures("dashboard_installed")
def test_optuna_dashboard_shows_a_journal_file_study(tmp_path):
    study_file = tmp_path / "study.log"
    write_journal_study(study_file)
    trials = check_dashboard(study_file, STUDY, {n: t[2] for n, t in enumerate(TRIALS)}, tmp_path)
    # What the file holds reaches the dashboard: values and the intermediate values (the pruned trial's too).
    for trial, (value, reports, _) in zip(trials, TRIALS, strict=True):
        # A trial told PRUNED without a value takes its last intermediate value (Optuna's rule).
        assert trial["values"] == [value if value is not None else reports[-1][1]], trial
        assert [(r["step"], r["value"]) for r in trial["intermediate_values"]] == reports
