"""The pool in one folder: install, start, stop, status and env.

Methods return what the CLI prints on stdout; progress goes to this package's loggers (stderr via the CLI).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import pwd
import re
import shlex
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TypedDict, cast

from condor_pool import config, debian, elf
from condor_pool.errors import PoolError
from condor_pool.procs import stop_pid
from condor_pool.settings import PROG, Settings
from proctools.pids import is_zombie, proc_start

log = logging.getLogger(__name__)

# Version of the install layout; bump to force a reinstall when this package changes what it produces.
LAYOUT = 1
LOCK_TIMEOUT_S = 300
# `docker on`: Debian's client (a newer stand-alone one may come first on PATH, see docs/condor-pool.md).
DEFAULT_DOCKER = "/usr/bin/docker"
DOCKER_FRAGMENT = "50-docker.conf"


class _InstallRequired(TypedDict):
    layout: int
    mode: str  # "relocated" (downloaded into the folder) or "system" (HTCondor found on PATH)
    release: str
    bin: str
    sbin: str
    libexec: str


class InstallInfo(_InstallRequired, total=False):
    """install.json: where the HTCondor this pool runs lives."""

    root: str  # relocated only: the tree patchelf baked into the binaries
    packages: list[str]  # relocated only: the .debs it came from
    version: str


class MasterState(TypedDict):
    """run/master.json: the running condor_master, written by start."""

    pid: int
    start: int | None  # its start time in clock ticks (guards against pid reuse)
    port: int
    config: str
    prefix: str | None  # relocated root: stop may also reap strays running binaries from there


class Pool:
    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings if settings is not None else Settings.from_env()
        self.dir = self.settings.dir
        self.port = self.settings.port
        self.root = self.dir / "root"
        self.etc = self.dir / "etc"
        self.local = self.dir / "local"
        self.apt = debian.PrivateApt(
            self.dir / "apt", self.settings.mirror, self.settings.suite, self.settings.is_root
        )
        self.debs = self.dir / "debs"
        self.tools = self.dir / "tools"
        self.config = self.etc / "condor_config"
        self.install_json = self.dir / "install.json"
        self.state_json = self.dir / "run" / "master.json"
        self.log_dir = self.local / "log"
        self.docker_conf = self.etc / "config.d" / DOCKER_FRAGMENT

    # ----------------------------------------------------------------- helpers
    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def installed(self) -> InstallInfo | None:
        try:
            return cast(InstallInfo, json.loads(self.install_json.read_text()))
        except (OSError, ValueError):
            return None

    def condor_env(self, info: InstallInfo) -> dict[str, str]:
        env = dict(os.environ)
        # A pool named by the caller's own CONDOR_CONFIG or _CONDOR_* knobs must not leak into ours.
        for key in list(env):
            if key.startswith("_CONDOR_"):
                del env[key]
        env["CONDOR_CONFIG"] = str(self.config)
        env["PATH"] = f"{info['bin']}:{info['sbin']}:{env.get('PATH', '/usr/bin:/bin')}"
        return env

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        self.dir.mkdir(parents=True, exist_ok=True)
        with open(self.dir / ".lock", "w") as fh:
            deadline = time.monotonic() + LOCK_TIMEOUT_S
            while True:
                try:
                    fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise PoolError(
                            f"another {PROG} holds {self.dir}/.lock for over {LOCK_TIMEOUT_S} s"
                        ) from None
                    time.sleep(0.2)
            yield

    # ----------------------------------------------------------------- install
    def install(self, quiet: bool = False) -> InstallInfo:
        with self.lock():
            return self._install_locked(quiet)

    def _install_locked(self, quiet: bool) -> InstallInfo:
        info = self.installed()
        if info and info.get("layout") == LAYOUT and self._works(info):
            self._ensure_user()
            if not self.master():
                self._write_config(info)  # never under a running pool: its port lives in there
            if not quiet:
                log.info("already installed (%s, %s) in %s", info.get("version"), info["mode"], self.dir)
            return info
        if info:
            if self.master():
                raise PoolError(
                    f"the install in {self.dir} looks broken but its pool is running; "
                    "run scripts/condor-pool stop first"
                )
            log.info("previous install in %s is broken or was moved; reinstalling", self.dir)
        t0 = time.monotonic()
        info = self._find_system_condor() or self._download_and_relocate()
        self._ensure_user()
        if not self._works(info):
            raise PoolError(f"condor_version from {info['bin']} does not run after install; see {self.dir}")
        info["version"] = self._version(info)
        self.install_json.write_text(json.dumps(info, indent=1) + "\n")
        self._write_config(info)
        log.info(
            "installed %s (%s) in %s in %.1f s",
            info["version"],
            info["mode"],
            self.dir,
            time.monotonic() - t0,
        )
        return info

    @staticmethod
    def _condor_version(info: InstallInfo) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [f"{info['bin']}/condor_version"],
            capture_output=True,
            text=True,
            env={"PATH": "/usr/bin:/bin", "CONDOR_CONFIG": "/dev/null"},
            timeout=30,
        )

    def _version(self, info: InstallInfo) -> str:
        m = re.search(r"\$CondorVersion: (\S+)", self._condor_version(info).stdout)
        return m.group(1) if m else "unknown"

    def _works(self, info: InstallInfo) -> bool:
        try:
            if info.get("mode") == "relocated" and info.get("root") != str(self.root):
                return False  # patchelf baked another folder's absolute paths into the binaries
            out = self._condor_version(info)
            return (
                out.returncode == 0
                and "$CondorVersion:" in out.stdout
                and Path(info["sbin"], "condor_master").exists()
            )
        except (OSError, KeyError, subprocess.SubprocessError):
            return False

    def _find_system_condor(self) -> InstallInfo | None:
        if not self.settings.use_system:
            return None
        master = shutil.which("condor_master")
        if not master:
            return None
        master = os.path.realpath(master)
        if master.startswith(str(self.dir) + os.sep):
            return None  # our own relocated copy, put on PATH by `env`
        sbin = os.path.dirname(master)
        release = os.path.dirname(sbin)
        bin_dir = os.path.dirname(os.path.realpath(shutil.which("condor_version") or f"{release}/bin/x"))
        libexec = next(
            (
                p
                for p in (f"{release}/libexec/condor", f"{release}/libexec", "/usr/libexec/condor")
                if os.path.exists(f"{p}/condor_starter") or os.path.exists(f"{p}/condor_gpu_discovery")
            ),
            f"{release}/libexec",
        )
        log.info(
            "using the HTCondor already on PATH (%s); set CONDOR_POOL_USE_SYSTEM=0 to download one", master
        )
        return {
            "layout": LAYOUT,
            "mode": "system",
            "release": release,
            "bin": bin_dir,
            "sbin": sbin,
            "libexec": libexec,
        }

    def _download_and_relocate(self) -> InstallInfo:
        packages = debian.download_and_extract(self.apt, self.debs, self.root)
        elf.relocate(self.root, elf.find_patchelf(self.tools))
        usr = self.root / "usr"
        return {
            "layout": LAYOUT,
            "mode": "relocated",
            "root": str(self.root),
            "release": str(usr),
            "bin": str(usr / "bin"),
            "sbin": str(usr / "sbin"),
            "libexec": str(usr / "libexec/condor"),
            "packages": packages,
        }

    def _ensure_user(self) -> None:
        if not self.settings.is_root:
            return
        user = self.settings.user
        try:
            pwd.getpwnam(user)
            return
        except KeyError:
            pass
        if user == "condor":
            raise PoolError("CONDOR_POOL_USER=condor is rejected by the schedd; pick another name (htcondor)")
        r = subprocess.run(
            ["useradd", "--system", "--user-group", "--no-create-home", "--shell", "/usr/sbin/nologin", user],
            capture_output=True,
            text=True,
        )
        if r.returncode != 0:
            raise PoolError(f"useradd {user} failed: {r.stderr.strip()}")
        log.info("created system user %s", user)

    def _ids(self) -> tuple[int, int]:
        pw = pwd.getpwnam(self.settings.user)
        return pw.pw_uid, pw.pw_gid

    def _write_config(self, info: InstallInfo) -> None:
        uid, gid = self._ids()
        (self.etc / "config.d").mkdir(parents=True, exist_ok=True)
        (self.etc / "mapfile").write_text(config.mapfile(self.settings))
        text = config.condor_config(
            self.settings,
            release=info["release"],
            bin_dir=info["bin"],
            sbin=info["sbin"],
            libexec=info["libexec"],
            etc=self.etc,
            local=self.local,
            uid=uid,
            gid=gid,
        )
        tmp = self.config.with_suffix(".tmp")
        tmp.write_text(text)
        tmp.replace(self.config)

    # ----------------------------------------------------------------- running state
    def _read_state(self) -> MasterState | None:
        try:
            return cast(MasterState, json.loads(self.state_json.read_text()))
        except (OSError, ValueError):
            return None

    def master(self) -> MasterState | None:
        """The recorded master if that very process (pid + start time) is still alive."""
        st = self._read_state()
        if st is None:
            return None
        if proc_start(st.get("pid", 0)) == st.get("start") and not is_zombie(st["pid"]):
            return st
        return None

    def port_busy(self) -> bool:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            # Same semantics as the collector's bind (it sets SO_REUSEADDR too).
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(("127.0.0.1", self.port))
            except OSError:
                return True
        return False

    # ----------------------------------------------------------------- start
    def start(self) -> str:
        """Start the pool (or find it running); the line to print."""
        # Cheap checks first, so a busy port fails in a second, before any download.
        running = self._already_running()
        if running:
            return running
        self._check_port()
        info = self.install(quiet=True)
        with self.lock():
            return self._already_running() or self._start_locked(info)

    def _already_running(self) -> str:
        st = self.master()
        if st is None:
            return ""
        return (
            f"{PROG}: already running (master pid {st['pid']}) at 127.0.0.1:{st['port']}; "
            f"CONDOR_CONFIG={self.config}"
        )

    def _check_port(self) -> None:
        if self.port_busy():
            raise PoolError(
                f"port {self.port} on 127.0.0.1 is already in use; stop what listens there "
                "or pick another port with CONDOR_POOL_PORT=<port> "
                "(and a CONDOR_POOL_DIR of its own)"
            )

    def _stop_pid(self, pid: int, *, quiet: bool, prefix: str | None) -> None:
        stop_pid(pid, quiet=quiet, prefix=prefix, timeout=self.settings.stop_timeout)

    def _start_locked(self, info: InstallInfo) -> str:
        if self.state_json.exists():
            # A master that died (kill -9, OOM) can leave daemons and jobs behind; reap them first.
            old: dict[str, Any] = json.loads(self.state_json.read_text() or "{}")
            self._stop_pid(old.get("pid", 0), quiet=True, prefix=old.get("prefix"))
            self.state_json.unlink()
        self._check_port()
        self._write_config(info)  # picks up CONDOR_POOL_PORT/GPUS/CPUS changes
        uid, gid = self._ids()
        if not self.settings.keep_state and self.local.exists():
            shutil.rmtree(self.local)
        for sub in ("log", "spool", "execute", "run", "lock", "passwords.d", "tokens.d", "ssl"):
            (self.local / sub).mkdir(parents=True, exist_ok=True)
        (self.local / "fsauth").mkdir(exist_ok=True)
        (self.local / "fsauth").chmod(0o1777)
        (self.local / "execute").chmod(0o755)
        for p in [self.local, *self.local.rglob("*")]:
            if p.name != "fsauth" and self.settings.is_root:
                os.lchown(p, uid, gid)
        (self.local / "passwords.d").chmod(0o700)
        (self.local / "tokens.d").chmod(0o700)
        self.state_json.parent.mkdir(parents=True, exist_ok=True)

        env = {
            "PATH": f"{info['sbin']}:{info['bin']}:/usr/sbin:/usr/bin:/sbin:/bin",
            "CONDOR_CONFIG": str(self.config),
            "LANG": "C.UTF-8",
            "HOME": str(self.local),
        }
        cmd = [f"{info['sbin']}/condor_master", "-f", "-pidfile", str(self.local / "run/master.pid")]
        if self.settings.is_root:
            caps = "+dac_override,+dac_read_search,+fowner" if self.settings.caps else ""
            pre = ["setpriv", f"--reuid={uid}", f"--regid={gid}", "--init-groups"]
            if caps:
                # Ambient caps let shadows and jobs (pool user) reach root's 0700 dirs (pytest tmp, /root).
                # no_setuid_fixup keeps them in access(2) checks too, which condor uses on its config file.
                pre += ["--securebits=+no_setuid_fixup", f"--inh-caps={caps}", f"--ambient-caps={caps}"]
            cmd = [*pre, "--", *cmd]
        t0 = time.monotonic()
        with open(self.log_dir / "master.out", "ab") as out:
            proc = subprocess.Popen(
                cmd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=out,
                cwd=str(self.local),
                start_new_session=True,
            )
        # setpriv and env exec, so the Popen pid is condor_master's.
        # The prefix lets stop reap strays by executable; never for a system install (/usr is everyone's).
        prefix = info.get("root") if info["mode"] == "relocated" else None
        state: MasterState = {
            "pid": proc.pid,
            "start": proc_start(proc.pid),
            "port": self.port,
            "config": str(self.config),
            "prefix": prefix,
        }
        self.state_json.write_text(json.dumps(state) + "\n")
        timeout = self.settings.start_timeout
        deadline = t0 + timeout
        cenv = self.condor_env(info)
        missing = ["Collector"]
        while time.monotonic() < deadline:
            rc = proc.poll()
            if rc is not None:
                self._stop_pid(proc.pid, quiet=True, prefix=prefix)  # daemons it may have forked
                self.state_json.unlink(missing_ok=True)
                self._fail_start(f"condor_master exited with code {rc} during start", "MasterLog")
            missing = self._missing_ads(info, cenv)
            if not missing:
                break
            time.sleep(0.25)
        else:
            logname = {
                "Collector": "CollectorLog",
                "Scheduler": "SchedLog",
                "Negotiator": "NegotiatorLog",
                "Machine": "StartLog",
                "GPUs": "StartLog",
            }[missing[0]]
            self._stop_pid(proc.pid, quiet=True, prefix=prefix)
            self.state_json.unlink(missing_ok=True)
            self._fail_start(f"no {missing[0]} ad after {timeout} s", logname)
        return (
            f"{PROG}: started in {time.monotonic() - t0:.1f} s (master pid {proc.pid}) at "
            f"{self.address}; CONDOR_CONFIG={self.config}"
        )

    def _fail_start(self, what: str, logname: str) -> None:
        # The daemon's own log if it got that far, else the master's, else the master's stderr.
        candidates = [self.log_dir / logname, self.log_dir / "MasterLog", self.log_dir / "master.out"]
        path = next((p for p in candidates if p.exists() and p.stat().st_size), candidates[-1])
        raise PoolError(f"pool did not start: {what}; read {path}{_last_line(path)}")

    def _missing_ads(self, info: InstallInfo, cenv: dict[str, str]) -> list[str]:
        try:
            r = subprocess.run(
                [f"{info['bin']}/condor_status", "-any", "-af", "MyType", "TotalGPUs"],
                env=cenv,
                capture_output=True,
                text=True,
                timeout=10,
            )
        except subprocess.TimeoutExpired:
            return ["Collector"]
        if r.returncode != 0:
            return ["Collector"]
        types: dict[str, str] = {}
        for line in r.stdout.splitlines():
            parts = line.split()
            if parts:
                types[parts[0]] = parts[1] if len(parts) > 1 else ""
        missing = [t for t in ("Scheduler", "Negotiator", "Machine") if t not in types]
        if not missing and self.settings.gpus > 0:
            try:
                if int(types["Machine"]) < self.settings.gpus:
                    missing = ["GPUs"]
            except ValueError:
                missing = ["GPUs"]
        return missing

    # ----------------------------------------------------------------- docker on/off
    def docker(self, enable: bool, client: str = DEFAULT_DOCKER) -> str:
        """Let the pool run container/docker universe jobs through `client` (or stop that); the line to print.

        Works on a running pool: writes or removes etc/config.d/50-docker.conf and reconfigures the master
        (SIGHUP, what condor_reconfig asks for). `on` then waits until a slot advertises HasContainer and
        DockerVersion, which needs a container engine on the default socket.
        """
        info = self._require_installed()
        if enable and not (os.path.isabs(client) and os.access(client, os.X_OK)):
            raise PoolError(
                f"--docker={client!r} is not an executable absolute path "
                f"(e.g. {DEFAULT_DOCKER}, Debian's docker client)"
            )
        with self.lock():
            if enable:
                self.docker_conf.parent.mkdir(parents=True, exist_ok=True)
                tmp = self.docker_conf.with_name(f".{DOCKER_FRAGMENT}.tmp{os.getpid()}")
                tmp.write_text(config.docker_config(client))
                tmp.chmod(0o644)  # the pool user reads it, with or without capabilities
                tmp.replace(self.docker_conf)
            else:
                self.docker_conf.unlink(missing_ok=True)
            st = self.master()
            sent = int(time.time())
            if st is not None:
                os.kill(st["pid"], signal.SIGHUP)  # the master rereads its config, then its daemons do
        done = f"docker on ({client}): wrote" if enable else "docker off: removed"
        if st is None:
            return f"{PROG}: {done} {self.docker_conf}; takes effect when the pool starts"
        if not enable:
            return f"{PROG}: {done} {self.docker_conf} and reconfigured the pool"
        t0 = time.monotonic()
        deadline = t0 + self.settings.start_timeout
        cenv = self.condor_env(info)
        while not self._docker_slots(info, cenv, since=sent):
            if time.monotonic() > deadline:
                start_log = self.log_dir / "StartLog"
                raise PoolError(
                    f"no slot advertises HasContainer and DockerVersion "
                    f"{self.settings.start_timeout} s after `docker on` ({client}): is a "
                    f"container engine running on its default socket? read {start_log}"
                    f"{_last_line(start_log)}"
                )
            time.sleep(0.25)
        return (
            f"{PROG}: docker on ({client}): a slot runs container jobs, "
            f"{time.monotonic() - t0:.1f} s after reconfiguring; {self.docker_conf}"
        )

    @staticmethod
    def _docker_slots(info: InstallInfo, cenv: dict[str, str], since: int) -> list[str]:
        """Slots that can run container jobs now: HasDocker alone only says the knob is set; DockerVersion and
        HasContainer appear once the startd has talked to the engine. Only ads of a startd reconfigured at
        or after `since` count: an older ad may still show an engine that has gone since."""
        constraint = (
            f"HasContainer =?= true && DockerVersion =!= undefined && DaemonLastReconfigTime >= {since}"
        )
        try:
            r = subprocess.run(
                [f"{info['bin']}/condor_status", "-constraint", constraint, "-af", "Name"],
                env=cenv,
                capture_output=True,
                text=True,
                timeout=10,
            )
        except subprocess.TimeoutExpired:
            return []
        return r.stdout.split() if r.returncode == 0 else []

    # ----------------------------------------------------------------- stop
    def stop(self) -> str:
        """Stop the pool; the line to print."""
        with self.lock():
            return self._stop_locked()

    def _stop_locked(self) -> str:
        st = self._read_state()
        if not st:
            return f"{PROG}: not running ({self.dir})"
        t0 = time.monotonic()
        alive = self.master() is not None
        self._stop_pid(st["pid"], quiet=False, prefix=st.get("prefix"))
        self.state_json.unlink(missing_ok=True)
        what = "stopped" if alive else "was not running; cleaned up leftovers of"
        return f"{PROG}: {what} the pool at 127.0.0.1:{st.get('port')} in {time.monotonic() - t0:.1f} s"

    # ----------------------------------------------------------------- status / env
    def status(self) -> tuple[int, str]:
        """(exit code: 0 running, 3 not running; the text to print)."""
        st = self.master()
        info = self.installed()
        if not st:
            where = f"installed ({info.get('version')})" if info else "not installed"
            return 3, f"{PROG}: not running; {where} in {self.dir}; pool address would be {self.address}"
        lines = [
            f"{PROG}: running (master pid {st['pid']}) at 127.0.0.1:{st['port']}",
            f"CONDOR_CONFIG={self.config}",
            f"logs: {self.log_dir}",
        ]
        if info:
            try:
                r = subprocess.run(
                    [
                        f"{info['bin']}/condor_status",
                        "-af",
                        "Name",
                        "Cpus",
                        "Memory",
                        "GPUs",
                        "State",
                        "Activity",
                    ],
                    env=self.condor_env(info),
                    capture_output=True,
                    text=True,
                    timeout=20,
                )
                slots = r.stdout.rstrip() or f"  none ({r.stderr.strip()})"
            except subprocess.TimeoutExpired:
                slots = "  collector did not answer within 20 s"
            lines += ["slots (Name Cpus Memory GPUs State Activity):", slots]
        return 0, "\n".join(lines)

    def _require_installed(self) -> InstallInfo:
        info = self.installed()
        if not info:
            raise PoolError(f"not installed in {self.dir}; run scripts/condor-pool install first")
        return info

    def env_json(self) -> dict[str, Any]:
        """Everything the pytest fixture needs, machine-readable (`env --json`)."""
        info = self._require_installed()
        st = self.master()
        return {
            "CONDOR_CONFIG": str(self.config),
            "bin": info["bin"],
            "sbin": info["sbin"],
            "pool_dir": str(self.dir),
            "log_dir": str(self.log_dir),
            "address": f"127.0.0.1:{st['port'] if st else self.port}",
            "running": st is not None,
            "version": info.get("version"),
        }

    def env_exports(self) -> str:
        """Shell lines for `eval "$(scripts/condor-pool env)"`."""
        info = self._require_installed()
        return (
            f"export CONDOR_CONFIG={shlex.quote(str(self.config))}\n"
            f'export PATH={shlex.quote(info["bin"])}:"$PATH"'
        )


def _last_line(path: Path) -> str:
    """ "; last line: ..." of a log file, or "" if it has none."""
    with contextlib.suppress(OSError):
        lines = [ln for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
        if lines:
            return f"; last line: {lines[-1].strip()[:200]}"
    return ""
