"""``train(cfg)``: one training run from a composed config, writing its results into the run folder.

The DataModule, the LightningModule, the Trainer, its callbacks and loggers are built from the config's
``_target_`` entries (``conf/data``, ``conf/model``, ``conf/trainer``, ``conf/callbacks``, ``conf/logger``),
as lightning-hydra-template does; the app's own switches are ``app.*``.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from omegaconf import DictConfig, OmegaConf, open_dict

from mnist_app.config import Accelerator, ProfilerName, ResumeMode, TestCkpt
from mnist_app.errors import MnistAppError

if TYPE_CHECKING:
    from mnist_app.data import MnistArrays  # imports torch: not at run time before train()

log = logging.getLogger(__name__)


def _output_dir(output_dir: str | os.PathLike[str] | None) -> Path:
    if output_dir is not None:
        return Path(output_dir)
    from hydra.core.hydra_config import HydraConfig

    if HydraConfig.initialized():
        return Path(HydraConfig.get().runtime.output_dir)
    raise MnistAppError("train() needs an output_dir when it is not called from a Hydra app")


def _data_root(root: str) -> Path:
    from hydra.core.hydra_config import HydraConfig
    from hydra.utils import to_absolute_path

    # Relative to where the user launched the app (Hydra may have changed the working directory).
    return Path(to_absolute_path(root) if HydraConfig.initialized() else os.path.abspath(root))


def with_run_dir(cfg: DictConfig, run_dir: Path) -> DictConfig:
    """A copy of ``cfg`` whose ``paths.output_dir`` (checkpoints, loggers, profiler) is ``run_dir``."""
    cfg = copy.deepcopy(cfg)
    with open_dict(cfg):
        cfg.paths = cfg.get("paths") or {}
        cfg.paths.output_dir = str(run_dir)
    return cfg


def validate(cfg: DictConfig) -> None:
    """Checks the schemas cannot express, before anything heavy is imported or written."""
    # The top level has no schema (it would make `~optimized_metric` and friends fail).
    if not isinstance(cfg.seed, int) or isinstance(cfg.seed, bool):
        raise MnistAppError(f"seed must be an integer, got {cfg.seed!r}")
    if cfg.data.batch_size < 1 or cfg.data.test_batch_size < 1:
        raise MnistAppError(
            f"data.batch_size={cfg.data.batch_size} / data.test_batch_size={cfg.data.test_batch_size}: "
            "must be >= 1"
        )


def check_device(device_cfg: DictConfig) -> None:
    """Stop with one line when CUDA is asked for but not usable (before Lightning would fail obscurely)."""
    if device_cfg.accelerator not in (Accelerator.cuda, Accelerator.gpu):
        return
    import torch

    if not torch.cuda.is_available():
        visible = os.environ.get("CUDA_VISIBLE_DEVICES", "<unset>")
        raise MnistAppError(
            f"device=cuda but no usable CUDA GPU (torch {torch.__version__} built for CUDA "
            f"{torch.version.cuda}, torch.cuda.is_available() is False, CUDA_VISIBLE_DEVICES={visible}); "
            "use device=cpu"
        )
    if torch.cuda.device_count() < int(device_cfg.devices):
        raise MnistAppError(
            f"device.devices={device_cfg.devices} but only {torch.cuda.device_count()} CUDA GPU(s) "
            "are visible"
        )


def _quiet_lightning() -> None:
    """Undo what importing ``lightning`` does to logging: it adds its own console handler, which would print
    every Lightning message twice next to Hydra's handlers (to which the messages propagate anyway)."""
    import warnings

    lightning_logger = logging.getLogger("lightning")
    for handler in list(lightning_logger.handlers):
        if type(handler) is logging.StreamHandler:
            lightning_logger.removeHandler(handler)
    # Lightning 2.6 on torch 2.14 warns about its own use of torch's pytree API.
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)")


def _write_json(path: Path, payload: dict[str, Any]) -> None:
    # Temp file + rename: a reader never sees half a file.
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")
    tmp.replace(path)


