#!/bin/sh
# The worker test image's pip layer, run inside the base image with --network=none:
# every wheel was fetched or built on the host and is mounted at /w. --no-deps: the list is complete, and
# the launcher's htcondor dependency is left out on purpose (jobs never talk to the pool).
# The hash of this file is part of the worker image's cache key.
set -eu
PIP=$(ls /w/pip-*.whl)
# Debian marks its Python "externally managed"; this image has no other Python user to protect.
python3 "$PIP/pip" install --no-index --find-links /w --no-deps --no-cache-dir --no-compile \
    --break-system-packages --disable-pip-version-check --root-user-action=ignore \
    $(ls /w/*.whl | grep -v '/pip-')
# HTCondor mounts the job's scratch folder at its host path, and the job runs as the slot user with every
# capability dropped: a pool folder under /root (the default for root, ~/.cache/...) must be traversable.
chmod 0755 /root
python3 -c "import hydra, omegaconf, cloudpickle, hydra_plugins.hydra_htcondor_launcher._worker"
