"""What the tools' command lines share."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import IO


def log_lines(package: str, prog: str, stream: IO[str]) -> Callable[[], None]:
    """Show `package`'s INFO log as "PROG: message" lines on `stream`, and nowhere else (the packages only
    log; the command line that runs them decides where the lines go). Returns what undoes it, for a
    `main()` that tests call in-process."""
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter(f"{prog}: %(message)s"))
    package_log = logging.getLogger(package)
    package_log.addHandler(handler)
    package_log.setLevel(logging.INFO)
    package_log.propagate = False
    return lambda: package_log.removeHandler(handler)
