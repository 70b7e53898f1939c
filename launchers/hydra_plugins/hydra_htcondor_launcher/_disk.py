"""Whether a failure was a full disk or an exhausted quota, on one line: both sides ask it (the worker names
a task's failure so, the submit side a job that ended without a result or a manifest it could not write).
A leaf module: standard library only."""

from __future__ import annotations

import errno
import logging
import os
from collections.abc import Iterable, Iterator

# Free bytes below which a filesystem counts as full (1 % of its size, at most 64 MiB): a write that fails
# with less room left is almost surely why a task failed, whatever its exception says (torch's checkpoint
# writer reports a full disk as "unexpected pos ...", not as ENOSPC).
_FULL_BYTES = 64 * 2**20
_FULL_ERRNOS = {errno.ENOSPC: "no space left on device", errno.EDQUOT: "disk quota exceeded"}


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """The exception, its causes and contexts, and the members of exception groups (each once)."""
    todo, seen = [exc], set()
    while todo:
        cur = todo.pop()
        if id(cur) in seen:
            continue
        seen.add(id(cur))
        yield cur
        todo.extend(e for e in (cur.__cause__, cur.__context__) if e is not None)
        todo.extend(e for e in getattr(cur, "exceptions", ()) if isinstance(e, BaseException))


def _existing(path: str) -> str:
    """`path`, or its nearest existing parent (a file whose creation failed, a folder not made yet)."""
    probe = os.path.abspath(path)
    while not os.path.exists(probe) and os.path.dirname(probe) != probe:
        probe = os.path.dirname(probe)
    return probe


def _filesystem(path: str) -> str | None:
    """'PATH is on FSTYPE MOUNT: N bytes free of SIZE' for the filesystem holding `path`; None when it
    cannot be read."""
    probe = _existing(path)
    try:
        st = os.statvfs(probe)
    except OSError:
        return None
    mount = probe
    while not os.path.ismount(mount):
        mount = os.path.dirname(mount)
    fstype = ""
    try:
        with open("/proc/self/mounts") as f:  # Linux: the last mount on that point is the one in effect
            types = [ln.split()[2] for ln in f if len(ln.split()) > 2 and ln.split()[1] == mount]
        fstype = f"{types[-1]} " if types else ""
    except OSError:
        pass
    free, total = st.f_bavail * st.f_frsize, st.f_blocks * st.f_frsize
    return f"{path} is on {fstype}{mount}: {free} bytes free of {total / 2**20:.1f} MiB"


def _is_full(path: str) -> bool:
    try:
        st = os.statvfs(path)
    except OSError:
        return False
    total = st.f_blocks * st.f_frsize
    return st.f_bavail * st.f_frsize < min(_FULL_BYTES, max(total // 100, 4096))


def full_disk(paths: Iterable[str], exc: BaseException | None = None) -> str | None:
    """Why a failure was a full disk, on one line: 'no space left on device: PATH is on FSTYPE MOUNT: N
    bytes free of SIZE', or None. It was when ENOSPC/EDQUOT is anywhere in `exc`'s chain (the path its
    OSError names comes first), or when one of `paths` (the folders the job writes to) is on a full
    filesystem. Never raises: it only adds to an error."""
    try:
        named = [p for p in paths if p]
        for cause in _chain(exc) if exc is not None else ():
            err = getattr(cause, "errno", None)
            what = _FULL_ERRNOS.get(err) if isinstance(err, int) else None
            if what is None:
                text = str(cause)
                what = next((w for e, w in _FULL_ERRNOS.items() if os.strerror(e) in text), None)
            if what is not None:
                files = [getattr(cause, a, None) for a in ("filename", "filename2")]
                for path in [*(os.fsdecode(f) for f in files if isinstance(f, str | bytes)), *named]:
                    where = _filesystem(path)
                    if where is not None:
                        return f"{what}: {where}"
                return what
        for path in named:
            if _is_full(_existing(path)):
                return f"{_FULL_ERRNOS[errno.ENOSPC]}: {_filesystem(path)}"
    except Exception:  # a probe of the disk must never hide the error it is about
        logging.getLogger(__name__).debug("full-disk probe failed", exc_info=True)
    return None
