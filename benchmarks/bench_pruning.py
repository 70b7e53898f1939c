"""Pruning vs none: mnist_app's Optuna search on the HTCondor pool, without a pruner and with ASHA.

    CONDOR_POOL_CPUS=4 scripts/condor-pool start; eval "$(scripts/condor-pool env)"   # 4 CPU slots
    python benchmarks/bench_pruning.py --trials 20     # two searches one after the other

The same command twice, one after the other (the baseline is measured in the same run): the app's search
(``hparams_search=optuna``: TPE, its seed, its search space) on the bundled data, ``trainer.max_epochs``
epochs a trial, streaming with ``n_jobs`` trials in flight through ``launcher=htcondor_cpu``; once with
``hydra/sweeper/pruner=none`` and once with ``hydra/sweeper/pruner=asha``. Slot-seconds are each job's
execute to its end (termination, or removal when pruned) from the event logs; best val/acc is the study's
best value (COMPLETE trials only). The per-trial table shows how many epochs each trial reported, i.e. where
pruning stopped it. Both searches ask the same first trials (the sampler's random startup, same seed); later
ones differ once the pruned trials' values reach TPE, and an asynchronous search's order depends on finish
times anyway (README, "Searching on a pool").
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import optuna
from hydra_plugins.hydra_htcondor_launcher.view import read_sweep
from hydra_plugins.hydra_optuna_stream_sweeper.study import JOURNAL_FILE
from optuna.storages.journal import JournalFileBackend, JournalStorage
from optuna.trial import FrozenTrial, TrialState

PRUNERS = ("none", "asha")
TARGET_SLOTS, TARGET_POINTS = 0.6, 0.5  # issue 22: <= 0.6x the slot-seconds, best val/acc within 0.5 points


@dataclass
class Search:
    """One search's outcome."""

    slot_s: dict[int, int]  # busy slot-seconds of each trial's job, from the event logs
    wall: float  # the command, start to exit
    trials: list[FrozenTrial]
    best: float  # the best val/acc, %

    @property
    def total_slot_s(self) -> int:
        return sum(self.slot_s.values())

    def count(self, state: TrialState) -> int:
        return sum(t.state == state for t in self.trials)


def run(pruner: str, folder: Path, args: argparse.Namespace) -> Search:
    sweep = folder / pruner
    cmd = [
        sys.executable,
        "-m",
        "mnist_app",
        "-m",
        "hparams_search=optuna",
        "launcher=htcondor_cpu",
        f"hydra/sweeper/pruner={pruner}",
        "data.source=bundled",
        f"trainer.max_epochs={args.epochs}",
        f"hydra.sweeper.n_trials={args.trials}",
        f"hydra.sweeper.n_jobs={args.jobs}",
        f"hydra.sweeper.sampler.seed={args.seed}",
        f"hydra.launcher.request_memory={args.memory}",
        "hydra.launcher.poll_interval=0.2",
        f"hydra.sweep.dir={sweep}",
        *args.override,
    ]
    began = time.monotonic()
    done = subprocess.run(cmd, cwd=folder, capture_output=True, text=True, check=False)
    wall = time.monotonic() - began
    if done.returncode != 0:
        raise SystemExit(f"{pruner}: exit {done.returncode}\n{done.stdout[-3000:]}{done.stderr[-3000:]}")
    storage = JournalStorage(JournalFileBackend(str(sweep / JOURNAL_FILE)))
    study = optuna.load_study(study_name="mnist_app", storage=storage)
    # Slot-seconds per job (trial number == job number): executing to its end or removal, event logs.
    busy = {
        num: 0 if job.started is None or job.ended is None else round(job.ended - job.started)
        for num, job in read_sweep(str(sweep)).jobs.items()
    }
    return Search(busy, wall, study.get_trials(deepcopy=False), 100 * study.best_value)


def trial_cells(t: FrozenTrial, slot_s: int | None) -> list[str]:
    """A trial's epochs reported, its state, its last val/acc (%), its job's slot-seconds; its parameters."""
    last = t.intermediate_values[max(t.intermediate_values)] if t.intermediate_values else None
    value = t.value if t.value is not None else last
    params = ", ".join(f"{name.rsplit('.', 1)[-1]} {p:.3g}" for name, p in sorted(t.params.items()))
    shown = "-" if value is None else f"{100 * value:.2f}"
    slots = "-" if slot_s is None else str(slot_s)
    return [str(len(t.intermediate_values)), t.state.name.lower(), shown, slots, params]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--jobs", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--seed", type=int, default=1234, help="the TPE sampler's seed (both searches)")
    parser.add_argument("--memory", default="2GB", help="request_memory of each trial's job")
    parser.add_argument("--keep", type=Path, help="run the searches in this folder, kept")
    parser.add_argument("override", nargs="*", help="more overrides for both searches (e.g. data.batch_size)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) if args.keep is None else args.keep
        folder.mkdir(parents=True, exist_ok=True)
        rows = {pruner: run(pruner, folder, args) for pruner in PRUNERS}
    print(
        f"mnist_app, hparams_search=optuna, {args.trials} trials, n_jobs={args.jobs}, "
        f"{args.epochs} epochs a trial, TPE seed {args.seed}, bundled data {' '.join(args.override)}\n"
    )
    print("| pruner | slot-s (execute -> end) | wall s | trials complete / pruned | best val/acc % |")
    print("|---|---:|---:|---:|---:|")
    for pruner, r in rows.items():
        counts = f"{r.count(TrialState.COMPLETE)} / {r.count(TrialState.PRUNED)}"
        print(f"| {pruner} | {r.total_slot_s} | {r.wall:.0f} | {counts} | {r.best:.2f} |")
    base, asha = rows["none"], rows["asha"]
    ratio, diff = asha.total_slot_s / base.total_slot_s, asha.best - base.best
    met = ratio <= TARGET_SLOTS and abs(diff) <= TARGET_POINTS
    print(
        f"\nasha / none: slot-seconds {ratio:.2f}x (target <= {TARGET_SLOTS}x), best val/acc {diff:+.2f} "
        f"points (target within {TARGET_POINTS}): {'met' if met else 'NOT met'}\n"
    )
    print("Per trial (epochs = validation epochs reported; a pruned trial stopped after its last one):\n")
    arm = "epochs | state | val/acc % | slot-s | params"
    print(f"| trial | none: {arm} | asha: {arm} |")
    print("|---|" + "---:|---|---:|---:|---|" * len(rows))
    for number in range(max(len(r.trials) for r in rows.values())):
        cells = []
        for r in rows.values():
            t = next((t for t in r.trials if t.number == number), None)
            cells += ["-"] * 5 if t is None else trial_cells(t, r.slot_s.get(number))
        print(f"| {number} | {' | '.join(cells)} |")


if __name__ == "__main__":
    main()
