"""`host-state`: what the engine must leave as it found it, as JSON for the tests to compare."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from typing import Any

from container_runtime.common import ENGINE_LEFTOVERS, ENGINE_PROGRAMS, SOCKET, TOOL_PATH, run, run_dir
from proctools import pids


def _rules(save: str) -> list[str] | None:
    """The tables that exist and their chains and rules, as `iptables-save` prints them without counters.

    Not `iptables -t TABLE -S`: that prints a table's default policies even where the table does not exist,
    so the bare install of iptables would look like a change. None when the tool cannot read them.
    """
    exe = shutil.which(save, path=TOOL_PATH)
    proc = run([exe], timeout=60, what=save, check=False) if exe else None
    if proc is None or proc.returncode != 0:
        return None
    return [
        re.sub(r" \[\d+:\d+\]$", "", ln)
        for ln in proc.stdout.splitlines()
        if ln.strip() and not ln.startswith("#")
    ]


def _engine_processes() -> list[str]:
    """The names of the engine's programs running anywhere on the host, one per process."""
    names = []
    for pid in pids.all_pids():
        exe = pids.exe(pid)
        if exe is not None:
            name = os.path.basename(exe).removesuffix(" (deleted)")
            if name in ENGINE_PROGRAMS:
                names.append(name)
    return sorted(names)


def _engine_files() -> list[str]:
    """The engine's folder (data and exec roots, pidfile, log), its socket, and its leftovers outside it
    with whatever those folders hold."""
    found = []
    for path in (run_dir(), Path(SOCKET), *ENGINE_LEFTOVERS):
        if path.exists() or path.is_symlink():
            found.append(str(path))
            if path.is_dir() and path != run_dir():
                found += [str(p) for p in path.rglob("*")]
    return sorted(set(found))


def host_state() -> dict[str, Any]:
    """What the engine must leave as it found it: `network` must not change even while it runs, `engine`
    must be as before once it stopped."""
    links = run(["ip", "-o", "link", "show"], timeout=60, what="ip link", check=False)
    ipv6 = Path("/proc/sys/net/ipv6/conf/all/forwarding")
    return {
        "network": {
            "links": sorted(ln.split(":")[1].strip().split("@")[0] for ln in links.stdout.splitlines()),
            "ip_forward": Path("/proc/sys/net/ipv4/ip_forward").read_text().strip(),
            "ipv6_forwarding": ipv6.read_text().strip() if ipv6.exists() else None,
            "iptables": _rules("iptables-save"),
            "ip6tables": _rules("ip6tables-save"),
        },
        "engine": {"processes": _engine_processes(), "files": _engine_files()},
    }
