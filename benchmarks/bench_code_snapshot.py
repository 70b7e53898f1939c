"""What the app's code snapshot (``_code``, issue 21) costs the submit side, and what each job carries.

A generated project of 200 modules (a package ``proj`` of 20 subpackages with 10 modules each, ~1.2 KB of
ordinary Python per module: classes, functions, docstrings) is imported by a fresh interpreter that also
imports Hydra and the launcher, as a Hydra app's process would. In that process the benchmark times:

- ``import``: importing the 200 modules (bytecode cached, as from the second run on): the baseline, what
  the app's process pays anyway, measured in the same process;
- ``gather``: ``_code.gather()``: finding the app's modules in ``sys.modules`` (~1,000 entries with Hydra),
  walking the package, reading and hashing every source file;
- ``write``: ``_code.write`` of the snapshot into a new sweep folder (a temp folder renamed into place);
- ``next batch``: gather + write again in the same process into the same sweep folder (a sweeper's next
  batch: unchanged files are not read again, the snapshot folder is found, nothing is written).

Then a *second sweep with unchanged code*: a new process, gather + write into a new sweep folder (nothing
survives between processes, so it costs what the first one did), and into the first sweep's folder (a
re-run of the same sweep: the snapshot is found and not written again). Median of ``--repeats`` processes
each. ``bytes per job`` is what every job transfers for the code (the snapshot folder; HTCondor sends it
with each job).

    python benchmarks/bench_code_snapshot.py [--modules 200] [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

MODULE = '''\
"""Module {name} of the generated project: ordinary code of a research project."""

from __future__ import annotations

import dataclasses
import math


@dataclasses.dataclass
class Config{i}:
    """Settings of part {i}."""

    width: int = {i}
    depth: int = 3
    rate: float = 0.{i}
    name: str = "{name}"


class Model{i}:
    """A model with a few methods."""

    def __init__(self, cfg: Config{i}) -> None:
        self.cfg = cfg
        self.weights = [math.sin(k) for k in range(cfg.width)]

    def forward(self, xs: list[float]) -> list[float]:
        return [x * w + self.cfg.rate for x, w in zip(xs, self.weights)]

    def loss(self, xs: list[float], ys: list[float]) -> float:
        out = self.forward(xs)
        return sum((a - b) ** 2 for a, b in zip(out, ys)) / max(len(ys), 1)

    def describe(self) -> str:
        return f"{{self.cfg.name}}: width {{self.cfg.width}}, depth {{self.cfg.depth}}"


def train_step(model: Model{i}, batch: list[tuple[float, float]]) -> float:
    xs = [x for x, _ in batch]
    ys = [y for _, y in batch]
    return model.loss(xs, ys)


def evaluate(model: Model{i}, data: list[tuple[float, float]], every: int = 10) -> dict[str, float]:
    losses = [train_step(model, data[k : k + every]) for k in range(0, len(data), every)]
    return {{"loss": sum(losses) / max(len(losses), 1), "batches": float(len(losses))}}
'''

INNER = r"""
import importlib, json, sys, time
t = time.perf_counter()
import hydra, omegaconf, cloudpickle  # what a Hydra app's process has imported anyway
from hydra_plugins.hydra_htcondor_launcher import _code, _core  # the launcher, as at launch
from hydra_plugins.hydra_htcondor_launcher._layout import SweepLayout
names = json.loads(sys.argv[1])
t = time.perf_counter()
for name in names:
    importlib.import_module(name)
out = {"import": time.perf_counter() - t, "sys_modules": len(sys.modules)}
t = time.perf_counter()
code = _code.gather()
out["gather"] = time.perf_counter() - t
t = time.perf_counter()
entry = _code.write(SweepLayout(sys.argv[2]), code)
out["write"] = time.perf_counter() - t
t = time.perf_counter()
again = _code.write(SweepLayout(sys.argv[2]), _code.gather())
out["next_batch"] = time.perf_counter() - t
assert again == entry
out.update(files=len(code.files), bytes=code.nbytes, modules=len(code.modules), digest=code.digest)
print(json.dumps(out))
"""


def _project(root: Path, modules: int) -> list[str]:
    """The generated package; returns the names of its modules."""
    per = 10
    names = []
    (root / "proj").mkdir(parents=True)
    (root / "proj" / "__init__.py").write_text('"""The generated project."""\n')
    for sub in range(modules // per):
        folder = root / "proj" / f"part{sub:02d}"
        folder.mkdir()
        (folder / "__init__.py").write_text(f'"""Part {sub}."""\n')
        for k in range(per):
            i = sub * per + k
            (folder / f"mod{k}.py").write_text(MODULE.format(name=f"proj.part{sub:02d}.mod{k}", i=i))
            names.append(f"proj.part{sub:02d}.mod{k}")
    return names


def _run(root: Path, names: list[str], sweep: Path) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": str(root) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.run(
        [sys.executable, "-c", INNER, json.dumps(names), str(sweep)],
        capture_output=True,
        text=True,
        env=env,
        cwd=root,
        timeout=300,
        check=True,
    )
    result: dict[str, float] = json.loads(proc.stdout)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--modules", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-code-") as tmp:
        root = Path(tmp)
        names = _project(root / "project", args.modules)
        first, second_new, second_same = [], [], []
        for rep in range(args.repeats):
            sweep = root / f"sweep{rep}"
            first.append(_run(root / "project", names, sweep))  # the first sweep: a new folder
            second_new.append(_run(root / "project", names, root / f"sweep{rep}b"))  # another new folder
            second_same.append(_run(root / "project", names, sweep))  # the same sweep folder again
        digests = {r["digest"] for r in first + second_new + second_same}
        assert len(digests) == 1, digests  # unchanged code, the same snapshot

        def ms(runs: list[dict[str, float]], key: str) -> float:
            return 1000 * statistics.median(r[key] for r in runs)

        base = ms(first, "import")
        info = first[0]
        print(
            f"project: {info['modules']:.0f} top-level package(s), {info['files']:.0f} files, "
            f"{info['bytes'] / 1024:.0f} KiB; {info['sys_modules']:.0f} modules in sys.modules; "
            f"median of {args.repeats} processes each; Python {sys.version.split()[0]}"
        )
        rows = [
            ("baseline: importing the 200 modules (bytecode cached)", ms(first, "import")),
            ("first sweep: gather (find, read, hash)", ms(first, "gather")),
            ("first sweep: write the snapshot (new sweep folder)", ms(first, "write")),
            ("first sweep: total", ms(first, "gather") + ms(first, "write")),
            ("next batch of the same sweep, same process: gather + write (found)", ms(first, "next_batch")),
            (
                "second sweep, unchanged code, new folder: gather + write",
                ms(second_new, "gather") + ms(second_new, "write"),
            ),
            (
                "second sweep, unchanged code, same folder (re-run): gather + write (found)",
                ms(second_same, "gather") + ms(second_same, "write"),
            ),
        ]
        print()
        print("| step | ms | ratio to the import |")
        print("|---|---|---|")
        for label, value in rows:
            print(f"| {label} | {value:.1f} | {value / base:.2f}x |")
        print()
        print("| bytes per job | code snapshot |")
        print("|---|---|")
        print(
            f"| files, bytes sent with every job | {info['files']:.0f} files, {info['bytes']:.0f} B "
            f"({info['bytes'] / 1024:.0f} KiB) |"
        )


if __name__ == "__main__":
    main()