def _float(value: Any) -> float | None:
    if value is None:
        return None
    value = float(value)
    return None if math.isnan(value) else value


def prepare_runtime(cfg: DictConfig) -> None:
    """Seeds, matmul precision and logging hygiene, before any model or data is built."""
    import lightning as L
    import torch

    _quiet_lightning()
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    torch.set_float32_matmul_precision(cfg.device.matmul_precision.value)


def _partial(node: DictConfig) -> Any:
    """``node``'s ``_target_`` (nested ``_target_`` entries instantiated) as a partial over its resolved
    arguments: plain values, Enums as their names. The caller adds the run-time arguments, which are passed as
    they are, not copied into a config (callbacks, loggers, the run's config as hparams, MNIST's arrays)."""
    from hydra.utils import instantiate

    arguments = OmegaConf.to_container(node, resolve=True, enum_to_str=True)
    return instantiate(arguments, _partial_=True, _convert_="all")


def build_datamodule(cfg: DictConfig, arrays: MnistArrays | None = None) -> Any:
    """The DataModule of ``cfg.data`` (its ``_target_``), with ``data.root`` made absolute; ``arrays``, when
    given, are served instead of loading them (benchmarks reuse one load)."""
    given = {"arrays": arrays} if arrays is not None else {}
    return _partial(cfg.data)(root=str(_data_root(cfg.data.root)), **given)


def build_model(cfg: DictConfig) -> Any:
    """The LightningModule of ``cfg.model`` (its ``_target_``), recording the run's resolved config as its
    hparams; with ``device.compile``, ``torch.compile`` of it, which ``trainer.fit``/``test`` take as
    Lightning documents. ``cfg`` needs ``paths.output_dir`` (``with_run_dir``)."""
    model = _partial(cfg.model)(hparams=OmegaConf.to_container(cfg, resolve=True, enum_to_str=True))
    if cfg.device.compile:
        import torch

        return torch.compile(model, mode=cfg.device.compile_mode)
    return model


def _entries(cfg: DictConfig, node: str) -> list[tuple[str, DictConfig]]:
    """The named ``_target_`` entries of ``cfg.<node>`` (callbacks, logger); null entries are switched off."""
    group = cfg.get(node)
    entries = []
    for name, entry in (group or {}).items():
        if entry is None:
            continue
        if not isinstance(entry, DictConfig) or "_target_" not in entry:
            raise MnistAppError(f"{node}.{name}: expected a config with a _target_, got {entry!r}")
        entries.append((str(name), entry))
    return entries


def instantiate_callbacks(cfg: DictConfig) -> list[Any]:
    """The callbacks of ``cfg.callbacks`` in order, without those the Trainer switches off: checkpoint
    callbacks with ``trainer.enable_checkpointing=false``, the progress bar with
    ``trainer.enable_progress_bar=false`` (Lightning refuses both at once)."""
    from hydra.utils import get_class, instantiate
    from lightning.pytorch.callbacks import Checkpoint, ProgressBar

    switched_off: list[type] = []
    if not cfg.trainer.enable_checkpointing:
        switched_off.append(Checkpoint)
    if not cfg.trainer.enable_progress_bar:
        switched_off.append(ProgressBar)
    callbacks = []
    for _, entry in _entries(cfg, "callbacks"):
        if not issubclass(get_class(entry._target_), tuple(switched_off)):
            callbacks.append(instantiate(entry))
    return callbacks


def instantiate_loggers(cfg: DictConfig) -> list[Any]:
    """The loggers of ``cfg.logger``; one whose package is not installed (tensorboard) is left out."""
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate

    loggers = []
    for name, entry in _entries(cfg, "logger"):
        try:
            loggers.append(instantiate(entry))
        except InstantiationException as err:
            if not isinstance(err.__cause__, ModuleNotFoundError):
                raise
            log.info("logger.%s left out: %s", name, err.__cause__)
    return loggers


