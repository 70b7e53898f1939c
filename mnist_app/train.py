"""``train(cfg)``: one training run from a composed config, writing its results into the run folder."""

from __future__ import annotations

import json
import logging
import math
import os
import time
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from mnist_app.errors import MnistAppError

log = logging.getLogger(__name__)

# Lightning's profilers (in lightning.pytorch.profilers) by their Trainer names (trainer.profiler=...).
PROFILERS = {"simple": "SimpleProfiler", "advanced": "AdvancedProfiler", "pytorch": "PyTorchProfiler"}


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


def validate(cfg: DictConfig) -> None:
    """Checks the schemas cannot express, before anything heavy is imported or written."""
    if not isinstance(cfg.seed, int) or isinstance(cfg.seed, bool):
        raise MnistAppError(f"seed must be an integer, got {cfg.seed!r}")
    if cfg.model.scheduler_interval not in ("epoch", "step"):
        raise MnistAppError(f"model.scheduler_interval={cfg.model.scheduler_interval!r}: use epoch or step")
    if cfg.trainer.test_ckpt not in ("best", "last"):
        raise MnistAppError(f"trainer.test_ckpt={cfg.trainer.test_ckpt!r}: use best or last")
    if cfg.trainer.profiler not in (None, *PROFILERS):
        raise MnistAppError(
            f"trainer.profiler={cfg.trainer.profiler!r}: use null (off), {', '.join(PROFILERS)}"
        )
    if cfg.device.accelerator not in ("cpu", "cuda", "gpu"):
        raise MnistAppError(f"device.accelerator={cfg.device.accelerator!r}: use cpu or cuda")
    if cfg.data.batch_size < 1 or cfg.data.test_batch_size < 1:
        raise MnistAppError(
            f"data.batch_size={cfg.data.batch_size} / data.test_batch_size={cfg.data.test_batch_size}: "
            "must be >= 1"
        )


def check_device(device_cfg: DictConfig) -> None:
    """Stop with one line when CUDA is asked for but not usable (before Lightning would fail obscurely)."""
    if device_cfg.accelerator not in ("cuda", "gpu"):
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
    torch.set_float32_matmul_precision(cfg.device.matmul_precision)


def build_datamodule(cfg: DictConfig, arrays: Any) -> Any:
    """The app's ``MnistDataModule`` over ``arrays`` (``MnistArrays``) as ``cfg.data``, ``cfg.device`` say."""
    from mnist_app.module import MnistDataModule

    return MnistDataModule(
        arrays,
        batch_size=cfg.data.batch_size,
        test_batch_size=cfg.data.test_batch_size,
        num_workers=cfg.data.num_workers,
        pin_memory=cfg.device.pin_memory,
        data_on_device=cfg.device.data_on_device,
        seed=cfg.seed,
        mean=cfg.data.mean,
        std=cfg.data.std,
        channels_last=cfg.device.channels_last,
    )


def build_model(cfg: DictConfig) -> Any:
    """The app's ``MnistClassifier`` for ``cfg.model`` (compiled when ``device.compile``)."""
    from hydra.utils import instantiate

    from mnist_app.module import MnistClassifier

    model = MnistClassifier(
        net=instantiate(cfg.model.net),
        optimizer=instantiate(cfg.model.optimizer),
        scheduler=instantiate(cfg.model.scheduler) if cfg.model.scheduler is not None else None,
        scheduler_interval=cfg.model.scheduler_interval,
        channels_last=cfg.device.channels_last,
        hparams=OmegaConf.to_container(cfg, resolve=True, enum_to_str=True),  # type: ignore[arg-type]
    )
    if cfg.device.compile:
        model.compile_net(cfg.device.compile_mode)
    return model


