"""A container engine and the launcher's worker test image, for mnist-app's container-universe tests.

    scripts/container-runtime install|start|stop|status|image|host-state|help

`install` adds Debian's docker.io and debootstrap (apt). `start` runs dockerd by hand (no systemd here) with
no bridge and no firewall or sysctl changes (--bridge=none --iptables=false --ip-forward=false
--ip-masq=false) on the default socket, its data in ${MNIST_APP_DOCKER_DIR:-/dev/shm/mnist-app-docker}
(/tmp/mnist-app-docker without /dev/shm).
`stop` ends it by the pid in its pidfile and removes that folder. `image` builds mnist-app-test-worker:latest
offline from containers/test-worker/ (debootstrap, docker import, a pip layer installed from wheels fetched
on the host into a --network=none container) or loads it from the cache,
${MNIST_APP_TEST_CACHE:-${XDG_CACHE_HOME:-~/.cache}/mnist-app/test-worker}, keyed by the recipe, the pinned
wheel versions and the launcher's source. `host-state` prints, as JSON, what the engine must leave as it
found it: `network` (links, forwarding sysctls, iptables rules), unchanged even while it runs, and `engine`
(its processes and files), gone after `stop`; take the state to compare with after `install`, since what the
packages add (/etc/docker, iptables' tables) is not the engine's doing. The pool learns to use the engine
with `scripts/condor-pool docker on` (docs/condor-pool.md).

Standard library only. Run as root.
"""