def build_profiler(cfg: DictConfig) -> Any:
    """``trainer.profiler``: null -> the no-op ``NoProfiler``; a name -> Lightning's profiler writing its
    report into the run folder (``*-profile.txt``)."""
    name: ProfilerName | None = cfg.trainer.profiler
    if name is None:
        from mnist_app.callbacks import NoProfiler

        return NoProfiler()
    from lightning.pytorch import profilers

    return getattr(profilers, name.value)(dirpath=cfg.paths.output_dir, filename="profile")


def build_trainer(cfg: DictConfig, callbacks: list[Any] | None = None) -> Any:
    """Lightning's ``Trainer`` from ``cfg.trainer`` (``_target_`` and its arguments), with the callbacks of
    ``cfg.callbacks`` (then ``callbacks``), the loggers of ``cfg.logger`` and the profiler.

    ``cfg`` needs ``paths.output_dir`` (``with_run_dir``).
    """
    from mnist_app.resume import AtomicCheckpointIO

    return _partial(cfg.trainer)(
        callbacks=[*instantiate_callbacks(cfg), *(callbacks or [])],
        logger=instantiate_loggers(cfg),
        profiler=build_profiler(cfg),
        # Checkpoints written with temp file + rename: an eviction's SIGKILL never leaves half a last.ckpt.
        plugins=[AtomicCheckpointIO()],
    )