def build_trainer(cfg: DictConfig, run_dir: Path, callbacks: list[Any] | None = None) -> tuple[Any, Any]:
    """The app's Lightning ``Trainer`` (loggers, checkpointing, progress bar) and its checkpoint callback."""
    import lightning as L
    from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint
    from lightning.pytorch.loggers import CSVLogger

    from mnist_app.module import NoProfiler, ThrottledProgressBar

    loggers: list[Any] = [CSVLogger(save_dir=str(run_dir), name="csv", version="")]
    if cfg.trainer.tensorboard:
        try:
            from lightning.pytorch.loggers import TensorBoardLogger

            loggers.append(TensorBoardLogger(save_dir=str(run_dir), name="tensorboard", version=""))
        except ModuleNotFoundError:  # tensorboard is optional
            pass

    callbacks = [*(callbacks or []), LearningRateMonitor(logging_interval="epoch")]
    checkpoint = None
    if cfg.trainer.enable_checkpointing:
        checkpoint = ModelCheckpoint(
            dirpath=str(run_dir / "checkpoints"),
            filename="best-epoch{epoch:02d}-acc{val/acc:.4f}",
            auto_insert_metric_name=False,
            monitor="val/acc",
            mode="max",
            save_top_k=1,
            save_last=True,
        )
        callbacks.append(checkpoint)
    if cfg.trainer.progress_bar:
        callbacks.append(
            ThrottledProgressBar(
                refresh_rate=cfg.trainer.progress_bar_refresh_rate,
                min_interval_s=cfg.trainer.progress_bar_min_interval_s,
            )
        )
    profiler: Any = NoProfiler()
    if cfg.trainer.profiler is not None:
        # Lightning's own profilers; their report goes to the run folder (profile-*.txt) and the log.
        from lightning.pytorch import profilers

        profiler_cls = getattr(profilers, PROFILERS[cfg.trainer.profiler])
        profiler = profiler_cls(dirpath=str(run_dir), filename="profile")

    trainer = L.Trainer(
        accelerator=cfg.device.accelerator,
        devices=cfg.device.devices,
        precision=cfg.device.precision,
        deterministic=cfg.device.deterministic,
        benchmark=cfg.device.cudnn_benchmark,
        max_epochs=cfg.trainer.max_epochs,
        limit_train_batches=cfg.trainer.limit_train_batches,
        limit_val_batches=cfg.trainer.limit_val_batches,
        limit_test_batches=cfg.trainer.limit_test_batches,
        num_sanity_val_steps=cfg.trainer.num_sanity_val_steps,
        log_every_n_steps=cfg.trainer.log_every_n_steps,
        gradient_clip_val=cfg.trainer.gradient_clip_val,
        enable_checkpointing=cfg.trainer.enable_checkpointing,
        enable_progress_bar=cfg.trainer.progress_bar,
        logger=loggers,
        callbacks=callbacks,
        profiler=profiler,
        default_root_dir=str(run_dir),
    )
    return trainer, checkpoint


def train(cfg: DictConfig, output_dir: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """Train, validate and test one model as ``cfg`` says; return (and write) the metrics.

    ``output_dir`` defaults to the Hydra run folder. Raises ``MnistAppError`` for bad input.
    """
    t_start = time.perf_counter()
    run_dir = _output_dir(output_dir)
    validate(cfg)
    check_device(cfg.device)
    root = _data_root(cfg.data.root)

    # Heavy imports only now: --help and --cfg job never get here.
    from mnist_app.data import load_mnist
    from mnist_app.module import ThroughputTimer

    prepare_runtime(cfg)
    arrays = load_mnist(cfg.data, root)
    n_train, n_val, n_test = arrays.sizes()
    log.info(
        "data: %s MNIST (%s): %d train / %d val / %d test images",
        arrays.source,
        arrays.reason,
        n_train,
        n_val,
        n_test,
    )
    datamodule = build_datamodule(cfg, arrays)
    model = build_model(cfg)
    timer = ThroughputTimer()
    trainer, checkpoint = build_trainer(cfg, run_dir, [timer])

    t_fit = time.perf_counter()
    trainer.fit(model, datamodule=datamodule)
    fit_time = time.perf_counter() - t_fit
    fitted = {k: _float(v) for k, v in trainer.callback_metrics.items()}

    metrics: dict[str, Any] = {
        "val/acc": fitted.get("val/acc"),
        "val/loss": fitted.get("val/loss"),
        "val/acc_best": _float(checkpoint.best_model_score) if checkpoint is not None else None,
        "epochs": trainer.current_epoch,
        "train_images_per_sec": _float(timer.images_per_sec),
        "first_step_s": timer.first_step_s,
        "fit_time_s": fit_time,
        "data_source": arrays.source,
        "data_source_reason": arrays.reason,
        "train_images": n_train,
        "val_images": n_val,
        "test_images": n_test,
        "model": cfg.model.name,
        "batch_size": cfg.data.batch_size,
        "accelerator": cfg.device.accelerator,
        "precision": cfg.device.precision,
        "compile": bool(cfg.device.compile),
        "seed": cfg.seed,
        "best_checkpoint": checkpoint.best_model_path if checkpoint is not None else None,
        "last_checkpoint": checkpoint.last_model_path if checkpoint is not None else None,
    }
    if cfg.trainer.test:
        ckpt = None
        if checkpoint is not None and cfg.trainer.test_ckpt == "best" and checkpoint.best_model_path:
            ckpt = "best"
        results = trainer.test(model, datamodule=datamodule, ckpt_path=ckpt, verbose=False)
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
