"""Hydra sweeper that streams an Optuna study: n_jobs trials in flight, pruning, resumable (README.md)."""

__version__ = "0.1.0"
