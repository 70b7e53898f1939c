"""containers/: the image definitions cannot be built here (no route to conda-forge or ghcr.io, no Apptainer),
so these tests check what can be checked: the paths they copy exist, the Pixi environment and CUDA version
agree with pixi.toml, the build context stays small, and the entry point really starts the launcher's job
runner and the app (run against the local venv instead of the image's environment)."""

from __future__ import annotations

import fnmatch
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib

ROOT = Path(__file__).resolve().parents[1]
CONTAINERS = ROOT / "containers"
DOCKERFILE = CONTAINERS / "Dockerfile"
DEF_FILE = CONTAINERS / "mnist-app.def"
ENTRYPOINT = CONTAINERS / "entrypoint.sh"
WORKER_MODULE = "hydra_plugins.hydra_htcondor_launcher._worker"


def pixi() -> dict:
    return tomllib.loads((ROOT / "pixi.toml").read_text())


def dockerfile_args() -> dict[str, str]:
    return dict(re.findall(r"^ARG (\w+)=(\S+)", DOCKERFILE.read_text(), flags=re.M))


def def_sections(text: str) -> list[tuple[str, str]]:
    """(section header, body) pairs of an Apptainer definition, in order (one list for all stages)."""
    parts = re.split(r"^(%\w+.*)$", text, flags=re.M)
    return [(parts[i].strip(), parts[i + 1]) for i in range(1, len(parts), 2)]


def test_dockerfile_builds_the_gpu_environment_of_pixi_toml():
    args = dockerfile_args()
    manifest = pixi()
    assert args["ENVIRONMENT"] == "gpu" and "gpu" in manifest["environments"]
    assert args["CUDA_VERSION"] == manifest["feature"]["gpu"]["system-requirements"]["cuda"]
    text = DOCKERFILE.read_text()
    assert 'pixi install --locked --environment "${ENVIRONMENT}"' in text
    assert 'pixi install --environment "${ENVIRONMENT}"' in text  # no pixi.lock in the repo: see README
    assert "ENV CONDA_OVERRIDE_CUDA=${CUDA_VERSION}" in text
    assert "PATH=/app/.pixi/envs/${ENVIRONMENT}/bin:${PATH}" in text
    assert 'ENTRYPOINT ["/app/entrypoint.sh"]' in text


def test_dockerfile_copies_only_existing_paths():
    for line in re.findall(r"^COPY (?!--from)(.+)$", DOCKERFILE.read_text(), flags=re.M):
        *sources, _dest = line.split()
        for source in sources:
            if source.endswith("*"):  # optional (pixi.lock*): at least one other source must exist
                continue
            assert (ROOT / source).exists(), f"COPY {source}: not in the repository"


def test_build_context_keeps_the_venv_out():
    """Evaluate Dockerfile.dockerignore like BuildKit does (last matching pattern wins)."""
    patterns = [
        p.strip()
        for p in (CONTAINERS / "Dockerfile.dockerignore").read_text().splitlines()
        if p.strip() and not p.startswith("#")
    ]

    def included(path: str) -> bool:
        keep = True
        for pattern in patterns:
            negate = pattern.startswith("!")
            pat = pattern.lstrip("!")
            # A pattern that matches a folder matches everything in it.
            parents = [path] + ["/".join(path.split("/")[:i]) for i in range(1, path.count("/") + 1)]
            if any(fnmatch.fnmatch(p, pat) for p in parents):
                keep = negate
        return keep

    for path in (
        ".venv/lib/python3.11/site-packages/torch/__init__.py",
        ".pixi/envs/gpu/bin/python",
        "outputs/runs/x/metrics.json",
        "data/MNIST/raw/train-images-idx3-ubyte",
        ".git/HEAD",
        "mnist_app/__pycache__/x.pyc",
        "launchers/tests/test_x.py",
    ):
        assert not included(path), f"{path} would be sent to the Docker build"
    for path in (
        "pixi.toml",
        "pyproject.toml",
        "README.md",
        "conf/config.yaml",
        "mnist_app/train.py",
        "launchers/pyproject.toml",
        "launchers/hydra_plugins/hydra_htcondor_launcher/_worker.py",
        "containers/entrypoint.sh",
    ):
        assert included(path), f"{path} is needed by the Docker build but ignored"
        assert (ROOT / path).exists() or path == "README.md"


