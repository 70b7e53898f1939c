"""Intermediate reports without a pool: report()'s checks and channels, the report text, the report-file
reader and the generic event that carries a report. The chirp server here is a stand-in at the protocol
boundary (a socket speaking HTCondor's chirp); the real starter is in test_pool_reports.py."""

from __future__ import annotations

import logging
import math
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from hydra_plugins.hydra_htcondor_launcher import _jobstate, _reports, reporting
from hydra_plugins.hydra_htcondor_launcher._contract import (
    REPORT_CHIRP_ENV,
    REPORT_FILE_ENV,
    parse_report,
    report_line,
)
from hydra_plugins.hydra_htcondor_launcher._jobstate import JobRecord, JobState, apply
from hydra_plugins.hydra_htcondor_launcher._layout import SweepLayout


@pytest.fixture(autouse=True)
def fresh_reporting(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No handler, no channel, nothing said yet: each test starts as a new job process would."""
    monkeypatch.delenv(REPORT_FILE_ENV, raising=False)
    monkeypatch.delenv(REPORT_CHIRP_ENV, raising=False)
    monkeypatch.setattr(reporting, "_said", set())
    reporting.set_handler(None)
    yield
    reporting.set_handler(None)


# -- the report's text ----------------------------------------------------------------------------------
@pytest.mark.parametrize("value", [0.0, 0.1, -3.5, 1e-300, 0.9123456789012345, 12345678.0])
def test_a_report_line_gives_back_the_exact_value(value):
    line = report_line(7, value)
    assert line.startswith("hydra-htcondor-report step=7 ") and "\n" not in line
    assert parse_report(line) == (7, value)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "epoch=1 val_acc=0.9",
        "hydra-htcondor-report step=x value=1",
        "hydra-htcondor-report step=1",
        "hydra-htcondor-report step=-1 value=1.0",
        "hydra-htcondor-report step=1 value=nan",
        "hydra-htcondor-report step=1 value=0.5 extra",
        "hydra-htcondor-report step=1 value=abc",
    ],
)
def test_other_text_is_not_a_report(text):
    assert parse_report(text) is None


# -- report(): checks -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("step", "value", "bad"),
    [
        (1.0, 0.5, "step=1.0"),
        (True, 0.5, "step=True"),
        (-1, 0.5, "step=-1"),
        ("1", 0.5, "step='1'"),
        (1, math.nan, "value=nan"),
        (1, math.inf, "value=inf"),
        (1, "0.5", "value='0.5'"),
        (1, None, "value=None"),
        (1, True, "value=True"),
    ],
)
def test_bad_step_or_value_is_one_line_naming_it(step, value, bad):
    with pytest.raises(ValueError) as err:
        reporting.report(step, value)
    message = str(err.value)
    assert "\n" not in message and bad in message and "expected" in message


class IntLike:
    """An integer type that is not int (as numpy.int64 is)."""

    def __init__(self, value: int) -> None:
        self.value = value

    def __index__(self) -> int:
        return self.value


def test_a_handler_gets_every_report_and_its_exception_propagates(tmp_path, monkeypatch):
    monkeypatch.setenv(REPORT_FILE_ENV, str(tmp_path / "0.reports"))
    got = []

    class Pruned(Exception):
        pass

    def handler(step, value):
        got.append((step, value))
        if step == 2:
            raise Pruned(f"pruned at step {step}")

    reporting.set_handler(handler)
    reporting.report(IntLike(0), 1)  # an integer type's step, an int value: the handler gets int, float
    reporting.report(1, 0.25)
    with pytest.raises(Pruned, match="pruned at step 2"):
        reporting.report(2, 0.5)
    assert got == [(0, 1.0), (1, 0.25), (2, 0.5)]
    assert type(got[0][0]) is int and type(got[0][1]) is float
    assert not (tmp_path / "0.reports").exists()  # a handler replaces the channel


def test_the_file_channel_appends_one_line_per_report(tmp_path, monkeypatch):
    path = tmp_path / "3.reports"
    monkeypatch.setenv(REPORT_FILE_ENV, str(path))
    for step, value in enumerate([0.5, 0.75, 0.875]):
        reporting.report(step, value)
    lines = path.read_text().splitlines(keepends=True)
    assert [parse_report(line) for line in lines] == [(0, 0.5), (1, 0.75), (2, 0.875)]
    assert all(line.endswith("\n") for line in lines)


def test_a_local_run_drops_reports_quietly(caplog):
    caplog.set_level(logging.DEBUG, logger=reporting.__name__)
    reporting.report(0, 0.5)
    reporting.report(1, 0.5)
    said = [r for r in caplog.records if r.name == reporting.__name__]
    assert [r.levelno for r in said] == [logging.DEBUG, logging.DEBUG] and "no listener" in said[0].message


def test_a_failing_channel_warns_once_and_never_fails_the_job(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv(REPORT_FILE_ENV, str(tmp_path / "no-such-folder" / "0.reports"))
    caplog.set_level(logging.DEBUG, logger=reporting.__name__)
    for step in range(3):
        reporting.report(step, 0.5)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "no-such-folder" in warnings[0].message and "the job goes on" in warnings[0].message


# -- report(): chirp ------------------------------------------------------------------------------------
class ChirpServer:
    """HTCondor's starter as far as `condor_chirp ulog` sees it: a cookie, then ulog commands."""

    def __init__(self, cookie: str = "c00kie", ulog_answer: str = "0") -> None:
        self.cookie, self.ulog_answer = cookie, ulog_answer
        self.commands: list[str] = []
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn, conn.makefile("rwb") as io:
                for raw in io:
                    command = raw.decode().rstrip("\n")
                    self.commands.append(command)
                    ok = command == f"cookie {self.cookie}" if command.startswith("cookie ") else True
                    answer = self.ulog_answer if command.startswith("ulog ") else ("0" if ok else "-1")
                    io.write(f"{answer}\n".encode())
                    io.flush()

    def config(self, folder: Path, cookie: str | None = None) -> str:
        path = folder / ".chirp.config"
        path.write_text(f"127.0.0.1 {self.port} {cookie or self.cookie}\n")
        return str(path)

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def chirp_server() -> Iterator[ChirpServer]:
    server = ChirpServer()
    yield server
    server.close()


def test_the_chirp_channel_sends_the_cookie_then_one_ulog_per_report(tmp_path, monkeypatch, chirp_server):
    monkeypatch.setenv(REPORT_CHIRP_ENV, chirp_server.config(tmp_path))
    reporting.report(0, 0.5)
    reporting.report(1, 0.25)
    # Spaces escaped as the chirp protocol's words want them; the starter unescapes them.
    assert chirp_server.commands == [
        "cookie c00kie",
        "ulog hydra-htcondor-report\\ step=0\\ value=0.5",
        "cookie c00kie",
        "ulog hydra-htcondor-report\\ step=1\\ value=0.25",
    ]


def test_a_refused_cookie_or_ulog_warns_once(tmp_path, monkeypatch, chirp_server, caplog):
    monkeypatch.setenv(REPORT_CHIRP_ENV, chirp_server.config(tmp_path, cookie="wrong"))
    caplog.set_level(logging.WARNING, logger=reporting.__name__)
    reporting.report(0, 0.5)
    reporting.report(1, 0.5)
    assert [c.split()[0] for c in chirp_server.commands] == ["cookie", "cookie"]  # no ulog after a refusal
    (warning,) = caplog.records
    assert "answered '-1' to 'cookie'" in warning.message and "docker_network_type = host" in warning.message


def test_an_unreachable_starter_warns_once(tmp_path, monkeypatch, chirp_server, caplog):
    config = chirp_server.config(tmp_path)
    chirp_server.close()  # what a container job on a loopback-only starter meets: connection refused
    monkeypatch.setenv(REPORT_CHIRP_ENV, config)
    caplog.set_level(logging.WARNING, logger=reporting.__name__)
    reporting.report(0, 0.5)
    reporting.report(1, 0.5)
    (warning,) = caplog.records
    assert "ConnectionRefusedError" in warning.message


# -- the submit side: the report file, read as it grows ------------------------------------------------
def test_the_reader_takes_whole_lines_only_and_goes_on_where_it_stopped(tmp_path):
    path = tmp_path / "0.reports"
    assert _reports.read_new(str(path), 0) == (0, [], 0)  # not written yet
    first, second = report_line(0, 0.5) + "\n", report_line(1, 0.25) + "\n"
    path.write_text(first + second[:10])  # the second line is being written
    offset, reports, bad = _reports.read_new(str(path), 0)
    assert (offset, reports, bad) == (len(first), [(0, 0.5)], 0)
    with path.open("a") as f:
        f.write(second[10:] + "not a report\n")
    offset, reports, bad = _reports.read_new(str(path), offset)
    assert (reports, bad) == ([(1, 0.25)], 1) and offset == path.stat().st_size
    assert _reports.read_new(str(path), offset) == (offset, [], 0)
    path.write_text(first)  # written anew (shorter than where the reader was): read from its start
    assert _reports.read_new(str(path), offset) == (len(first), [(0, 0.5)], 0)


def _rec(num: int, **kw) -> JobRecord:
    return JobRecord(proc=num, num=num, **kw)


def test_report_files_feed_started_jobs_and_read_an_ended_job_once_more(tmp_path):
    layout = SweepLayout(str(tmp_path))
    Path(layout.htcondor_dir).mkdir()
    files = _reports.ReportFiles(layout)
    queued, running = _rec(0), _rec(1, starts=1, state=JobState.RUNNING)
    records = {0: queued, 1: running}
    for num in (0, 1):
        Path(layout.reports(num)).write_text(report_line(0, 0.5) + "\n")
    files.poll(records)
    assert (queued.reports, running.reports) == ([], [(0, 0.5)])  # a queued job has no report of its own
    with open(layout.reports(1), "a") as f:
        f.write(report_line(1, 0.75) + "\n")
    apply(running, "JOB_TERMINATED", {"TerminatedNormally": True, "ReturnValue": 0}, 10.0)
    files.poll(records)  # the report written just before the job ended
    with open(layout.reports(1), "a") as f:
        f.write(report_line(2, 1.0) + "\n")
    files.poll(records)  # nothing is read of an ended job after that
    assert running.reports == [(0, 0.5), (1, 0.75)]


# -- the submit side: a report in the job event log (chirp) -------------------------------------------
def test_a_generic_event_with_a_report_is_reported_and_changes_nothing_else():
    rec = _rec(0)
    apply(rec, "EXECUTE", {"SlotName": "slot1_1@vm"}, 100.0)
    before = JobRecord(**{**vars(rec), "reports": []})
    # The Info attribute as htcondor2 reads a `condor_chirp ulog` event (HTCondor 23.9, measured).
    assert apply(rec, "GENERIC", {"Info": report_line(0, 0.5), "EventTypeNumber": 8}, 101.0)
    assert apply(rec, "GENERIC", {"Info": report_line(1, 0.25)}, 102.0)
    assert not apply(rec, "GENERIC", {"Info": "someone else's text"}, 103.0)
    assert rec.reports == [(0, 0.5), (1, 0.25)]
    assert JobRecord(**{**vars(rec), "reports": []}) == before  # state, since, last event: untouched


def test_reported_appends_in_order():
    rec = _rec(0)
    for step, value in [(0, 0.5), (1, 0.25), (1, 0.25)]:
        _jobstate.reported(rec, step, value)
    assert rec.reports == [(0, 0.5), (1, 0.25), (1, 0.25)]
