"""A personal HTCondor pool on 127.0.0.1 for mnist-app's tests and users (``scripts/condor-pool``).

Everything lives in one folder, ${CONDOR_POOL_DIR:-${XDG_CACHE_HOME:-~/.cache}/mnist-app/condor-pool}.
Debian bookworm ships no HTCondor, so ``install`` relocates Debian trixie's ``condor`` package (and the
runtime libraries it links or dlopen()s, trixie's glibc included) into that folder with a private apt
configuration and patchelf; the system's apt setup is never touched. An HTCondor already on PATH is used
instead.
See docs/condor-pool.md.

Standard library only (no project venv): ``make pool-install`` runs with the system ``python3`` before the
venv exists.
"""
