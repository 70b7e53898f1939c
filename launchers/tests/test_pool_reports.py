"""Intermediate reports on the real pool: a job's report(step, value) reaches the launcher's JobRecord, in
order, through the report file (shared filesystem), HTCondor's chirp into the event log (file transfer) and
chirp from inside a container."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import cloudpickle
import pytest
from _launch_helpers import launch
from hydra.core.utils import JobStatus
from hydra_plugins.hydra_htcondor_launcher import _jobstate, _settings
from hydra_plugins.hydra_htcondor_launcher._contract import parse_report
from hydra_plugins.hydra_htcondor_launcher._jobstate import JobRecord
from hydra_plugins.hydra_htcondor_launcher._layout import SweepLayout

pytestmark = [pytest.mark.condor, pytest.mark.usefixtures("hydra_restore_singletons")]

STEPS = 3


def _reporting_task(cfg):
    """Three reports, then its base; runs on the pool (pickled by value: a container lacks this file)."""
    from hydra_plugins.hydra_htcondor_launcher.reporting import report

    for step in range(STEPS):
        report(step, cfg.base + step / 8)
    return cfg.base


@pytest.fixture
def received(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[int, JobRecord]]:
    """The launcher's records that got reports, by job number: `_jobstate.reported` (the only writer of
    JobRecord.reports) wrapped, whatever module of the launcher reads the channel."""
    seen: dict[int, JobRecord] = {}
    real = _jobstate.reported

    def spy(rec: JobRecord, step: int, value: float) -> None:
        seen[rec.num] = rec
        real(rec, step, value)

    monkeypatch.setattr(_jobstate, "reported", spy)
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    yield seen
    cloudpickle.unregister_pickle_by_value(sys.modules[__name__])


def _generic_texts(log_file: str) -> list[str]:
    import htcondor2

    return [
        str(ev.get("Info"))
        for ev in htcondor2.JobEventLog(log_file).events(stop_after=0)
        if ev.type == htcondor2.JobEventType.GENERIC
    ]


def _expected(base: float) -> list[tuple[int, float]]:
    return [(step, base + step / 8) for step in range(STEPS)]


def _check(sweep: Path, results, received: dict[int, JobRecord], bases: list[float]) -> SweepLayout:
    statuses = [r.status for r in results]
    assert statuses == [JobStatus.COMPLETED] * len(bases), [r._return_value for r in results]
    assert {num: rec.reports for num, rec in received.items()} == {
        num: _expected(base) for num, base in enumerate(bases)
    }
    return SweepLayout(str(sweep))


def test_reports_travel_by_file_on_a_shared_filesystem(tmp_path, received):
    sweep = tmp_path / "sweep"
    results = launch(sweep, _reporting_task, [["+base=0.25"], ["+base=1.5"]])
    layout = _check(sweep, results, received, [0.25, 1.5])
    for num, base in enumerate([0.25, 1.5]):
        lines = Path(layout.reports(num)).read_text().splitlines()
        assert [parse_report(line) for line in lines] == _expected(base)
    ((_, _, log_file),) = layout.batch_logs()
    assert _generic_texts(log_file) == []  # no chirp: the submit description has no want_io_proxy


def test_reports_travel_by_chirp_with_file_transfer(tmp_path, received):
    sweep = tmp_path / "sweep"
    results = launch(
        sweep, _reporting_task, [["+base=0.25"], ["+base=1.5"]], ["hydra.launcher.transfer_files=true"]
    )
    layout = _check(sweep, results, received, [0.25, 1.5])
    ((_, _, log_file),) = layout.batch_logs()
    texts = _generic_texts(log_file)
    assert sorted(parse_report(t) for t in texts) == sorted(_expected(0.25) + _expected(1.5))
    assert not any(os.path.exists(layout.reports(num)) for num in (0, 1))


def _in_a_container(sweep: Path, image: str, *overrides: str) -> list:
    """One job of _reporting_task (base 0.5) in the worker image (container_worker.image)."""
    container = [
        "hydra.launcher.env_mode=container",
        f"hydra.launcher.container_image={image}",
        "hydra.launcher.transfer_files=true",
    ]
    return launch(sweep, _reporting_task, [["+base=0.5"]], [*container, *overrides])


@pytest.mark.container
def test_reports_travel_by_chirp_from_a_container(tmp_path, received, container_worker):
    sweep = tmp_path / "sweep"
    # No network setting: HTCondor's chirp server listens on loopback only, and the launcher puts the
    # container on the host's network for it (launchers/README.md, "Intermediate reports").
    results = _in_a_container(sweep, container_worker.image)
    layout = _check(sweep, results, received, [0.5])
    ((_, _, log_file),) = layout.batch_logs()
    assert [parse_report(t) for t in _generic_texts(log_file)] == _expected(0.5)


@pytest.mark.container
def test_a_network_of_the_users_own_wins_and_one_line_says_the_reports_cannot_travel(
    tmp_path, received, container_worker
):
    # Not caplog: the launcher re-configures logging (Hydra's configure_log), dropping the root's handlers.
    warnings: list[str] = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = lambda record: warnings.append(record.getMessage())  # type: ignore[method-assign]
    logging.getLogger(_settings.__name__).addHandler(handler)
    sweep = tmp_path / "sweep"
    try:
        results = _in_a_container(
            sweep, container_worker.image, "+hydra.launcher.submit_commands.docker_network_type=none"
        )
    finally:
        logging.getLogger(_settings.__name__).removeHandler(handler)
    assert [r.status for r in results] == [JobStatus.COMPLETED]  # a report that cannot travel fails nothing
    assert received == {}
    assert len(warnings) == 1 and "submit_commands.docker_network_type='none'" in warnings[0], warnings
    assert "cannot reach HTCondor's chirp server" in warnings[0]
    # The job's log (its stdout, Hydra's job logging) says so once (--network=none: a loopback only).
    out = Path(SweepLayout(str(sweep)).stdout(0)).read_text()
    assert out.count("could not be sent to HTCondor's chirp server") == 1, out
    assert "ConnectionRefusedError" in out, out
