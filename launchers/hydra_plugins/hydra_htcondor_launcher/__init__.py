"""Hydra launcher that runs each sweep job on an HTCondor pool (see README.md)."""

__version__ = "0.1.0"
