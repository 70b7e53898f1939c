"""The one exception the CLI reports as a single line."""

from __future__ import annotations


class PoolError(Exception):
    """A failure reported to the user as one line."""
