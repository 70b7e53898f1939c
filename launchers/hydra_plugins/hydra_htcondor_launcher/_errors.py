"""Exceptions of the HTCondor launcher; each message is one line that says what to do.

They derive from Hydra's CompactHydraException, so the command line prints just that line, not a traceback.
"""

from hydra.errors import CompactHydraException


class HTCondorLauncherError(CompactHydraException):
    """Base class of every error this launcher raises."""


class ConfigError(HTCondorLauncherError, ValueError):
    """A launcher setting is invalid (raised before anything is submitted)."""


class PoolUnreachableError(HTCondorLauncherError):
    """The collector or schedd could not be contacted or did not answer (raised before anything is
    submitted)."""


class SubmitError(HTCondorLauncherError):
    """The schedd refused the submission."""


class JobFailedError(HTCondorLauncherError):
    """A job ended without writing its result (non-zero exit, signal, removed, deadline)."""


class HeldJobError(JobFailedError):
    """A job was held and then removed; the message carries the hold reason."""
