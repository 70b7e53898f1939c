"""`image`: the worker test image, built offline (debootstrap, docker import, a pip layer from wheels
fetched on the host into a --network=none container) or loaded from the cache, keyed by what it is made of."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from container_runtime.common import (
    BASE_REPO,
    DOCKER,
    IMAGE,
    KEY_LABEL,
    LAUNCHER,
    MIRROR,
    PROG,
    RECIPE,
    SOCKET,
    RuntimeFailure,
    cache_dir,
    docker,
    run,
    tool_env,
)
from container_runtime.engine import engine_answers

log = logging.getLogger(__name__)


def _sha(*parts: bytes) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(hashlib.sha256(part).digest())
    return h.hexdigest()[:16]


def _launcher_source() -> list[Path]:
    files = [LAUNCHER / "pyproject.toml", LAUNCHER / "README.md"]
    files += sorted(
        p for p in (LAUNCHER / "hydra_plugins").rglob("*") if p.is_file() and "__pycache__" not in p.parts
    )
    return files


def _pinned(python: str) -> list[str]:
    """requirements.txt pinned to the versions installed for `python`, plus pip's own wheel."""
    names = [
        ln.strip()
        for ln in (RECIPE / "requirements.txt").read_text().splitlines()
        if ln.strip() and not ln.startswith("#")
    ]
    code = (
        "import importlib.metadata as m, json, sys; "
        "print(json.dumps({n: m.version(n) for n in sys.argv[1:]}))"
    )
    versions: dict[str, str] = json.loads(
        run(
            [python, "-c", code, *names, "pip"], timeout=60, what=f"{python}: reading installed versions"
        ).stdout
    )
    return [f"{name}=={version}" for name, version in versions.items()]


def _keys(python: str) -> tuple[str, str, list[str]]:
    base_key = _sha((RECIPE / "rootfs.sh").read_bytes(), MIRROR.encode())
    pins = _pinned(python)
    launcher = b"".join(
        p.relative_to(LAUNCHER).as_posix().encode() + b"\0" + p.read_bytes() for p in _launcher_source()
    )
    worker_key = _sha(
        base_key.encode(), (RECIPE / "install.sh").read_bytes(), "\n".join(pins).encode(), launcher
    )
    return base_key, worker_key, pins


def _image_key(ref: str) -> str | None:
    fmt = f'{{{{index .Config.Labels "{KEY_LABEL}"}}}}'
    proc = run(
        [DOCKER, "image", "inspect", "--format", fmt, ref],
        timeout=120,
        what="docker image inspect",
        check=False,
    )
    return proc.stdout.strip() if proc.returncode == 0 else None


def _save(ref: str, target: Path) -> None:
    """docker save | gzip into the cache, atomically; older files of the same kind are dropped."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + f".tmp{os.getpid()}")
    with open(tmp, "wb") as out:
        save = subprocess.Popen([DOCKER, "save", ref], stdout=subprocess.PIPE, env=tool_env())
        gz = subprocess.run(["gzip", "-1"], stdin=save.stdout, stdout=out, env=tool_env())
        assert save.stdout is not None
        save.stdout.close()
        if save.wait() != 0 or gz.returncode != 0:
            tmp.unlink(missing_ok=True)
            raise RuntimeFailure(f"docker save {ref} | gzip > {tmp} failed")
    os.replace(tmp, target)
    prefix = target.name.split("-")[0] + "-"
    for old in target.parent.glob(prefix + "*.tar.gz"):
        if old != target:
            old.unlink(missing_ok=True)


def _load(path: Path) -> bool:
    if not path.is_file():
        return False
    with open(path, "rb") as f:
        proc = run([DOCKER, "load", "-q"], timeout=300, what="docker load", check=False, stdin=f)
    if proc.returncode != 0:  # a truncated or corrupt cache entry: rebuild
        path.unlink(missing_ok=True)
        return False
    return True


def _base_image(base_key: str) -> str:
    ref = f"{BASE_REPO}:{base_key}"
    if _image_key(ref) == base_key or (
        _load(cache_dir() / f"base-{base_key}.tar.gz") and _image_key(ref) == base_key
    ):
        return ref
    with tempfile.TemporaryDirectory(prefix="mnist-app-rootfs-", dir="/var/tmp") as tmp:
        rootfs = Path(tmp) / "rootfs"
        tic = time.perf_counter()
        run(["sh", str(RECIPE / "rootfs.sh"), str(rootfs), MIRROR], timeout=900, what="debootstrap")
        log.info("debootstrap + trim in %.1f s", time.perf_counter() - tic)
        tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE, env=tool_env())
        imp = subprocess.run(
            [DOCKER, "import", "--change", f"LABEL {KEY_LABEL}={base_key}", "-", ref],
            stdin=tar.stdout,
            capture_output=True,
            text=True,
            env=tool_env(),
        )
        assert tar.stdout is not None
        tar.stdout.close()
        if tar.wait() != 0 or imp.returncode != 0:
            raise RuntimeFailure(f"docker import of {rootfs} failed: {imp.stderr.strip()}")
    _save(ref, cache_dir() / f"base-{base_key}.tar.gz")
    return ref


def _wheel_pin(name: str) -> str:
    """A wheel's file name as a normalised `name==version` pin."""
    return name.split("-")[0].lower().replace("_", "-") + "==" + name.split("-")[1]


