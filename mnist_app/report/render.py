"""A loaded sweep as ``summary.csv``, a text table for the log, and a self-contained ``report.html``."""

from __future__ import annotations

import base64
import csv
import html
import io
import math
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeGuard

from hydra_plugins.hydra_htcondor_launcher.view import JobState

from mnist_app.report.collect import DONE, FAILED, FINAL_METRICS, PRUNED, Job, Run, Sweep, slot_rows

SUMMARY_CSV = "summary.csv"
REPORT_HTML = "report.html"
MAX_LOG_ROWS = 20
_ERROR_CHARS = 70


def _col(key: str) -> str:
    return key.replace("/", "_")


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.{digits}g}" if abs(value) < 1e-3 or abs(value) >= 1e5 else f"{value:.{digits}f}"
    return str(value)


def columns(sweep: Sweep) -> list[str]:
    cols = ["job", *sweep.swept, "status", "optimized_metric", *(_col(k) for k in FINAL_METRICS)]
    cols += ["epochs", "wall_time_s", "train_images_per_sec"]
    if sweep.on_htcondor:
        cols += ["host", "attempts", "evictions", "queue_wait_s"]
    if sweep.optuna is not None or sweep.study is not None:
        cols.append("optuna_trial")
    if sweep.study is not None:
        cols += STUDY_COLUMNS
    return [*cols, "error", "job_dir"]


# summary.csv's columns from the study: the trial's state, its last report (step, value), the step it was
# pruned at, and a FAIL's cause as the sweeper recorded it.
STUDY_COLUMNS = [
    "optuna_state",
    "last_reported_step",
    "last_reported_value",
    "pruned_at_step",
    "optuna_failure",
]


def row(sweep: Sweep, job: Job) -> dict[str, Any]:
    out: dict[str, Any] = {"job": job.num, **{k: job.params.get(k) for k in sweep.swept}}
    out["status"] = job.status
    out["optimized_metric"] = job.metric(sweep.metric)
    for key in FINAL_METRICS:
        out[_col(key)] = job.metric(key)
    out["epochs"] = job.metrics.get("epochs")
    out["wall_time_s"] = job.metric("wall_time_s")
    out["train_images_per_sec"] = job.metric("train_images_per_sec")
    if sweep.on_htcondor:
        cj = job.condor
        out["host"] = cj.host if cj else None
        out["attempts"] = cj.starts if cj else None
        out["evictions"] = cj.evictions if cj else None
        out["queue_wait_s"] = cj.queue_wait_s if cj else None
    if sweep.optuna is not None or sweep.study is not None:
        # Both Optuna sweepers (hydra-optuna-sweeper in batches, optuna_stream as slots free up) run trial N
        # as job N.
        out["optuna_trial"] = job.num
    if sweep.study is not None:
        trial = job.trial
        out["optuna_state"] = trial.state if trial else None
        out["last_reported_step"] = trial.last_step if trial else None
        out["last_reported_value"] = trial.last_value if trial else None
        out["pruned_at_step"] = trial.last_step if trial and trial.state == "PRUNED" else None
        out["optuna_failure"] = trial.failure if trial else None
    out["error"] = job.error
    out["job_dir"] = os.path.relpath(job.job_dir, sweep.sweep_dir) if job.job_dir else None
    return out