def train(cfg: DictConfig, output_dir: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """Train, validate and test one model as ``cfg`` says; return (and write) the metrics.

    ``output_dir`` defaults to the Hydra run folder. Raises ``MnistAppError`` for bad input. With
    ``app.resume=auto`` a run folder holding ``checkpoints/last.ckpt`` continues from it
    (``mnist_app.resume``). Raises ``RestartRequested`` (a ``SystemExit`` with the checkpoint code) after
    ``app.max_minutes_per_start`` and ``Interrupted`` (``SystemExit(143)``) after a SIGTERM; ``last.ckpt``
    then holds the last completed epoch.
    """
    t_start = time.perf_counter()
    run_dir = _output_dir(output_dir)
    cfg = with_run_dir(cfg, run_dir)
    validate(cfg)
    check_device(cfg.device)

    # Heavy imports only now: --help and --cfg job never get here.
    from lightning.pytorch.callbacks import ModelCheckpoint
    from lightning.pytorch.utilities.exceptions import SIGTERMException

    from mnist_app.callbacks import ThroughputTimer
    from mnist_app.resume import (
        SIGTERM_EXIT_CODE,
        STARTS_FILE,
        Interrupted,
        RestartRequested,
        ResumeState,
        StartTimeLimit,
        check_settings,
        last_checkpoint_path,
    )

    prepare_runtime(cfg)
    datamodule = build_datamodule(cfg)
    # Loaded now, not at fit: the data is reported (and bad data settings fail) before anything else is built.
    arrays = datamodule.load()
    n_train, n_val, n_test = arrays.sizes()
    log.info(
        "data: %s MNIST (%s): %d train / %d val / %d test images",
        arrays.source,
        arrays.reason,
        n_train,
        n_val,
        n_test,
    )
    model = build_model(cfg)
    resume_state = ResumeState(run_dir, resume_from=None)
    max_minutes = cfg.app.max_minutes_per_start
    time_limit = StartTimeLimit(max_minutes, t_start) if max_minutes is not None else None
    trainer = build_trainer(cfg, callbacks=[resume_state, *([time_limit] if time_limit else [])])
    checkpoint = trainer.checkpoint_callback
    checkpoint = checkpoint if isinstance(checkpoint, ModelCheckpoint) else None
    timer = next((c for c in trainer.callbacks if isinstance(c, ThroughputTimer)), None)
    restart_code = check_settings(max_minutes, checkpoint)
    last = last_checkpoint_path(checkpoint)
    if cfg.app.resume == ResumeMode.auto and last is not None and last.is_file():
        resume_state.resume_from = last
        resume_state.keep_csv_rows(trainer.loggers)
    elif cfg.app.resume == ResumeMode.never:
        (run_dir / STARTS_FILE).unlink(missing_ok=True)  # a fresh run: earlier starts are not its own

    t_fit = time.perf_counter()
    try:
        trainer.fit(model, datamodule=datamodule, ckpt_path=resume_state.resume_from)
    except SIGTERMException:
        raise Interrupted(SIGTERM_EXIT_CODE) from None
    fit_time = time.perf_counter() - t_fit
    resume_state.record(trainer.current_epoch)  # when no epoch was left to train (no on_train_start)
    if time_limit is not None and time_limit.stopped:
        log.warning(
            "stopped after %.1f min (app.max_minutes_per_start=%g), %d of %d epochs done; %s is saved. "
            "Exiting with %d: the HTCondor launcher restarts the job; a local run continues when the same "
            "command is run again with hydra.run.dir=%s",
            (time.perf_counter() - t_start) / 60,
            max_minutes,
            trainer.current_epoch,
            trainer.max_epochs,
            last,
            restart_code,
            run_dir,
        )
        raise RestartRequested(restart_code)
    # A start with no epoch left to train (stopped after its last checkpoint) reports that epoch's metrics.
    fitted = {**resume_state.restored_metrics, **{k: _float(v) for k, v in trainer.callback_metrics.items()}}
    starts = resume_state.starts or []

    metrics: dict[str, Any] = {
        "val/acc": fitted.get("val/acc"),
        "val/loss": fitted.get("val/loss"),
        "val/acc_best": _float(checkpoint.best_model_score) if checkpoint is not None else None,
        "epochs": trainer.current_epoch,
        "train_images_per_sec": _float(timer.images_per_sec) if timer is not None else None,
        "first_step_s": timer.first_step_s if timer is not None else None,
        "fit_time_s": fit_time,
        "data_source": arrays.source,
        "data_source_reason": arrays.reason,
        "train_images": n_train,
        "val_images": n_val,
        "test_images": n_test,
        "model": cfg.model.name,
        "batch_size": cfg.data.batch_size,
        "accelerator": cfg.device.accelerator.value,
        "precision": cfg.device.precision,
        "compile": bool(cfg.device.compile),
        "seed": cfg.seed,
        "best_checkpoint": checkpoint.best_model_path if checkpoint is not None else None,
        "last_checkpoint": checkpoint.last_model_path if checkpoint is not None else None,
        # Starts that reached training (evictions, restarts), each with the epoch it began with.
        "starts": len(starts),
        "resumed_from_epochs": [s["from_epoch"] for s in starts if s["checkpoint"] is not None],
        "start_history": starts,
    }
    if cfg.app.test:
        ckpt = None
        if checkpoint is not None and cfg.app.test_ckpt == TestCkpt.best and checkpoint.best_model_path:
            ckpt = "best"
        try:
            results = trainer.test(model, datamodule=datamodule, ckpt_path=ckpt, verbose=False)
        except SIGTERMException:
            raise Interrupted(SIGTERM_EXIT_CODE) from None
        metrics["test/acc"] = _float(results[0].get("test/acc"))
        metrics["test/loss"] = _float(results[0].get("test/loss"))
        metrics["test_weights"] = ckpt or "last"
    metrics["wall_time_s"] = time.perf_counter() - t_start
    _write_json(run_dir / "metrics.json", metrics)

    def fmt(key: str) -> str:
        value = metrics.get(key)
        return "n/a" if value is None else f"{value:.4f}"

    log.info(
        "done: %s on %s MNIST, %d epochs in %.1f s (%.0f train images/s): val/acc %s, test/acc %s, "
        "test/loss %s "
        "-> %s",
        cfg.model.name,
        arrays.source,
        metrics["epochs"],
        metrics["wall_time_s"],
        metrics["train_images_per_sec"] or float("nan"),
        fmt("val/acc"),
        fmt("test/acc"),
        fmt("test/loss"),
        run_dir / "metrics.json",
    )
    return metrics
