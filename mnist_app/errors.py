"""Exceptions for bad input that the CLI reports as one line instead of a traceback."""


class MnistAppError(Exception):
    """A user-facing error: bad configuration, missing data, missing GPU.

    The message is the whole story (what was wrong, what would be accepted); ``__main__`` logs it as one line
    and exits non-zero in a single run, and lets it propagate to the launcher in a sweep.
    """
