#!/bin/sh
# Base of the worker test image: a minimal Debian bookworm with Python 3, trimmed.
# Usage: rootfs.sh ROOTFS [MIRROR]   (run as root; scripts/container-runtime image calls it)
# The hash of this file keys the cached base image: change it and the base is rebuilt.
set -eu
ROOTFS="$1"
MIRROR="${2:-http://deb.debian.org/debian}"
debootstrap --variant=minbase --include=python3 bookworm "$ROOTFS" "$MIRROR"
# Nothing in a job needs apt, documentation or locales; they are most of minbase's size.
rm -rf "$ROOTFS"/var/cache/apt/* "$ROOTFS"/var/lib/apt/lists/* "$ROOTFS"/var/log/* \
    "$ROOTFS"/usr/share/doc/* "$ROOTFS"/usr/share/man/* "$ROOTFS"/usr/share/info/* \
    "$ROOTFS"/usr/share/locale/* "$ROOTFS"/tmp/*
find "$ROOTFS"/usr/lib/python3* -name __pycache__ -prune -exec rm -rf {} +
