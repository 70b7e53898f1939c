"""scripts/pack-env --mode standalone: the archive runs from another folder once the source venv is gone,
unpacked and started by the HTCondor launcher's own packed-mode job wrapper."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACK_ENV = ROOT / "scripts" / "pack-env"
BASE_PYTHON = getattr(sys, "_base_executable", sys.executable)
PY = f"python{sys.version_info[0]}.{sys.version_info[1]}"

# What the job prints about itself: where its interpreter and libpython live, and what it can import.
PROBE = """
import json, sys
import tinypkg
libpython = [line.split()[-1] for line in open("/proc/self/maps") if "libpython" in line]
print(json.dumps({"prefix": sys.prefix, "path": sys.path, "tiny": tinypkg.VALUE,
                  "tiny_file": tinypkg.__file__, "libpython": sorted(set(libpython))}))
"""


def make_venv(where: Path, *, with_pip: bool) -> Path:
    """A small venv of the interpreter running the tests, with one plain package and one fake editable
    install (a .pth pointing at a source folder, as `pip install -e` leaves them)."""
    subprocess.run(
        [BASE_PYTHON, "-m", "venv", *([] if with_pip else ["--without-pip"]), str(where)],
        check=True,
        capture_output=True,
    )
    site = where / "lib" / PY / "site-packages"
    (site / "tinypkg").mkdir()
    (site / "tinypkg" / "__init__.py").write_text("VALUE = 42\n")
    source = where.parent / "editable-src"
    source.mkdir()
    (source / "editmod.py").write_text("X = 1\n")
    dist = site / "editmod-0.1.dist-info"
    dist.mkdir()
    # hatchling names it _<name>.pth, setuptools __editable__.<name>.pth: only RECORD says it is the install.
    (site / "_editmod.pth").write_text(f"{source}\n")
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: editmod\nVersion: 0.1\n")
    direct_url = {"url": source.as_uri(), "dir_info": {"editable": True}}
    (dist / "direct_url.json").write_text(json.dumps(direct_url))
    (dist / "RECORD").write_text("_editmod.pth,,\neditmod-0.1.dist-info/METADATA,,\n")
    return where / "bin" / "python"


def pack(python: Path, output: Path, *extra: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, str(PACK_ENV), "--mode", "standalone", "--python", str(python), "-o", str(output)]
    return subprocess.run(
        [*cmd, *extra],
        capture_output=True,
        text=True,
        timeout=600,
    )


def run_like_a_job(archive: Path, scratch: Path, *args: str) -> subprocess.CompletedProcess:
    """Run the launcher's env_mode=packed wrapper in an empty scratch folder holding only the archive, with
    the bare environment a job gets (no PATH into our venv, no PYTHONPATH)."""
    from hydra_plugins.hydra_htcondor_launcher._settings import Settings
    from hydra_plugins.hydra_htcondor_launcher._submit import wrapper_script

    settings = Settings(env_mode="packed", packed_env=str(archive), python="env/bin/python")
    scratch.mkdir()
    shutil.copy(archive, scratch / archive.name)
    wrapper = scratch / "wrapper.sh"
    wrapper.write_text(wrapper_script(settings))
    env = {"PATH": "/usr/bin:/bin", "HOME": str(scratch)}
    return subprocess.run(
        ["sh", str(wrapper), archive.name, "env/bin/python", *args],
        cwd=scratch,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.skipif(sys.platform != "linux", reason="the standalone pack is for Linux workers")
def test_standalone_archive_is_relocatable(tmp_path):
    python = make_venv(tmp_path / "src" / "venv", with_pip=False)
    archive = tmp_path / "out" / "mnist-env.tar.gz"
    result = pack(python, archive, "--no-project")
    assert result.returncode == 0, result.stderr
    assert "wrote" in result.stderr

    names = tarfile.open(archive).getnames()
    assert f"./bin/{PY}" in names and "./bin/python" in names and "./PACKED-ENV.json" in names
    assert not any("editable" in n or "editmod" in n for n in names), "editable install was packed"
    assert not any(f"/{PY}/test/" in n for n in names), "the stdlib test suite was packed"

    shutil.rmtree(tmp_path / "src")  # nothing of the source venv may be needed any more
    job = run_like_a_job(archive, tmp_path / "scratch", "-c", PROBE)
    assert job.returncode == 0, job.stderr
    info = json.loads(job.stdout)
    env = (tmp_path / "scratch" / "env").resolve()
    assert Path(info["prefix"]).resolve() == env
    assert info["tiny"] == 42 and Path(info["tiny_file"]).resolve().is_relative_to(env)
    assert all(Path(p).resolve().is_relative_to(env) for p in info["path"] if p), info["path"]
    if info["libpython"]:  # a shared-libpython interpreter: it must be the packed copy
        assert all(Path(p).resolve().is_relative_to(env) for p in info["libpython"]), info["libpython"]
    # The wrapper cleans up after the job: the environment must not travel back as job output.
    assert not (tmp_path / "scratch" / "env").exists()


def test_bad_output_name_is_a_one_line_error(tmp_path):
    python = make_venv(tmp_path / "venv", with_pip=False)
    result = pack(python, tmp_path / "env.zip", "--no-project")
    assert result.returncode == 2
    assert "env.zip" in result.stderr and "*.tar.gz" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_missing_python_is_a_one_line_error(tmp_path):
    result = pack(tmp_path / "nope" / "python", tmp_path / "env.tar.gz", "--no-project")
    assert result.returncode == 2
    assert "nope/python" in result.stderr and len(result.stderr.strip().splitlines()) == 1


@pytest.mark.slow
@pytest.mark.skipif(sys.platform != "linux", reason="the standalone pack is for Linux workers")
def test_standalone_archive_with_the_project(tmp_path):
    """The project goes in as regular (not editable) installs; building them fetches hatchling from PyPI."""
    python = make_venv(tmp_path / "src" / "venv", with_pip=True)
    archive = tmp_path / "mnist-env.tar"
    result = pack(python, archive)
    assert result.returncode == 0, result.stderr
    shutil.rmtree(tmp_path / "src")
    check = (
        "import mnist_app, hydra_plugins.hydra_htcondor_launcher as l, sys; "
        "print(mnist_app.__file__); print(l.__path__[0]); print(sys.prefix)"
    )
    job = run_like_a_job(archive, tmp_path / "scratch", "-c", check)
    assert job.returncode == 0, job.stderr
    env = (tmp_path / "scratch" / "env").resolve()
    for line in job.stdout.split():
        assert Path(line).resolve().is_relative_to(env), f"{line} is not inside the packed environment"
    # Console scripts start the packed interpreter next to them, wherever the folder is.
    with tarfile.open(archive) as tar:
        script = tar.extractfile("./bin/mnist-app").read().decode()
    assert script.startswith("#!/bin/sh\n") and f'"$(dirname -- "$0")/{PY}"' in script
    assert str(tmp_path) not in script


def test_pixi_pack_mode_without_pixi_is_a_one_line_error(tmp_path):
    """pixi-pack mode cannot run here (no pixi, no conda-forge); without pixi it must say so, not crash."""
    if shutil.which("pixi") or shutil.which("pixi-pack"):
        pytest.skip("pixi is installed: this checks the message for machines without it")
    result = subprocess.run(
        [sys.executable, str(PACK_ENV), "--mode", "pixi-pack", "-o", str(tmp_path / "env.sh")],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 2
    assert "neither pixi-pack nor pixi is on PATH" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    result = subprocess.run(
        [sys.executable, str(PACK_ENV), "--mode", "pixi-pack", "-o", str(tmp_path / "env.tar")],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2 and "*.sh" in result.stderr