def _atomic_write(path: Path, data: str | bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp.{os.getpid()}")
    if isinstance(data, bytes):
        tmp.write_bytes(data)
    else:
        tmp.write_text(data, encoding="utf-8")
    tmp.replace(path)


def write_csv(sweep: Sweep) -> Path:
    """``summary.csv``: one row per job, in job order."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns(sweep), lineterminator="\n")
    writer.writeheader()
    for job in sweep.jobs:
        writer.writerow({k: "" if v is None else v for k, v in row(sweep, job).items()})
    path = sweep.sweep_dir / SUMMARY_CSV
    _atomic_write(path, buf.getvalue())
    return path


def _counts_line(sweep: Sweep) -> str:
    counts = ", ".join(f"{n} {name}" for name, n in sweep.counts().items() if n or name in (DONE, FAILED))
    best = sweep.best()
    if best is None:
        where = ""
    else:  # an app that writes no metrics.json is ranked by what its trials returned
        what = sweep.metric if best.metric(sweep.metric) is not None else "objective"
        where = f"; best: job {best.num} ({what} {_fmt(sweep.score(best))})"
    direction = "max" if sweep.maximize else "min"
    return (
        f"sweep {sweep.sweep_dir}: {len(sweep.jobs)} jobs: {counts}; by {sweep.metric} ({direction}){where}"
    )


def _short(text: str | None, limit: int = _ERROR_CHARS) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def table_rows(sweep: Sweep) -> tuple[list[str], list[list[str]]]:
    """The text/HTML table: ranked by the optimised metric, the best first and marked."""
    header = ["", "job", *sweep.swept, "status"]
    if sweep.study is not None:
        header.append("trial")
    header.append(sweep.metric)
    header += [k for k in FINAL_METRICS if k != sweep.metric] + ["epochs", "time_s"]
    if sweep.on_htcondor:
        header += ["host", "attempts", "evicted", "wait_s"]
    errors = any(job.error for job in sweep.jobs)
    if errors:  # no empty column when every job went well
        header.append("error")
    best = sweep.best()
    rows = []
    for job in sweep.ranked():
        cells = ["*" if job is best else "", str(job.num), *(_fmt(job.params.get(k)) for k in sweep.swept)]
        cells.append(job.status)
        if sweep.study is not None:
            cells.append(job.trial.describe() if job.trial else "")
        cells.append(_fmt(job.metric(sweep.metric)))
        cells += [_fmt(job.metric(k)) for k in FINAL_METRICS if k != sweep.metric]
        cells += [_fmt(job.metrics.get("epochs")), _fmt(job.metric("wall_time_s"), 1)]
        if sweep.on_htcondor:
            cj = job.condor
            cells += [
                (cj.host or "") if cj else "",
                str(cj.starts) if cj else "",
                str(cj.evictions) if cj else "",
                _fmt(cj.queue_wait_s, 1) if cj else "",
            ]
        if errors:
            cells.append(_short(job.error))
        rows.append(cells)
    return header, rows


def table_text(sweep: Sweep, max_rows: int = MAX_LOG_ROWS) -> str:
    """Counts on top, then the ranked table (at most ``max_rows`` rows; the rest counted)."""
    header, rows = table_rows(sweep)
    shown = rows[:max_rows]
    widths = [max(len(r[i]) for r in [header, *shown]) for i in range(len(header))]
    lines = [_counts_line(sweep)]
    for cells in [header, *shown]:
        lines.append("  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip())
    if len(rows) > max_rows:
        lines.append(f"... {len(rows) - max_rows} more job(s) in {sweep.sweep_dir / SUMMARY_CSV}")
    if sweep.optuna is not None:
        lines.append(_optuna_line(sweep))
    return "\n".join(lines)


# Pareto solutions shown in the Optuna line; the rest are counted (all are in optimization_results.yaml).
MAX_SOLUTIONS = 5


def _optuna_line(sweep: Sweep) -> str:
    """What optimization_results.yaml says (hydra-optuna-sweeper and optuna_stream write the same): the best
    trial of a single-objective study, or the Pareto front (``solutions``) of a multi-objective one."""
    assert sweep.optuna is not None
    solutions = sweep.optuna.get("solutions")
    if isinstance(solutions, list):
        shown = [
            f"values [{', '.join(_fmt(v) for v in s.get('values') or [])}] at {s.get('params')}"
            for s in solutions[:MAX_SOLUTIONS]
            if isinstance(s, dict)
        ]
        more = f"; ... {len(solutions) - MAX_SOLUTIONS} more" if len(solutions) > MAX_SOLUTIONS else ""
        return (
            f"Optuna: Pareto front of {len(solutions)} trial(s) in optimization_results.yaml: "
            + "; ".join(shown)
            + more
        )
    best = sweep.best()
    trial = f"trial {best.num} (job {best.num})" if best else "no finished trial"
    return (
        f"Optuna: best {trial}; optimization_results.yaml: "
        f"best_value {_fmt(sweep.optuna.get('best_value'))}, "
        f"best_params {sweep.optuna.get('best_params')}"
    )


# --- plots ---

# The timeline's legend: what each state of the launcher is drawn as (a removed job ends as failed), and
# the eviction marks.
WAITING, EVICTED = "waiting", "evicted"
_LEGEND = {
    JobState.IDLE: WAITING,
    JobState.RUNNING: "running",
    JobState.HELD: "held",
    JobState.DISCONNECTED: "disconnected",
    JobState.DONE: DONE,
    JobState.FAILED: FAILED,
    JobState.REMOVED: FAILED,
}
_STATE_COLORS = {
    WAITING: "#c7c7c7",
    "running": "#1f77b4",
    "held": "#ff7f0e",
    "disconnected": "#8c564b",
    EVICTED: "#9467bd",
    DONE: "#2ca02c",
    FAILED: "#d62728",
    PRUNED: "#e377c2",  # the sweeper stopped the trial: a decision of the search, not a failure
}
# How a job's end is marked: done and failed a dot, pruned a diamond (its own colour, in greys too).
_END_MARKERS = {DONE: "o", FAILED: "o", PRUNED: "D"}


def _figure(width: float, height: float) -> Any:
    # The object-oriented API with the Agg canvas: no pyplot, no global backend, no display needed.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _png(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _is_number(value: Any) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _better(sweep: Sweep, a: float, b: float) -> float:
    return max(a, b) if sweep.maximize else min(a, b)


def plot_metric_vs_params(sweep: Sweep) -> str | None:
    params = sweep.swept
    scored = [j for j in sweep.jobs if j.metric(sweep.metric) is not None]
    if not params or not scored:
        return None
    best = sweep.best()
    fig = _figure(4.2 * min(len(params), 3), 3.2 * ((len(params) + 2) // 3))
    axes = fig.subplots((len(params) + 2) // 3, min(len(params), 3), squeeze=False).ravel()
    for ax, key in zip(axes, params, strict=False):
        values = [j.params.get(key) for j in scored]
        ys = [j.metric(sweep.metric) or 0.0 for j in scored]  # scored: never None
        numbers = [float(v) for v in values if _is_number(v)]
        if len(numbers) == len(values):
            # Every job a dot; the line joins the best job at each value (other swept keys vary too).
            ax.scatter(numbers, ys, color="#1f77b4", alpha=0.6, label="jobs")
            top: dict[float, float] = {}
            for x, y in zip(numbers, ys, strict=True):
                top[x] = _better(sweep, top.get(x, y), y)
            xs = sorted(top)
            ax.plot(xs, [top[x] for x in xs], "-", color="#1f77b4", label="best per value")
            if best is not None:
                ax.plot(
                    [best.params.get(key)],
                    [best.metric(sweep.metric)],
                    "*",
                    ms=16,
                    color="#ff7f0e",
                    label=f"best (job {best.num})",
                )
            ax.legend(loc="best", fontsize=8)
            if min(numbers) > 0 and max(numbers) / min(numbers) >= 100:  # e.g. lr 1e-4..1e-1
                ax.set_xscale("log")
        else:  # choices: one bar per value, the best job's metric for that value
            per: dict[str, float] = {}
            for v, y in zip(values, ys, strict=True):
                per[str(v)] = _better(sweep, per.get(str(v), y), y)
            bars = ax.bar(list(per), list(per.values()), color="#1f77b4")
            ax.bar_label(bars, fmt="%.4g", fontsize=8)
        ax.set_xlabel(key)
        ax.set_ylabel(sweep.metric)
        ax.grid(alpha=0.3)
    for ax in axes[len(params) :]:
        ax.set_visible(False)
    return _png(fig)


def plot_val_curves(sweep: Sweep) -> str | None:
    jobs = [j for j in sweep.jobs if j.val_curve]
    if not jobs:
        return None
    best = sweep.best()
    fig = _figure(6, 3.4)
    ax = fig.subplots()
    for job in jobs:
        epochs = [e + 1 for e, _ in job.val_curve]  # Lightning counts from 0; "after epoch 1" reads better
        accs = [a for _, a in job.val_curve]
        label = f"job {job.num}: " + ", ".join(f"{k}={_fmt(job.params.get(k))}" for k in sweep.swept)
        ax.plot(epochs, accs, "-o", ms=4, lw=2.5 if job is best else 1.2, label=label[:60])
    ax.set_xlabel("epoch")
    ax.set_ylabel("val/acc")
    last = max(e for j in jobs for e, _ in j.val_curve) + 1
    ax.set_xlim(0.5, last + 0.5)
    ax.set_xticks(range(1, last + 1, max(1, last // 10)))
    ax.grid(alpha=0.3)
    if len(jobs) <= 20:
        ax.legend(fontsize=7, loc="lower right")
    return _png(fig)


def _time_span(sweep: Sweep) -> tuple[float, float] | None:
    """The HTCondor timeline's first submission and its end (now, while a job is unfinished)."""
    segments = [seg for j in sweep.jobs if j.condor is not None for seg in j.condor.timeline]
    if not segments:
        return None
    t0 = min(seg.start for seg in segments)
    ends = [seg.end for seg in segments if seg.end is not None]
    # An unfinished job's current state lasts until now.
    return t0, time.time() if any(seg.end is None for seg in segments) else max(ends, default=t0)


def _outcome(job: Job) -> str:
    """The colour key of a job's end: pruned, failed or done (the job's own outcome: its task may fail
    where HTCondor saw none)."""
    return job.status if job.status in (PRUNED, FAILED) else DONE


def _legend(ax: Any, keys: Sequence[str], marks: bool = True) -> None:
    """The legend right of the plot: a patch per colour, or (``marks``) the end and eviction marks."""
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    handles: list[Any] = []
    for key in keys:
        if marks and (key in _END_MARKERS or key == EVICTED):
            marker, label = ("X", key) if key == EVICTED else (_END_MARKERS[key], f"{key} (end)")
            handles.append(Line2D([], [], ls="", marker=marker, ms=8, color=_STATE_COLORS[key], label=label))
        else:
            handles.append(Patch(color=_STATE_COLORS[key], label=key))
    ax.legend(handles=handles, fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))


