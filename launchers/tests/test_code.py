"""The app's code snapshot (`_code`) without a pool: what is gathered from a real process's imports, the
snapshot's hash and folder, the refusal of oversized code, and the worker's side (sys.path, ``__main__``,
the one-line errors). The sweeps on the pool are in test_container_code.py and test_pool_code.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from hydra_plugins.hydra_htcondor_launcher import _code
from hydra_plugins.hydra_htcondor_launcher._layout import SweepLayout

GATHER = """
import json, sys
import yaml, email.mime.text  # installed and standard library: never shipped
import helper, mypkg
from hydra_plugins.hydra_htcondor_launcher import _code

code = _code.gather(skip=sys.argv[1:])
print(json.dumps({"modules": code.modules, "files": sorted(rel for rel, _ in code.files),
                  "main": code.main, "digest": code.digest}))
"""


def _project(root: Path) -> Path:
    """A script, a sibling module, a package with a subpackage, and what is no code."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "app.py").write_text(GATHER)
    (root / "helper.py").write_text("VALUE = 1\n")
    pkg = root / "mypkg"
    for folder in ("sub", "__pycache__", ".hidden", "venv", "outputs/run/.hydra", "sweeps"):
        (pkg / folder).mkdir(parents=True)
    (pkg / "__init__.py").write_text("from . import core\n")
    (pkg / "core.py").write_text("X = 1\n")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "sub" / "never_imported.py").write_text("Y = 2\n")  # a _target_ may name it on the worker
    (pkg / "data.csv").write_text("a,b\n")
    (pkg / "__pycache__" / "core.cpython-311.pyc").write_bytes(b"\0")
    (pkg / ".hidden" / "secret.py").write_text("")
    (pkg / "venv" / "pyvenv.cfg").write_text("home = /usr\n")
    (pkg / "venv" / "site.py").write_text("")
    (pkg / "outputs" / "run" / "saved.py").write_text("")
    (pkg / "sweeps" / "old.py").write_text("")
    return root


def _gather(root: Path, *skip: str) -> dict:
    run = subprocess.run(
        [sys.executable, "app.py", *skip],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": ""},
    )
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout)


def test_the_snapshot_holds_the_apps_own_modules_and_no_more(tmp_path: Path) -> None:
    root = _project(tmp_path)
    got = _gather(root, str(root / "mypkg" / "sweeps"))
    # The script (under its module name), its sibling, the package whole; not yaml, email, Hydra, the
    # launcher (an editable install here) or anything of the Python installation.
    assert got["modules"] == ["app", "helper", "mypkg"]
    assert got["main"] == "app"
    assert got["files"] == [
        "app.py",
        "helper.py",
        "mypkg/__init__.py",
        "mypkg/core.py",
        "mypkg/sub/__init__.py",
        "mypkg/sub/never_imported.py",
    ]


def test_the_snapshot_hash_changes_with_the_code_only(tmp_path: Path) -> None:
    root = _project(tmp_path)
    first = _gather(root)["digest"]
    (root / "mypkg" / "data.csv").write_text("changed\n")
    (root / "mypkg" / "__pycache__" / "other.pyc").write_bytes(b"\1")
    assert _gather(root)["digest"] == first
    (root / "mypkg" / "sub" / "never_imported.py").write_text("Y = 3\n")
    assert _gather(root)["digest"] != first


