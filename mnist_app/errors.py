"""Exceptions for bad input that the CLI reports as one line instead of a traceback."""

from hydra.errors import CompactHydraException


class MnistAppError(CompactHydraException):
    """A user-facing error: bad configuration, missing data, missing GPU.

    The message is the whole story (what was wrong, what would be accepted). A ``CompactHydraException``, so
    Hydra prints just the message and exits 1 in a single run; in a sweep the launcher records it as the
    failed job's error.
    """