def _prune_tick(ax: Any, job: Job, y: float, t0: float, color: str = _STATE_COLORS[PRUNED]) -> None:
    """A tick where the sweeper pruned the job's trial (its job runs on until HTCondor has removed it)."""
    trial = job.trial
    if job.status == PRUNED and trial is not None and trial.completed is not None:
        # In whole seconds, as the event log counts them.
        ax.plot([math.floor(trial.completed) - t0], [y], "|", color=color, ms=14, mew=2)


def plot_condor_timeline(sweep: Sweep) -> str | None:
    """Every HTCondor submission of every job on one time axis: a bar per state, a cross per eviction, a
    mark where a submission ended (the last one's coloured by the job's outcome; a pruned job's a diamond,
    and a tick where the sweeper pruned it, before HTCondor removed it)."""
    jobs = [j for j in sweep.jobs if j.condor is not None and j.condor.timeline]
    span = _time_span(sweep)
    if not jobs or span is None:
        return None
    t0, now = span
    fig = _figure(9, 0.32 * len(jobs) + 1.6)
    ax = fig.subplots()
    for y, job in enumerate(jobs):
        assert job.condor is not None
        for attempt in job.condor.attempts:
            for seg in attempt.timeline:
                end = now if seg.end is None else seg.end
                if end > seg.start:
                    color = _STATE_COLORS[_LEGEND[seg.state]]
                    ax.broken_barh([(seg.start - t0, end - seg.start)], (y - 0.35, 0.7), color=color)
            for when in attempt.evicted_at:
                ax.plot([when - t0], [y], "X", color=_STATE_COLORS[EVICTED], ms=9)
            if attempt.ended is not None:
                # The job's own outcome marks its last end; an earlier submission's end is HTCondor's.
                if attempt is job.condor.latest:
                    outcome = _outcome(job)
                else:
                    outcome = FAILED if _LEGEND[attempt.record.state] == FAILED else DONE
                ax.plot([attempt.ended - t0], [y], _END_MARKERS[outcome], color=_STATE_COLORS[outcome], ms=8)
        _prune_tick(ax, job, y, t0)
    ax.set_yticks(range(len(jobs)), [f"job {j.num}" for j in jobs], fontsize=8 if len(jobs) > 12 else 10)
    ax.set_ylim(len(jobs) - 0.5, -0.5)  # top to bottom in job order
    ax.set_xlabel("seconds since the first submission")
    ax.grid(axis="x", alpha=0.3)
    pruned = any(job.status == PRUNED for job in jobs)
    _legend(ax, [key for key in _STATE_COLORS if key != PRUNED or pruned])
    return _png(fig)


