#!/bin/bash
# Entry point of the mnist-app image (containers/Dockerfile, containers/mnist-app.def).
#   worker SPEC JOB_ID [--transfer-root DIR]  run one sweep job of the HTCondor launcher (also: a first argument
#                                             ending in .spec.pkl)
#   train [OVERRIDES...]                      python -m mnist_app OVERRIDES...
#   --help                                    this text
#   anything else                             run it as a command, e.g. `python -m mnist_app -m model.lr=0.5,1.0`
# HTCondor's container universe starts `python3 -m hydra_plugins.hydra_htcondor_launcher._worker ...` itself
# (apptainer exec bypasses this script); the image's PATH makes that python3 the environment's.
set -euo pipefail

# The Pixi environment's activation (pixi shell-hook output, written at build time).
activate="${MNIST_APP_ACTIVATE:-/app/activate.sh}"
if [[ -f "$activate" ]]; then
    # shellcheck disable=SC1090
    source "$activate"
fi

worker_module=hydra_plugins.hydra_htcondor_launcher._worker

case "${1:---help}" in
    -h|--help)
        sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'
        ;;
    worker)
        shift
        exec python -m "$worker_module" "$@"
        ;;
    *.spec.pkl)
        exec python -m "$worker_module" "$@"
        ;;
    train)
        shift
        exec python -m mnist_app "$@"
        ;;
    *)
        exec "$@"
        ;;
esac
