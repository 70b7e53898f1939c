"""The submit side of a shared-filesystem job's intermediate reports: its report file (``N.reports``,
appended by ``reporting.report`` on the worker), read as it grows.

Only new bytes are read at each poll, and only whole lines are taken: a line the job is writing (or one a
filesystem shows in part) waits for the next poll. With file transfer the reports travel in the job event
log instead (chirp; ``_jobstate`` turns them into the same ``reported`` calls).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping

from . import _jobstate
from ._contract import parse_report
from ._jobstate import JobRecord
from ._layout import SweepLayout

log = logging.getLogger(__name__)


def read_new(path: str, offset: int) -> tuple[int, list[tuple[int, float]], int]:
    """The reports of `path` after byte `offset`: (the offset after the last whole line, the reports in
    order, the number of lines that were not reports). A missing file has none yet; a file shorter than
    `offset` was written anew (a sweep folder reused) and is read from its start."""
    try:
        with open(path, "rb") as f:
            if os.fstat(f.fileno()).st_size < offset:
                offset = 0
            f.seek(offset)
            data = f.read()
    except FileNotFoundError:
        return offset, [], 0
    end = data.rfind(b"\n") + 1  # 0: no whole line yet
    reports, bad = [], 0
    for raw in data[:end].splitlines():
        parsed = parse_report(raw.decode(errors="replace"))
        if parsed is None:
            bad += 1
        else:
            reports.append(parsed)
    return offset + end, reports, bad


class ReportFiles:
    """The report files of one batch's jobs, each read from where the last poll stopped."""

    def __init__(self, layout: SweepLayout) -> None:
        self.layout = layout
        self._offsets: dict[int, int] = {}  # by job number
        self._done: set[int] = set()  # jobs that ended and whose file was read once after that

    def poll(self, records: Mapping[int, JobRecord]) -> None:
        """Hand each started job's new reports to ``_jobstate.reported``; a job that ended is read once
        more (its last report may have been written just before its end event was read), then no more."""
        for rec in records.values():
            if rec.starts == 0 or rec.num in self._done:
                continue
            if rec.final:
                self._done.add(rec.num)
            path = self.layout.reports(rec.num)
            try:
                self._offsets[rec.num], reports, bad = read_new(path, self._offsets.get(rec.num, 0))
            except OSError as exc:  # a shared filesystem's hiccup: the next poll tries again
                log.debug("job #%d: cannot read its reports %s: %s", rec.num, path, exc)
                self._done.discard(rec.num)
                continue
            if bad:
                log.warning("job #%d: %d line(s) of %s are not reports; skipped", rec.num, bad, path)
            for step, value in reports:
                _jobstate.reported(rec, step, value)
