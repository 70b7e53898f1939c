"""scripts/container-runtime and its engine: no network of its own, a cached image, one-line errors."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
RUNTIME = REPO / "scripts" / "container-runtime"


def _runtime(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(RUNTIME), *args], capture_output=True, text=True, timeout=600)


def test_unknown_command_is_one_line() -> None:
    proc = _runtime("launch")
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "container-runtime: unknown command 'launch': expected install, start, stop, status, image, "
        "host-state or help"
    ]


def test_bad_holder_is_one_line() -> None:
    proc = _runtime("stop", "--holder=me")
    assert proc.returncode == 1
    assert proc.stderr.strip() == "container-runtime: error: --holder='me' is invalid: expected a process id"


@pytest.mark.condor
@pytest.mark.container
@pytest.mark.usefixtures("container_worker")
class TestRunningEngine:
    """While the session's engine runs (the fixture compares the host again after it stopped)."""

    def test_engine_adds_no_bridge_firewall_rule_or_forwarding(self, container_worker) -> None:
        state = container_worker.host_state()
        assert "dockerd" in state["engine"]["processes"]  # it is running now
        network = state["network"]
        assert not [link for link in network["links"] if link.startswith(("docker", "veth", "br-"))]
        # iptables comes with docker.io: unreadable IPv4 rules would hide what the engine added.
        assert network["iptables"] is not None, "iptables-save cannot read the rules"
        for table in ("iptables", "ip6tables"):  # IPv6 rules only where the kernel has them
            assert not [rule for rule in network[table] or [] if "DOCKER" in rule], network[table]
        if container_worker.host_before is None:
            pytest.skip("the engine was already running when this session started: no state from before it")
        assert container_worker.changes(state, "network") == {}

    def test_second_image_call_uses_the_built_image(self) -> None:
        proc = _runtime("image", f"--python={sys.executable}")
        assert proc.returncode == 0, proc.stderr
        assert "mnist-app-test-worker:latest is up to date" in proc.stdout

    def test_container_job_has_only_loopback(self, tmp_path: Path) -> None:
        import htcondor2

        tmp_path.chmod(0o755)
        desc = {
            "universe": "container",
            "container_image": "docker://mnist-app-test-worker:latest",
            # HTCondor's docker support writes docker_stderror into the job's iwd (the cwd by default).
            "initialdir": str(tmp_path),
            "executable": "/bin/ls",
            "arguments": "/sys/class/net",
            "transfer_executable": "false",
            "should_transfer_files": "YES",
            "output": str(tmp_path / "out"),
            "error": str(tmp_path / "err"),
            "log": str(tmp_path / "log"),
            "request_memory": "64MB",
        }
        htcondor2.Schedd().submit(htcondor2.Submit(desc))
        log = htcondor2.JobEventLog(str(tmp_path / "log"))
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            types = [event.type for event in log.events(stop_after=0)]
            assert htcondor2.JobEventType.JOB_HELD not in types
            if htcondor2.JobEventType.JOB_TERMINATED in types:
                break
            time.sleep(0.2)
        assert (tmp_path / "out").read_text().split() == ["lo"], (tmp_path / "err").read_text()
