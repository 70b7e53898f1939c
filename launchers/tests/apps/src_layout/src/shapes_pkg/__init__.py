"""A src-layout package run with ``python -m shapes_pkg``."""

SCALE = 10
