"""proctools, the process helpers scripts/condor-pool, scripts/container-runtime and scripts/pack-env share:
real commands and real child processes (no fakes), each wait bounded."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time

import pytest

from condor_pool.procs import descendants
from proctools import commands, pids

# A child that says when its signal handling is in place, then waits to be stopped.
SLEEPER = """
import signal, sys, time
if sys.argv[1] == "ignore":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
print("ready", flush=True)
time.sleep(120)
"""


def _sleeper(mode: str = "default", **kw) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", SLEEPER, mode], stdout=subprocess.PIPE, text=True, **kw)
    assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
    return proc


@pytest.fixture
def children():
    """Sleepers started by a test, killed and reaped after it whatever happened."""
    started: list[subprocess.Popen] = []
    yield lambda mode="default", **kw: started.append(_sleeper(mode, **kw)) or started[-1]
    for proc in started:
        proc.kill()
        proc.wait(timeout=10)


# --- commands ------------------------------------------------------------------------------------------


def test_run_returns_the_output():
    assert commands.run([sys.executable, "-c", "print('hi')"]).stdout == "hi\n"


def test_failure_is_one_line_with_the_exit_code_and_the_last_line():
    with pytest.raises(commands.CommandFailed) as err:
        commands.run(
            [
                sys.executable,
                "-c",
                "import sys; print('first\\nthe cause\\n\\n', file=sys.stderr); sys.exit(3)",
            ],
            what="probe",
        )
    assert err.value.returncode == 3
    assert str(err.value) == "probe failed (exit 3): the cause"


def test_check_false_returns_a_failed_command():
    assert commands.run([sys.executable, "-c", "raise SystemExit(4)"], check=False).returncode == 4


def test_missing_program_and_timeout_are_one_line():
    with pytest.raises(commands.CommandNotRun) as err:
        commands.run(["/nonexistent/tool", "x"])
    assert str(err.value).startswith("/nonexistent/tool: cannot run /nonexistent/tool: [Errno 2]")
    assert isinstance(err.value.error, FileNotFoundError)
    tic = time.monotonic()
    with pytest.raises(commands.CommandTimeout) as err:
        commands.run(["sleep", "30"], timeout=0.3, what="nap")
    assert time.monotonic() - tic < 10
    assert str(err.value) == "nap did not finish in 0.3 s: sleep 30"


def test_echo_logs_the_command(caplog):
    with caplog.at_level(logging.INFO, logger="echo-test"):
        commands.run(["true", "a b"], echo=logging.getLogger("echo-test"))
    assert caplog.messages == ["$ true a b"]


def test_last_line():
    assert commands.last_line("one\n  two  \n\n") == "two"
    assert commands.last_line(" \n") == "?"
    assert commands.last_line("", default="") == ""


# --- pids ----------------------------------------------------------------------------------------------


def test_what_proc_tells_about_this_process():
    me = os.getpid()
    assert me in pids.all_pids()
    assert pids.parent(me) == os.getppid()
    assert os.path.realpath(pids.exe(me) or "") == os.path.realpath(sys.executable)
    assert b"pytest" in pids.read(me, "cmdline") or sys.executable.encode() in pids.read(me, "cmdline")
    assert pids.proc_start(me) is not None and not pids.is_zombie(me)
    assert pids.proc_start(0) is None and pids.parent(-1) is None and pids.exe(0) is None
    assert pids.read(0, "environ") == b""


def test_a_reused_pid_is_not_the_same_process(children):
    child = children()
    start = pids.proc_start(child.pid)
    assert start is not None
    assert pids.running({child.pid: start}) == {child.pid: start}
    assert pids.running({child.pid: start + 1}) == {}  # same pid, another start time


def test_an_unreaped_child_is_a_zombie_and_counts_as_gone(children):
    child = children()
    procs = pids.snapshot([child.pid])
    os.kill(child.pid, signal.SIGKILL)
    assert pids.wait_gone(procs, 10) == {}
    assert pids.is_zombie(child.pid)  # not reaped yet: still in /proc
    assert pids.snapshot([child.pid]) == {}


def test_wait_gone_returns_the_survivors_after_its_deadline(children):
    procs = pids.snapshot([children().pid])
    tic = time.monotonic()
    assert pids.wait_gone(procs, 0.3) == procs
    assert 0.3 <= time.monotonic() - tic < 5


def test_stop_kills_what_ignores_sigterm_and_says_so(children):
    polite, stubborn = children(), children("ignore")
    procs = pids.snapshot([polite.pid, stubborn.pid])
    killed: list[dict[int, int]] = []
    left = pids.stop(lambda: procs, term_wait=0.5, kill_wait=10, before_kill=killed.append)
    assert left == {}
    assert killed == [{stubborn.pid: procs[stubborn.pid]}]  # the polite one went at SIGTERM
    assert polite.wait(timeout=10) == -signal.SIGTERM and stubborn.wait(timeout=10) == -signal.SIGKILL


def test_stop_asks_again_before_sigkill(children):
    """A process that appears during the grace period (a daemon's new child) still gets stopped."""
    first = children()
    found = [pids.snapshot([first.pid])]

    def find() -> dict[int, int]:
        if len(found) == 1:
            found.append(pids.snapshot([children("ignore").pid]))
            return found[0]
        return found[1]

    assert pids.stop(find, term_wait=2, kill_wait=10) == {}
    assert first.wait(timeout=10) == -signal.SIGTERM
    assert pids.snapshot(found[1]) == {}


# --- condor_pool.procs on top of them ------------------------------------------------------------------


@pytest.fixture
def tree():
    """A child with a sleeping grandchild (ready when this yields); both killed after the test."""
    parent = f"import subprocess, sys; subprocess.run([sys.executable, '-c', {SLEEPER!r}, 'default'])"
    child = subprocess.Popen([sys.executable, "-c", parent], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdout.readline() == "ready\n"  # the grandchild's
        yield child
    finally:
        pids.send(pids.snapshot(pids.subtree(child.pid)), signal.SIGKILL)
        child.wait(timeout=10)


def test_descendants_by_parent_and_by_ancestry_marker(children, tree):
    marker = f"_CONDOR_ANCESTOR_{tree.pid}=".encode()
    adopted = children(env={**os.environ, marker.decode().rstrip("="): "1"})  # not below it
    bystander = children()
    found = descendants(tree.pid, marker, None)
    below = [p for p in found if pids.parent(p) == tree.pid]  # the grandchild
    assert len(below) == 1 and adopted.pid in found and bystander.pid not in found
    assert tree.pid not in found and os.getpid() not in found


def test_undecodable_output_does_not_fail_the_command():
    out = commands.run([sys.executable, "-c", "import sys; sys.stdout.buffer.write(b'a\\xff\\n')"]).stdout
    assert out == "a\ufffd\n"


def test_tools_run_without_the_shims_pythonpath_entry(monkeypatch):
    """scripts/container-runtime and scripts/pack-env put the repository first on PYTHONPATH to reach their
    package; what they run (pip, dockerd) gets the caller's PYTHONPATH, as before there were packages."""
    repo = commands.REPO
    assert commands.inherited_env({"PYTHONPATH": f"{repo}{os.pathsep}/x", "A": "1"}) == {
        "PYTHONPATH": "/x",
        "A": "1",
    }
    assert commands.inherited_env({"PYTHONPATH": repo}) == {}
    assert commands.inherited_env({"PYTHONPATH": f"/x{os.pathsep}{repo}"}) == {
        "PYTHONPATH": f"/x{os.pathsep}{repo}"
    }  # not the shim's entry: the caller's own
    monkeypatch.setenv("PYTHONPATH", f"{repo}{os.pathsep}/y")
    show = [sys.executable, "-c", "import os; print(os.environ.get('PYTHONPATH'))"]
    assert commands.run(show).stdout == "/y\n"
    assert commands.run(show, env={"PYTHONPATH": repo}).stdout == f"{repo}\n"  # an explicit env is kept


def test_children_by_name_and_the_subtree_below_a_process(children, tree):
    bystander = children()
    below = pids.children(tree.pid)
    assert len(below) == 1 and pids.children(os.getpid(), "no-such-program") == []
    comm = pids.read(below[0], "comm").decode().strip()
    assert pids.children(tree.pid, comm) == below
    assert pids.subtree(tree.pid) == [tree.pid, below[0]]
    assert bystander.pid in pids.children(os.getpid()) and bystander.pid not in pids.subtree(tree.pid)