def plot_slots(sweep: Sweep) -> str | None:
    """The HTCondor runs by execute slot (``collect.slot_rows``): each row one slot, its jobs one after
    another (a bar per run, labelled with the job's number, coloured by the job's outcome), so the gaps
    show how long a slot stayed empty between two jobs."""
    rows = slot_rows(sweep)
    span = _time_span(sweep)
    if not rows or span is None:
        return None
    t0, now = span
    by_num = {job.num: job for job in sweep.jobs}
    fig = _figure(9, 0.42 * len(rows) + 1.6)
    ax = fig.subplots()
    width = max(now - t0, 1.0)
    used: list[str] = []
    for y, row in enumerate(rows):
        for run in row.runs:
            end = now if run.end is None else run.end
            job = by_num[run.num]
            key = _run_key(run, job)
            used += [] if key in used else [key]
            ax.broken_barh(
                [(run.start - t0, end - run.start)], (y - 0.38, 0.76), color=_STATE_COLORS[key], ec="white"
            )
            if (end - run.start) / width > 0.025:  # room for the label
                ax.text(
                    (run.start + end) / 2 - t0,
                    y,
                    str(run.num),
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="white",
                    fontweight="bold",
                )
            if run is row.runs[-1] or row.runs[row.runs.index(run) + 1].num != run.num:
                _prune_tick(ax, job, y, t0, color="#7b1f5e")  # darker: on the pruned job's own bar
    ax.set_yticks(range(len(rows)), [row.label for row in rows], fontsize=8 if len(rows) > 12 else 10)
    ax.set_ylim(len(rows) - 0.5, -0.5)
    ax.set_xlim(0, width * 1.01)
    pruned = any(job.status == PRUNED for job in sweep.jobs)
    ax.set_xlabel(
        "seconds since the first submission (bar: a job's run, labelled with its number, coloured by how it "
        "ended" + ("; tick: where the sweeper pruned it)" if pruned else ")"),
        fontsize=9,
    )
    ax.grid(axis="x", alpha=0.3)
    _legend(ax, [key for key in _STATE_COLORS if key in used], marks=False)
    return _png(fig)


