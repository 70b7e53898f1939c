"""One owner of job state: no module but `_jobstate` assigns a JobRecord's fields."""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import hydra_plugins.hydra_htcondor_launcher as pkg
from hydra_plugins.hydra_htcondor_launcher._jobstate import JobRecord

FIELDS = {f.name for f in dataclasses.fields(JobRecord)}


def _field_assignments(path: Path) -> list[str]:
    """`rec.<JobRecord field> = ...` (or +=) on a plain name other than `self` (a class's own attribute of
    that name); a config's `cfg.hydra.job.num` is not a record."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        targets: list[ast.expr] = []
        if isinstance(node, ast.Assign):
            targets = node.targets
        elif isinstance(node, ast.AugAssign | ast.AnnAssign):
            targets = [node.target]
        for target in targets:
            if (
                isinstance(target, ast.Attribute)
                and target.attr in FIELDS
                and isinstance(target.value, ast.Name)
                and target.value.id != "self"
            ):
                found.append(f"{path.name}:{node.lineno}: {ast.unparse(target)}")
    return found


def test_only_jobstate_changes_a_job_record():
    folder = Path(pkg.__file__).parent
    assert _field_assignments(folder / "_jobstate.py")  # the scan sees the owner's assignments
    others = [
        hit
        for path in sorted(folder.glob("*.py"))
        if path.name != "_jobstate.py"
        for hit in _field_assignments(path)
    ]
    assert others == []
