"""A package whose tree holds a generated module too big to ship (written by the test)."""

NAME = "bigpkg"
