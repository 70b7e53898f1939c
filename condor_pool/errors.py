"""The one exception the CLI reports as a single line."""

from __future__ import annotations


class PoolError(Exception):
    """A failure reported to the user as one line."""


def last_line(text: str) -> str:
    """The last non-empty line of a tool's stderr, for a one-line error."""
    return (text.strip().splitlines() or ["?"])[-1]
