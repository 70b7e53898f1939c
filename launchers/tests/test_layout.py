"""Every file name of a sweep folder is spelled in `_layout` only (launcher and sweep report), and the
layout lists what a sweep folder holds."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import hydra_plugins.hydra_htcondor_launcher as pkg
from hydra_plugins.hydra_htcondor_launcher._layout import SweepLayout, manifest_path, reports_path

ROOT = Path(__file__).resolve().parents[2]
SCANNED = [Path(pkg.__file__).parent, ROOT / "mnist_app" / "report"]
# A piece of one of the sweep folder's file names.
NAME = re.compile(
    r"\.spec\.pkl|\.result\.pkl|\.result\.txt|batch-|manifest\.json|config-sources|\.damaged-|common-|\bcode-"
    r"|/\.htcondor\b|^\.htcondor$|\.out$|\.err$|\.reports$"
)
# Strings that only look like one: HTCondor's own term, a setting's default and an error's example (both
# in Hydra's interpolation syntax), the snapshot writer's temp folder.
ALLOWED = {
    ("_jobstate.py", "common-files transfer bookkeeping"),
    ("config.py", "${hydra.sweep.dir}/.htcondor"),
    ("_settings.py", ") with transfer_files=true, e.g. ${hydra.sweep.dir}/.htcondor"),
    ("_sources.py", ".tmp-config-sources-"),
}


def _spelled_names(path: Path) -> list[tuple[int, str]]:
    """String constants (f-string parts included, docstrings not) that spell a piece of a file name."""
    tree = ast.parse(path.read_text(), str(path))
    docs = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                docs.add(id(first.value))
    return [
        (node.lineno, node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docs
        if NAME.search(node.value)
    ]


def test_file_names_are_spelled_in_the_layout_only():
    found = [
        f"{path.name}:{line}: {text!r}"
        for folder in SCANNED
        for path in sorted(folder.glob("*.py"))
        if path.name != "_layout.py"
        for line, text in _spelled_names(path)
        if (path.name, text) not in ALLOWED
    ]
    assert found == []
    layout = Path(pkg.__file__).parent / "_layout.py"
    assert len(_spelled_names(layout)) >= 8  # the scan sees the names where they are declared


def test_the_layout_names_a_sweep_folders_files(tmp_path):
    names = SweepLayout(str(tmp_path))
    assert names.htcondor_dir == str(tmp_path / ".htcondor")
    assert names.manifest == manifest_path(str(tmp_path)) == str(tmp_path / ".htcondor" / "manifest.json")
    job = names.job(3)
    assert [Path(p).name for p in (job.spec, job.result, job.result_note, job.stdout, job.stderr)] == [
        "3.spec.pkl",
        "3.result.pkl",
        "3.result.txt",
        "3.out",
        "3.err",
    ]
    # The report file: beside the job's other files; the worker finds it from its result's path.
    assert Path(names.reports(3)).name == "3.reports" and reports_path(job.result) == names.reports(3)
    # htcondor_dir elsewhere: the job files follow it, the manifest stays in the sweep folder.
    apart = SweepLayout(str(tmp_path), str(tmp_path / "logs"))
    assert Path(apart.spec(0)).parent == tmp_path / "logs" and apart.manifest == names.manifest


def test_the_layout_lists_batch_logs_and_job_files(tmp_path):
    names = SweepLayout(str(tmp_path))
    assert names.batch_logs() == [] and names.job_file_nums() == set() and not names.has_specs()
    Path(names.htcondor_dir).mkdir()
    for path in (names.batch_log(10, 11), names.batch_log(2, 9), names.spec(4), names.result_note(12)):
        Path(path).write_text("")
    for stray in ("batch-1-2.log.tmp", "x4.spec.pkl", "7.spec.pkl.tmp.99", "common-ab.pkl"):
        (Path(names.htcondor_dir) / stray).write_text("")
    assert names.batch_logs() == [(2, 9, names.batch_log(2, 9)), (10, 11, names.batch_log(10, 11))]
    assert names.job_file_nums() == {4, 12} and names.has_specs()
