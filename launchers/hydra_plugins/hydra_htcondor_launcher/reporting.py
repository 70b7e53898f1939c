"""Intermediate reports of a running job: ``report(step, value)``, callable from any Hydra app.

    from hydra_plugins.hydra_htcondor_launcher.reporting import report
    report(epoch, val_acc)  # e.g. at the end of every validation epoch

Where a report goes:

- an in-process handler, when one is set (``set_handler``: a sweeper running the task with Hydra's basic
  launcher); it gets the report and nothing else happens, and what it raises (``optuna.TrialPruned``)
  propagates to the caller;
- else, in a job of the HTCondor launcher, the channel its worker named in the environment (``_contract``):
  one line appended to the job's report file on a shared filesystem, or a chirp ``ulog`` into the job event
  log with file transfer or in a container (HTCondor's chirp protocol spoken here: no ``condor_chirp``
  binary needed, which a container image lacks);
- else (a plain local run) nowhere: a debug line, once.

A channel that fails (a full disk, a starter out of reach) never fails the job: a warning, once, in the
job's log (with Hydra's job logging: its stdout and the job folder's .log); later failures are debug lines.
Standard library only: Hydra's plugin scan imports this module at every start.
"""

from __future__ import annotations

import logging
import math
import operator
import os
import socket
from typing import TYPE_CHECKING

from ._contract import REPORT_CHIRP_ENV, REPORT_FILE_ENV, report_line

if TYPE_CHECKING:
    from collections.abc import Callable

    # Not at run time: Hydra's plugin scan runs issubclass() on every member of this module, and on Python
    # 3.10 a subscripted Callable passes inspect.isclass() and then fails issubclass() (every job failed).
    Handler = Callable[[int, float], None]

log = logging.getLogger(__name__)
CHIRP_TIMEOUT_S = 10.0  # a starter busy with an update answers in about 1 s (measured); never hang a job

_handler: Handler | None = None
_said: set[str] = set()  # what was already said once in this process


def set_handler(handler: Handler | None) -> None:
    """Send every later report of this process to ``handler(step, value)`` instead of a channel; None
    restores the channels."""
    global _handler
    _handler = handler


def report(step: int, value: float) -> None:
    """Report ``value`` (a finite number) at ``step`` (an integer >= 0, e.g. the epoch) of a running job."""
    try:
        index = operator.index(step)  # an int, or an integer type's value (numpy.int64)
    except TypeError:
        index = -1
    if isinstance(step, bool) or index < 0:
        raise ValueError(f"report: step={step!r} is not accepted: expected an integer >= 0 (e.g. the epoch)")
    step = index
    if isinstance(value, bool | str | bytes):
        raise ValueError(f"report: value={value!r} is not accepted: expected a finite number")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"report: value={value!r} is not accepted: expected a finite number") from None
    if not math.isfinite(number):
        raise ValueError(f"report: value={value!r} is not accepted: expected a finite number")
    if _handler is not None:
        _handler(step, number)
        return
    path, chirp = os.environ.get(REPORT_FILE_ENV), os.environ.get(REPORT_CHIRP_ENV)
    line = report_line(step, number)
    try:
        if path:
            _append(path, line)
        elif chirp:
            _chirp_ulog(chirp, line)
        else:
            _once(
                "none",
                logging.DEBUG,
                "report(%d, %r): no listener (not an HTCondor launcher job, no "
                "handler set); reports are dropped",
                step,
                number,
            )
    except (OSError, ValueError) as exc:
        # The starter listens on loopback only: a container job reaches it only on the host's network.
        where = (
            f"file {path}"
            if path
            else (
                f"HTCondor's chirp server ({chirp}; a container job reaches it only with "
                "docker_network_type = host, the launcher's choice unless submit_commands names another)"
            )
        )
        _once(
            "failed",
            logging.WARNING,
            "report(%d, %r) could not be sent to %s: %s: %s; the job goes on "
            "(later failures are not repeated)",
            step,
            number,
            where,
            type(exc).__name__,
            exc,
        )


def _once(key: str, level: int, msg: str, *args: object) -> None:
    if key in _said:
        log.debug(msg, *args)
    else:
        _said.add(key)
        log.log(level, msg, *args)


def _append(path: str, line: str) -> None:
    """One write of one whole line (O_APPEND: a reader never sees two reports interleaved)."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)


def _chirp_word(text: str) -> str:
    # The chirp protocol's word: whitespace and backslashes escaped by a backslash.
    return "".join("\\" + c if c in " \t\n\r\\" else c for c in text)


def _chirp_ulog(config_file: str, text: str) -> None:
    """``condor_chirp ulog TEXT``: the starter writes TEXT into the job event log (a generic event)."""
    with open(config_file) as f:
        fields = f.read().split()
    if len(fields) < 3:
        raise ValueError(f"{config_file} does not hold 'host port cookie'")
    host, port, cookie = fields[0], int(fields[1]), fields[2]
    with socket.create_connection((host, port), timeout=CHIRP_TIMEOUT_S) as sock, sock.makefile("rwb") as io:
        for command in (f"cookie {_chirp_word(cookie)}", f"ulog {_chirp_word(text)}"):
            io.write(command.encode() + b"\n")
            io.flush()
            answer = io.readline().decode().strip()
            if answer != "0":
                raise ValueError(f"the starter answered {answer or 'nothing'!r} to {command.split()[0]!r}")
