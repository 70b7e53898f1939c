"""Two versions of the launcher, A and B, measured by one benchmark script in the same run, alternating.

Runs SCRIPT [ARGS] with interpreter A, then B, then A, then B ... (--rounds pairs), each time with
``--json FILE`` added (the script writes its rows there: ``[[what, value, notes], ...]``, as
``bench_launcher.py`` and ``bench_sweep_scale.py`` do), and prints one markdown table: every row with A's and
B's median (and each run's value when there are several) and the ratio B/A. A and B are normally two
virtual environments whose editable installs point at two checkouts: the benchmark script is the same file
for both, the launcher it imports (and that the apps it starts with ``sys.executable`` import) is each
interpreter's own. Alternating spreads the load of a shared machine over both sides.

    python benchmarks/bench_ab.py --a /work/wt/base/.venv/bin/python --b .venv/bin/python \\
        -- benchmarks/bench_launcher.py --repeats 3
    python benchmarks/bench_ab.py --a OLD/.venv/bin/python --b NEW/.venv/bin/python --rounds 1 \\
        -- benchmarks/bench_sweep_scale.py --skip-bare --transfer-files

Each run's output goes to the console and to --log-dir (default: a new folder under /var/tmp).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

PROBE = "import hydra_plugins.hydra_htcondor_launcher as m; print(list(m.__path__)[0])"


@dataclass
class Side:
    """One interpreter under test and what it imports."""

    key: str  # "A" or "B"
    python: str
    label: str = ""
    plugin: str = ""  # the folder the launcher package is imported from
    values: dict[str, list[float | str]] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)


@dataclass
class Done:
    """One finished run of the script."""

    name: str  # A1, B1, ...
    start: str
    load0: float
    load1: float
    wall: float
    rc: int
    log: Path


def git(folder: str, *args: str) -> str:
    proc = subprocess.run(["git", "-C", folder, *args], capture_output=True, text=True)
    return proc.stdout.strip() if proc.returncode == 0 else ""


def probe(side: Side) -> None:
    """Which launcher the interpreter imports (from a neutral folder, so that no checkout's cwd leaks in)."""
    proc = subprocess.run(
        [side.python, "-c", PROBE], capture_output=True, text=True, cwd=tempfile.gettempdir()
    )
    if proc.returncode != 0:
        error = proc.stderr.strip()[-500:]
        sys.exit(f"--{side.key.lower()} {side.python}: cannot import the launcher: {error}")
    side.plugin = proc.stdout.strip()
    if not side.label:
        head = git(side.plugin, "rev-parse", "--short", "HEAD") or "?"
        dirty = git(side.plugin, "status", "--porcelain", "--", ".")
        side.label = head + (" + uncommitted changes" if dirty else "")


def run_once(side: Side, name: str, cmd: list[str], log_dir: Path) -> Done:
    """Run the script once with this side's interpreter; its rows are added to the side's values."""
    with tempfile.NamedTemporaryFile(prefix="bench-ab-", suffix=".json", delete=False) as tmp:
        rows_file = Path(tmp.name)
    full = [side.python, *cmd, "--json", str(rows_file)]
    log = log_dir / f"{name}.log"
    start, load0, t0 = time.strftime("%H:%M:%S", time.gmtime()), os.getloadavg()[0], time.perf_counter()
    print(f"\n== {name} ({side.label}) {start} UTC, load {load0:.2f}: {shlex.join(full)}", flush=True)
    with log.open("w") as out:
        out.write(f"$ {shlex.join(full)}\n")
        proc = subprocess.Popen(full, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)
        assert proc.stdout is not None
        for line in proc.stdout:
            out.write(line)
            sys.stdout.write(f"[{name}] {line}")
            sys.stdout.flush()
        rc = proc.wait()
    done = Done(name, start, load0, os.getloadavg()[0], time.perf_counter() - t0, rc, log)
    try:
        rows = json.loads(rows_file.read_text()) if rc == 0 else []
    except (OSError, ValueError):
        rows = []
    finally:
        rows_file.unlink(missing_ok=True)
    for what, value, notes in rows:
        side.values.setdefault(what, []).append(value)
        side.notes[what] = notes
    print(f"== {name}: exit {rc}, {done.wall:.0f} s, load {done.load1:.2f} at the end", flush=True)
    return done


def numbers(values: list[float | str]) -> list[float] | None:
    """The values as numbers, or None when one is a word (such as "yes")."""
    nums = [v for v in values if isinstance(v, (int, float))]
    return nums if len(nums) == len(values) else None


def cell(values: list[float | str]) -> str:
    nums = numbers(values)
    if not values or nums is None:
        return ", ".join(str(v) for v in values) or "-"
    median = f"{statistics.median(nums):.2f}"
    return median if len(nums) == 1 else f"{median} ({', '.join(f'{v:.2f}' for v in nums)})"


def ratio(a: list[float | str], b: list[float | str]) -> str:
    na, nb = numbers(a), numbers(b)
    if not na or not nb:
        return ""
    ma, mb = statistics.median(na), statistics.median(nb)
    return f"{mb / ma:.2f}" if ma > 0 and mb >= 0 else ""  # no ratio of a difference that can be < 0


def table(a: Side, b: Side, notes: bool) -> str:
    order = list(dict.fromkeys([*a.values, *b.values]))
    head = f"| what | A: {a.label} | B: {b.label} | B/A |" + (" notes |" if notes else "")
    lines = [head, "|---|---:|---:|---:|" + ("---|" if notes else "")]
    for what in order:
        va, vb = a.values.get(what, []), b.values.get(what, [])
        row = f"| {what} | {cell(va)} | {cell(vb)} | {ratio(va, vb)} |"
        if notes:
            na, nb = a.notes.get(what, ""), b.notes.get(what, "")
            row += f" {na if na == nb else f'A: {na}; B: {nb}'} |"
        lines.append(row)
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--a", required=True, help="interpreter A (the baseline), e.g. OLD/.venv/bin/python")
    parser.add_argument("--b", required=True, help="interpreter B (the version measured against A)")
    parser.add_argument("--label-a", default="", help="A's name in the table (default: its commit)")
    parser.add_argument("--label-b", default="", help="B's name in the table (default: its commit)")
    parser.add_argument("--rounds", type=int, default=2, help="pairs of runs: A, B, A, B, ...")
    parser.add_argument(
        "--b-first", action="store_true", help="B, A, B, A, ... (a second invocation balances the order)"
    )
    parser.add_argument("--log-dir", help="each run's output (default: a new folder under /var/tmp)")
    parser.add_argument("--out", help="also write the summary (markdown) to this file")
    parser.add_argument("--no-notes", action="store_true", help="no notes column")
    parser.add_argument("script", help="the benchmark script, then its arguments (after --)")
    parser.add_argument("args", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    if args.rounds < 1:
        parser.error(f"--rounds {args.rounds}: expected at least 1")
    # absolute, not resolved: a venv's python is a symlink that must keep its venv path
    a = Side("A", os.path.abspath(args.a), args.label_a)
    b = Side("B", os.path.abspath(args.b), args.label_b)
    for side in (a, b):
        probe(side)
        print(f"{side.key}: {side.python} imports the launcher from {side.plugin} ({side.label})", flush=True)
    if os.path.realpath(a.plugin) == os.path.realpath(b.plugin):
        sys.exit(f"--a and --b both import the launcher from {a.plugin}: nothing to compare")
    log_dir = Path(args.log_dir or tempfile.mkdtemp(prefix="bench-ab-", dir="/var/tmp"))
    log_dir.mkdir(parents=True, exist_ok=True)
    cmd = [args.script, *args.args]
    began = time.strftime("%Y-%m-%d %H:%M", time.gmtime())
    pair = (b, a) if args.b_first else (a, b)
    runs = [run_once(side, f"{side.key}{i + 1}", cmd, log_dir) for i in range(args.rounds) for side in pair]

    summary = [
        f"`{shlex.join(sys.argv)}`, {began}-{time.strftime('%H:%M', time.gmtime())} UTC, "
        f"{os.cpu_count()} cores; the runs in order (start UTC, load average at start -> end, wall, exit):",
        "",
        *(
            f"- {r.name} {r.start} load {r.load0:.1f} -> {r.load1:.1f}, {r.wall:.0f} s, exit {r.rc}"
            for r in runs
        ),
        "",
        f"A: {a.python} (launcher from {a.plugin}); B: {b.python} (launcher from {b.plugin}). "
        "Cells: median (each run's value when several).",
        "",
        table(a, b, not args.no_notes),
    ]
    text = "\n".join(summary)
    print(f"\n{text}\n\nlogs: {log_dir}")
    if args.out:
        Path(args.out).write_text(text + "\n")
    failed = [r.name for r in runs if r.rc != 0]
    if failed:
        sys.exit(f"runs that failed: {', '.join(failed)} (their logs: {log_dir})")


if __name__ == "__main__":
    main()
