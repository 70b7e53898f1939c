"""Downloading Debian trixie's condor and its runtime libraries with a private apt configuration.

The system's apt setup is never touched: sources, lists, cache and an empty dpkg status file live in the
pool folder's apt/, so apt resolves the full trixie closure regardless of the host's packages.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

from condor_pool.errors import PoolError
from condor_pool.settings import PROG
from proctools.commands import last_line

log = logging.getLogger(__name__)

KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"
# Packages in condor's dependency closure that the daemons never load (python bindings, web assets).
NOT_RUNTIME = re.compile(r"^(libjs-|libpython|libboost-python)")


class PrivateApt:
    """apt-get/apt-cache on `mirror` `suite` main, with all state in `apt_dir`."""

    def __init__(self, apt_dir: Path, mirror: str, suite: str, is_root: bool) -> None:
        self.dir = apt_dir
        self.mirror = mirror
        self.suite = suite
        self.is_root = is_root

    def env(self) -> dict[str, str]:
        return dict(os.environ, APT_CONFIG=str(self.dir / "apt.conf"), LC_ALL="C")

    def setup(self) -> None:
        for sub in (
            "lists/partial",
            "cache/archives/partial",
            "state",
            "etc/apt.conf.d",
            "etc/preferences.d",
            "etc/sources.list.d",
        ):
            (self.dir / sub).mkdir(parents=True, exist_ok=True)
        status = self.dir / "status"
        status.write_text("")  # empty: apt resolves the full trixie closure, ignoring the host's packages
        signed = f"[signed-by={KEYRING}] " if os.path.exists(KEYRING) else ""
        (self.dir / "sources.list").write_text(f"deb {signed}{self.mirror} {self.suite} main\n")
        a = self.dir
        conf = [
            f'Dir::Etc::SourceList "{a}/sources.list";',
            f'Dir::Etc::SourceParts "{a}/etc/sources.list.d";',
            f'Dir::Etc::Parts "{a}/etc/apt.conf.d";',
            f'Dir::Etc::Preferences "{a}/etc/preferences";',
            f'Dir::Etc::PreferencesParts "{a}/etc/preferences.d";',
            f'Dir::State "{a}/state";',
            f'Dir::State::Lists "{a}/lists";',
            f'Dir::State::status "{status}";',
            f'Dir::Cache "{a}/cache";',
            f'Dir::Cache::archives "{a}/cache/archives";',
            'APT::Architecture "amd64";',
            'APT::Architectures { "amd64"; };',
            'Acquire::Languages "none";',
            # Keep the 55 MB Packages index compressed; no source cache (saves ~80 MB).
            'Acquire::GzipIndexes "true";',
            'Acquire::CompressionTypes::Order { "gz"; };',
            'Dir::Cache::srcpkgcache "";',
            # Our private lists need no lock shared with the system's apt.
            'Debug::NoLocking "true";',
        ]
        if self.is_root:
            # apt's _apt sandbox user cannot write into root's 0700 cache folder.
            conf.append('APT::Sandbox::User "root";')
        (self.dir / "apt.conf").write_text("\n".join(conf) + "\n")

    def have_lists(self) -> bool:
        return any((self.dir / "lists").glob("*_Packages*"))

    def apt_get(self, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["apt-get", "-q", *args], env=self.env(), cwd=cwd, capture_output=True, text=True
        )

    def update(self) -> None:
        r = self.apt_get("update")
        if r.returncode != 0:
            raise PoolError(
                f"apt-get update of {self.suite} from {self.mirror} failed: {last_line(r.stderr)}"
            )

    def show(self, pkgs: list[str]) -> dict[str, dict[str, str]]:
        """`apt-cache show` stanzas by package name (virtual packages have none)."""
        r = subprocess.run(
            ["apt-cache", "show", "--no-all-versions", *pkgs], env=self.env(), capture_output=True, text=True
        )
        res: dict[str, dict[str, str]] = {}
        for stanza in r.stdout.split("\n\n"):
            fields: dict[str, str] = {}
            key = None
            for line in stanza.splitlines():
                if line[:1] in (" ", "\t") and key:
                    fields[key] += line
                    continue
                key, _, val = line.partition(":")
                fields[key] = val.strip()
            if "Package" in fields:
                res[fields["Package"]] = fields
        return res

    def closure(self) -> dict[str, str]:
        """condor plus the library packages (Section libs) in its Depends/Pre-Depends closure.

        Debian lists the dlopen()ed libraries (libssl, krb5, munge, scitokens, voms) in condor's Depends too,
        so this covers them; elf.check_needed() then verifies every DT_NEEDED resolves inside the folder.
        """
        keep: dict[str, str] = {}  # package -> .deb file name apt-get download writes
        todo = ["condor"]
        while todo:
            info = self.show(todo)
            missing = [p for p in todo if p not in info]
            if missing:
                raise PoolError(f"package(s) {', '.join(missing)} not found in {self.suite}")
            nxt: list[str] = []
            for pkg, fields in info.items():
                version = fields.get("Version", "?").replace(":", "%3a")
                keep[pkg] = f"{pkg}_{version}_{fields.get('Architecture', 'amd64')}.deb"
                for field in ("Pre-Depends", "Depends"):
                    for clause in filter(None, (c.strip() for c in fields.get(field, "").split(","))):
                        # First alternative; drop version constraint and arch qualifier.
                        name = clause.split("|")[0].split("(")[0].strip().split(":")[0]
                        if name and name not in keep and name not in nxt:
                            nxt.append(name)
            if not nxt:
                break
            sections = self.show(nxt)  # virtual packages (no stanza) drop out here
            todo = [
                p
                for p, f in sections.items()
                if f.get("Section") in ("libs", "oldlibs") and not NOT_RUNTIME.match(p)
            ]
        return dict(sorted(keep.items()))


def download_and_extract(apt: PrivateApt, debs: Path, root: Path) -> list[str]:
    """condor's runtime closure as .debs in `debs` (cached), extracted into a fresh `root`; the .deb names."""
    for tool in ("apt-get", "apt-cache", "dpkg-deb"):
        if not shutil.which(tool):
            raise PoolError(
                f"{tool} not found; {PROG} install needs a Debian-like system (or HTCondor on PATH)"
            )
    apt.setup()
    t = time.monotonic()
    if not apt.have_lists():
        apt.update()
    debs.mkdir(parents=True, exist_ok=True)
    pkgs = apt.closure()
    todo: list[str] = []
    for attempt in (1, 2):
        todo = [p for p, deb in pkgs.items() if not (debs / deb).exists()]
        r = apt.apt_get("download", *todo, cwd=debs) if todo else None
        if r is None or r.returncode == 0:
            break
        if attempt == 2:
            raise PoolError(
                f"apt-get download of {len(todo)} packages from {apt.mirror} failed: {last_line(r.stderr)}"
            )
        # Stale lists after a point release name .debs the mirror no longer has: refresh once, retry.
        log.info("download failed; refreshing the package lists and retrying once")
        apt.update()
        pkgs = apt.closure()
    log.info(
        "%d packages ready (%d downloaded, %d cached) in %.1f s",
        len(pkgs),
        len(todo),
        len(pkgs) - len(todo),
        time.monotonic() - t,
    )
    # Drop .debs of older versions (they pile up across point releases).
    for old in debs.glob("*.deb"):
        if old.name not in pkgs.values():
            old.unlink()
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    for pkg, deb in pkgs.items():
        if not (debs / deb).exists():
            raise PoolError(f"{pkg}: {deb} missing in {debs} after download")
        subprocess.run(["dpkg-deb", "-x", str(debs / deb), str(root)], check=True)
    # The python3.13 bindings inside condor are never loaded (we use the PyPI htcondor2 client).
    shutil.rmtree(root / "usr/lib/python3", ignore_errors=True)
    return list(pkgs.values())