def _wheels(python: str, pins: list[str], into: Path) -> None:
    """Every wheel the pip layer installs, fetched (or built: antlr4's sdist, the launcher) on the host."""
    wheel_cache = cache_dir() / "wheels"
    wheel_cache.mkdir(parents=True, exist_ok=True)
    third_party = [p for p in pins if not p.startswith("pip==")]
    have = {_wheel_pin(w.name) for w in wheel_cache.glob("*.whl")}
    wanted = {p.lower().replace("_", "-") for p in third_party}
    if not wanted <= have:
        run(
            [python, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(wheel_cache), *third_party],
            timeout=600,
            what="pip wheel (worker requirements)",
        )
    run(
        [
            python,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "-q",
            "-d",
            str(wheel_cache),
            next(p for p in pins if p.startswith("pip==")),
        ],
        timeout=300,
        what="pip download pip",
    )
    for whl in wheel_cache.glob("*.whl"):
        if _wheel_pin(whl.name) in {p.lower().replace("_", "-") for p in pins}:
            shutil.copy2(whl, into / whl.name)
    # The launcher, built from the checkout (hatchling, from the package index like any build backend).
    run(
        [python, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(into), str(LAUNCHER)],
        timeout=600,
        what="pip wheel ./launchers",
    )
    shutil.copy2(RECIPE / "install.sh", into / "install.sh")


def image(python: str, *, rebuild: bool = False) -> str:
    """Build or load the worker image whose pip layer pins `python`'s package versions; the line to print."""
    if not engine_answers():
        raise RuntimeFailure(f"no engine answers on {SOCKET}: run `scripts/{PROG} start` first")
    tic = time.perf_counter()
    base_key, worker_key, pins = _keys(python)
    if not rebuild and _image_key(IMAGE) == worker_key:
        return f"{PROG}: {IMAGE} is up to date (key {worker_key})"
    cached = cache_dir() / f"worker-{worker_key}.tar.gz"
    if not rebuild and _load(cached) and _image_key(IMAGE) == worker_key:
        return f"{PROG}: {IMAGE} loaded from {cached} in {time.perf_counter() - tic:.1f} s"
    base = _base_image(base_key)
    name = f"mnist-app-test-worker-build-{os.getpid()}"
    with tempfile.TemporaryDirectory(prefix="mnist-app-wheels-") as tmp:
        wheels = Path(tmp)
        os.chmod(wheels, 0o755)
        _wheels(python, pins, wheels)
        run(
            [
                DOCKER,
                "run",
                "--network=none",
                "--name",
                name,
                "-v",
                f"{wheels}:/w:ro",
                base,
                "sh",
                "/w/install.sh",
            ],
            timeout=600,
            what="pip layer (docker run --network=none)",
        )
    try:
        docker("commit", "--change", f"LABEL {KEY_LABEL}={worker_key}", name, IMAGE, what="docker commit")
    finally:
        run([DOCKER, "rm", "-f", name], timeout=120, what="docker rm", check=False)
    _save(IMAGE, cached)
    size = docker("image", "inspect", "--format", "{{.Size}}", IMAGE)
    return (
        f"{PROG}: built {IMAGE} in {time.perf_counter() - tic:.1f} s ({int(size) / 1e6:.0f} MB, "
        f"key {worker_key}, cached as {cached})"
    )
