"""A real headless browser for the tests that look at a page (the sweep report, optuna-dashboard): Debian's
chromium, which `make browser` installs."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    message = (
        "no chromium on PATH (the test set-up installs Debian's `chromium`: apt-get install -y chromium)"
    )
    if _in_ci():
        pytest.fail(message)
    pytest.skip(message)


def headless(profile_dir: Path) -> list[str]:
    """The command line of headless chromium with its profile in ``profile_dir`` (a test's tmp_path)."""
    return [
        chromium(),
        "--headless",
        "--no-sandbox",  # root in containers and CI
        "--disable-gpu",
        "--hide-scrollbars",
        f"--user-data-dir={profile_dir / 'chromium-profile'}",
    ]
