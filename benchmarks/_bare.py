"""The baseline the launcher benchmarks compare against: a trivial job submitted bare, without the launcher.

Standard library only, so that timing a bare submitter does not also time the launcher's imports.
"""

from __future__ import annotations

import sys
from pathlib import Path


def bare_description(folder: Path, log: Path) -> dict[str, str]:
    """A trivial job (`python -c pass`) with nothing to transfer: the pool's own latency, no launcher."""
    return {
        "executable": sys.executable,
        "arguments": '"-c pass"',
        "transfer_executable": "False",
        "should_transfer_files": "NO",
        "initialdir": str(folder),
        "output": str(folder / "$(ProcId).out"),
        "error": str(folder / "$(ProcId).err"),
        "log": str(log),
        "request_memory": "128MB",
    }