def test_apptainer_definition_matches_the_dockerfile():
    text = DEF_FILE.read_text()
    sections = def_sections(text)
    files = [body for header, body in sections if header == "%files"]
    assert files, "no %files section"
    for line in files[0].splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            source = line.split()[0]
            assert (ROOT / source).exists(), f"%files {source}: not in the repository"
    post = next(body for header, body in sections if header == "%post")
    assert "ENVIRONMENT=gpu" in post and "CONDA_OVERRIDE_CUDA=" + dockerfile_args()["CUDA_VERSION"] in post
    environment = next(body for header, body in sections if header == "%environment")
    assert "PATH=/app/.pixi/envs/gpu/bin:$PATH" in environment
    assert "/app/entrypoint.sh" in next(body for header, body in sections if header == "%runscript")
    assert f"{WORKER_MODULE} --help" in next(body for header, body in sections if header == "%test")
    assert "%files from build" in text


def test_docs_name_the_images_interpreter():
    """The container examples run the image's environment by absolute path: it must be where the image
    installs it."""
    python = "/app/.pixi/envs/{}/bin/python".format(dockerfile_args()["ENVIRONMENT"])
    for doc in (CONTAINERS / "README.md", ROOT / "docs" / "worker-environments.md"):
        assert f"hydra.launcher.python={python}" in doc.read_text(), doc
    assert (
        "WORKDIR /app" in DOCKERFILE.read_text() and "COPY --from=build /app /app" in DOCKERFILE.read_text()
    )


def test_readme_has_one_build_command_each():
    readme = (CONTAINERS / "README.md").read_text()
    assert "docker build -f containers/Dockerfile -t mnist-app:gpu ." in readme
    assert "apptainer build mnist-app.sif containers/mnist-app.def" in readme
    assert "These two images are not built here" in readme


# ------------------------------------------------------------- the entry point, run against the local venv


@pytest.fixture
def entrypoint_env(tmp_path):
    """An activation script standing in for the image's `pixi shell-hook` output: it puts the interpreter
    running the tests first on PATH, as the image puts /app/.pixi/envs/gpu/bin."""
    activate = tmp_path / "activate.sh"
    activate.write_text(f'export PATH="{Path(sys.executable).parent}:$PATH"\n')
    return {**os.environ, "MNIST_APP_ACTIVATE": str(activate), "PATH": "/usr/bin:/bin"}


def run_entrypoint(env: dict, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(ENTRYPOINT), *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=120
    )


def test_entrypoint_runs_the_job_runner(entrypoint_env, tmp_path):
    result = run_entrypoint(entrypoint_env, tmp_path, "worker", "--help")
    assert result.returncode == 0, result.stderr
    assert WORKER_MODULE in result.stdout and "spec" in result.stdout
    # A spec file as first argument goes to the job runner too (a missing one is its error, not ours).
    result = run_entrypoint(entrypoint_env, tmp_path, str(tmp_path / "0.spec.pkl"), "1.0")
    assert result.returncode != 0
    assert "0.spec.pkl" in result.stderr


def test_entrypoint_runs_the_app_and_any_command(entrypoint_env, tmp_path):
    result = run_entrypoint(
        entrypoint_env, tmp_path, "train", "--cfg", "job", "device=cuda", "trainer.max_epochs=1"
    )
    assert result.returncode == 0, result.stderr
    assert "accelerator: cuda" in result.stdout and "max_epochs: 1" in result.stdout
    result = run_entrypoint(entrypoint_env, tmp_path, "python", "-c", "import sys; print(sys.executable)")
    assert result.returncode == 0, result.stderr
    assert Path(result.stdout.strip()).parent == Path(sys.executable).parent
    result = run_entrypoint(entrypoint_env, tmp_path)
    assert result.returncode == 0 and "worker SPEC JOB_ID" in result.stdout