def _run_key(run: Run, job: Job) -> str:
    """A run's colour key in the slot view: how the run ended (the job's own outcome for its last run:
    done, failed or pruned; an earlier run's eviction, hold or end), running while it runs."""
    if run.state is not JobState.RUNNING:
        return _LEGEND[run.state]  # disconnected
    if run.then is None or run.then is JobState.DISCONNECTED:  # a disconnected run may go on
        return "running"
    if run.then is JobState.IDLE:
        return EVICTED  # evicted, or its run ended and HTCondor queued it again
    if run.then is JobState.HELD:
        return "held"
    if run.latest and run.then.final:
        return _outcome(job)
    return _LEGEND.get(run.then, DONE)


def plot_history(sweep: Sweep) -> str | None:
    """The study's optimisation history: each finished trial's objective value in the order the trials
    ended (an asynchronous search ends them out of number order), the best so far as a line, a pruned
    trial at its last reported value, a failed one on the axis. A multi-objective study: one panel per
    objective."""
    study = sweep.study
    if study is None:
        return None
    finished = study.finished()
    if not any(t.state == "COMPLETE" for t in finished) and not any(t.intermediate for t in finished):
        return None
    n_obj = len(study.directions)
    fig = _figure(9, 3.4 * n_obj)
    axes = fig.subplots(n_obj, 1, squeeze=False).ravel()
    xs = list(range(1, len(finished) + 1))
    for k, (ax, direction) in enumerate(zip(axes, study.directions, strict=True)):
        pick = max if direction == "maximize" else min
        best: float | None = None
        best_x: list[int] = []
        best_y: list[float] = []
        done_x, done_y, pruned_x, pruned_y, failed_x = [], [], [], [], []
        for x, trial in zip(xs, finished, strict=True):
            if trial.state == "COMPLETE" and trial.values is not None:
                value = trial.values[k]
                done_x.append(x)
                done_y.append(value)
                best = value if best is None else pick(best, value)
            elif trial.state == "PRUNED" and trial.last_value is not None:
                pruned_x.append(x)
                pruned_y.append(trial.last_value)
            elif trial.state == "FAIL":
                failed_x.append(x)
            if best is not None:
                best_x.append(x)
                best_y.append(best)
        ax.plot(done_x, done_y, "o", color=_STATE_COLORS[DONE], ms=6, label="complete: objective value")
        if pruned_x:
            color = _STATE_COLORS[PRUNED]
            ax.plot(pruned_x, pruned_y, "D", color=color, ms=6, label="pruned: last reported value")
        if failed_x:
            ax.plot(
                failed_x,
                [0.0] * len(failed_x),
                "x",
                color=_STATE_COLORS[FAILED],
                ms=8,
                mew=2,
                transform=ax.get_xaxis_transform(),
                clip_on=False,
                label="failed (no value)",
            )
        if best_x:
            ax.step(best_x, best_y, where="post", color="#ff7f0e", lw=2, label="best so far")
        if len(finished) <= 40:  # each mark named by its trial (= job) number
            for x, trial in zip(xs, finished, strict=True):
                y = trial.values[k] if trial.state == "COMPLETE" and trial.values else trial.last_value
                if y is not None and trial.state != "FAIL":
                    ax.annotate(
                        f"#{trial.number}",
                        (x, y),
                        textcoords="offset points",
                        xytext=(0, 6),
                        ha="center",
                        fontsize=7,
                        color="#555",
                    )
        what = (study.objective or "objective") if n_obj == 1 else f"objective {k}"
        ax.set_title(f"{what} ({direction})", fontsize=9)
        ax.set_ylabel(f"{what} value" if what.startswith("objective") else what)
        ax.set_xlabel("trials in the order they ended (#: trial number = job number)")
        ax.set_xticks(xs if len(xs) <= 30 else xs[:: max(1, len(xs) // 15)])
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="best")
    return _png(fig)


# --- HTML ---

_CSS = """
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #222; }
h1 { font-size: 1.4em; } h2 { font-size: 1.1em; margin-top: 1.6em; }
table { border-collapse: collapse; font-size: 0.85em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; white-space: nowrap; }
th { background: #f0f0f0; } div.table { overflow-x: auto; }
td.text, th.text { text-align: left; white-space: normal; max-width: 40em; }
tr.best { background: #fff3c4; font-weight: bold; } tr.failed { background: #fde2e2; }
tr.pruned { background: #fbe3f3; color: #555; }
div.plots { display: flex; flex-wrap: wrap; gap: 0 2em; align-items: flex-start; }
p.meta { color: #555; } img { max-width: 100%; border: 1px solid #eee; }
"""


def _img(b64: str | None, alt: str) -> str:
    if b64 is None:
        return f"<p class='meta'>({html.escape(alt)}: no data)</p>"
    return f"<img alt='{html.escape(alt)}' src='data:image/png;base64,{b64}'>"


def render_html(sweep: Sweep) -> str:
    header, rows = table_rows(sweep)
    ranked = sweep.ranked()
    errors = header[-1] == "error"
    head = "".join(f"<th{' class=text' if h == 'error' else ''}>{html.escape(h)}</th>" for h in header)
    body = []
    for job, cells in zip(ranked, rows, strict=True):
        cls = "best" if cells[0] == "*" else (job.status if job.status in (FAILED, PRUNED) else "")
        if errors:  # the whole first line of the error, wrapped
            cells = [*cells[:-1], " ".join((job.error or "").split())]
        tds = "".join(
            f"<td{' class=text' if errors and i == len(cells) - 1 else ''}>{html.escape(c)}</td>"
            for i, c in enumerate(cells)
        )
        body.append(f"<tr class='{cls}' data-job='{job.num}'>{tds}</tr>")
    optuna = f"<p>{html.escape(_optuna_line(sweep))}</p>" if sweep.optuna is not None else ""
    sections = [
        (
            "Optimised metric against each swept parameter",
            _img(plot_metric_vs_params(sweep), "metric vs params"),
        ),
        ("Validation accuracy per epoch", _img(plot_val_curves(sweep), "validation curves")),
    ]
    if sweep.study is not None:
        n_obj = len(sweep.study.directions)
        which = f"{n_obj} objectives: one panel each" if n_obj > 1 else (sweep.study.objective or "objective")
        sections.insert(
            0, (f"Optuna optimisation history ({which})", _img(plot_history(sweep), "optimisation history"))
        )
    if sweep.on_htcondor:
        sections.append(("HTCondor job timeline", _img(plot_condor_timeline(sweep), "HTCondor timeline")))
        sections.append(("HTCondor execute slots", _img(plot_slots(sweep), "HTCondor slots")))
    plots = "".join(f"<div><h2>{html.escape(title)}</h2>{img}</div>" for title, img in sections)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Sweep report: {html.escape(sweep.sweep_dir.name)}</title>
<style>{_CSS}</style></head><body>
<h1>Sweep report</h1>
<p class="meta">{html.escape(_counts_line(sweep))}<br>
Generated {time.strftime("%Y-%m-%d %H:%M:%S %Z")}; rows ranked by {html.escape(sweep.metric)}, best first
(highlighted); every job's values are in {SUMMARY_CSV}.</p>
{optuna}
<div class="table"><table id="jobs"><thead><tr>{head}</tr></thead><tbody>
{"".join(body)}
</tbody></table></div>
<div class="plots">{plots}</div>
</body></html>
"""


def write_html(sweep: Sweep) -> Path:
    path = sweep.sweep_dir / REPORT_HTML
    _atomic_write(path, render_html(sweep))
    return path


def write_all(sweep: Sweep) -> Sequence[Path]:
    return [write_csv(sweep), write_html(sweep)]