def test_the_snapshot_is_written_once_as_an_import_root(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = _project(tmp_path / "src")
    monkeypatch.syspath_prepend(str(root))
    code = _code.gather(only=["helper", "mypkg"])
    assert code.modules == ["helper", "mypkg"] and code.main is None
    layout = SweepLayout(str(tmp_path / "sweep"))
    entry = _code.write(layout, code)
    assert entry is not None and entry["dir"] == layout.code(code.digest)
    assert (Path(entry["dir"]) / "mypkg" / "sub" / "never_imported.py").read_text() == "Y = 2\n"
    (Path(entry["dir"]) / "marker").write_text("")  # a second write finds the folder and keeps it
    assert _code.write(layout, code) == entry
    assert (Path(entry["dir"]) / "marker").exists()
    assert _code.write(layout, None) is None


def test_oversized_code_is_refused_in_one_line_naming_what_made_it_big(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = _project(tmp_path)
    (root / "mypkg" / "tables.py").write_text("# generated\n" * 3000)
    monkeypatch.syspath_prepend(str(root))
    monkeypatch.setattr(_code, "MAX_BYTES", 20_000)
    with pytest.raises(_code.CodeError) as info:
        _code.gather(only=["helper", "mypkg"])
    message = str(info.value)
    assert "\n" not in message
    assert "'mypkg'" in message and "the biggest mypkg/tables.py" in message
    assert "hydra.launcher.code_modules=" in message and "code_snapshot=off" in message


def test_a_named_module_that_is_not_importable_is_refused() -> None:
    with pytest.raises(_code.CodeError, match="names 'no_such_module_xyz', which is not importable"):
        _code.gather(only=["no_such_module_xyz"])
    with pytest.raises(_code.CodeError, match="names 'math', which has no source file to ship"):
        _code.gather(only=["math"])  # a compiled module


def test_the_worker_puts_the_snapshot_first_and_resolves_main_through_it(tmp_path: Path) -> None:
    snapshot = tmp_path / "code-0123"
    snapshot.mkdir()
    (snapshot / "my_app.py").write_text("class Thing:\n    pass\n")
    entry = {"dir": str(snapshot), "digest": "0123", "modules": ["my_app"], "main": "my_app"}
    script = textwrap.dedent(f"""
        import sys
        from hydra_plugins.hydra_htcondor_launcher import _code
        print(_code.activate({entry!r}))
        assert sys.path[0] == {str(snapshot)!r}
        assert "my_app" not in sys.modules  # imported only when __main__.Thing is asked for
        from hydra.utils import get_class
        print(get_class("__main__.Thing").__module__)
    """)
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    log_line, module = run.stdout.splitlines()
    assert log_line.startswith("running the app's code from the snapshot code-0123 (taken at submission")
    assert module == "my_app"


def test_a_missing_module_becomes_one_line_naming_it_and_how_to_send_it(tmp_path: Path) -> None:
    entry = {"dir": str(tmp_path / "code-0123"), "digest": "0123", "modules": ["my_app", "reader"]}
    try:
        import lazy_helper_not_here  # type: ignore[import-not-found]  # noqa: F401
    except ModuleNotFoundError as exc:
        named = _code.named_failure(exc, entry)
    assert isinstance(named, _code.MissingModuleError)
    message = str(named)
    assert message.startswith("No module named 'lazy_helper_not_here' on this worker: the submitting process")
    assert "hydra.launcher.code_modules=[my_app,reader,lazy_helper_not_here]" in message
    assert "install it where the jobs run" in message and "\n" not in message
    assert _code.named_failure(named, entry) is None  # never named twice
    assert _code.named_failure(ValueError("x"), entry) is None
    # A compiled submodule of a shipped package (the snapshot has .py files only), and no snapshot at all.
    compiled = _code.named_failure(ModuleNotFoundError("x", name="reader._fast"), entry)
    assert "has 'reader' but not 'reader._fast', and it holds .py files only" in str(compiled)
    assert "hydra.launcher.code_modules=[my_app])" in str(compiled)
    unsent = _code.named_failure(ModuleNotFoundError("x", name="mylib"), None)
    assert str(unsent).startswith("No module named 'mylib' on this worker (no code snapshot was sent with")
    assert "hydra.launcher.code_snapshot=always" in str(unsent)


def test_a_data_file_read_next_to_the_shipped_code_is_named(tmp_path: Path) -> None:
    folder = tmp_path / "code-0123"
    entry = {"dir": str(folder), "digest": "0123", "modules": ["reader"]}
    try:
        (folder / "table.csv").read_text()
    except FileNotFoundError as exc:
        named = _code.named_failure(exc, entry)
    assert isinstance(named, _code.CodeDataFileError)
    assert str(named).startswith("table.csv was read next to the app's modules, but jobs run the code from")
    assert "transfer_input_files" in str(named)
    try:
        (tmp_path / "elsewhere.csv").read_text()
    except FileNotFoundError as exc:
        assert _code.named_failure(exc, entry) is None  # the task's own missing file stays its own error
