"""Where the configs live and the typed schemas that Hydra checks overrides against.

Light to import (no torch): ``__main__`` imports it before Hydra composes, so ``--help`` and
``--cfg job`` stay fast. The schemas are registered in Hydra's ConfigStore under ``schema/*`` and
pulled into the YAML files with ``- /schema/<group>@_here_``, so that ``model.lr=abc`` or
``data.source=foo`` fail at composition with a message that names the key and the accepted values.
Closed choices are Enums: checked there once, never again in the code. The values and their comments
live in the YAML files (``conf/``); a schema says only which keys exist and their types.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING

_PACKAGE_DIR = Path(__file__).resolve().parent


def config_dir() -> Path:
    """The directory holding ``config.yaml`` and the config groups.

    An installed wheel carries the configs as ``mnist_app/conf``; a clone (or an editable install, which runs
    from the clone) has them in the top-level ``conf/`` next to the package.
    """
    for candidate in (_PACKAGE_DIR / "conf", _PACKAGE_DIR.parent / "conf"):
        if (candidate / "config.yaml").is_file():
            return candidate
    raise FileNotFoundError(
        f"mnist_app configs not found: neither {_PACKAGE_DIR / 'conf'} nor {_PACKAGE_DIR.parent / 'conf'} "
        "has a config.yaml (a broken install?)"
    )


class DataSource(str, Enum):
    """Where the images come from (see ``conf/data/mnist.yaml``)."""

    auto = "auto"
    full = "full"
    bundled = "bundled"


class SchedulerInterval(str, Enum):
    """How often the LR scheduler steps (Lightning's ``interval``)."""

    epoch = "epoch"
    step = "step"


class TestCkpt(str, Enum):
    """Which weights ``app.test`` evaluates: the best checkpoint by val/acc, or the last weights."""

    __test__ = False  # not a pytest test class despite its name

    best = "best"
    last = "last"


class ResumeMode(str, Enum):
    """``app.resume``: continue from the run folder's ``checkpoints/last.ckpt`` when there is one, or always
    start from scratch."""

    auto = "auto"
    never = "never"


class Accelerator(str, Enum):
    """Lightning accelerators this app trains on (``gpu`` is Lightning's alias of ``cuda``)."""

    cpu = "cpu"
    cuda = "cuda"
    gpu = "gpu"


class MatmulPrecision(str, Enum):
    """``torch.set_float32_matmul_precision``: exact fp32, TF32, or bf16-based."""

    highest = "highest"
    high = "high"
    medium = "medium"


class ProfilerName(str, Enum):
    """Lightning's profilers by Trainer name; each value: a class in ``lightning.pytorch.profilers``."""

    simple = "SimpleProfiler"
    advanced = "AdvancedProfiler"
    pytorch = "PyTorchProfiler"


@dataclass
class AppConfig:
    """The app's own switches around the Trainer (``conf/config.yaml``: ``app``)."""

    test: bool = MISSING
    test_ckpt: TestCkpt = MISSING
    resume: ResumeMode = MISSING
    max_minutes_per_start: float | None = MISSING


@dataclass
class ModelConfig:
    """The LightningModule (``_target_``, ``conf/model/*.yaml``) and its keyword arguments; ``net``,
    ``optimizer`` and ``scheduler`` are ``_target_`` configs of their own (the latter two ``_partial_``).
    ``train.build_model`` adds ``hparams``, the run's resolved config."""

    _target_: str = MISSING
    name: str = MISSING
    lr: float = MISSING
    batch_size: int = 64
    net: Any = MISSING
    optimizer: Any = MISSING
    scheduler: Any = None
    scheduler_interval: SchedulerInterval = SchedulerInterval.epoch
    # Interpolated from `device` (conf/model/*.yaml).
    channels_last: bool = MISSING


@dataclass
class DataConfig:
    """The DataModule (``_target_``, ``conf/data/mnist.yaml``) and its keyword arguments;
    ``train.build_datamodule`` passes ``root`` made absolute."""

    _target_: str = MISSING
    source: DataSource = MISSING
    root: str = MISSING
    download: bool = MISSING
    download_timeout: float = MISSING
    val_size: float = MISSING
    bundled_test_size: float = MISSING
    split_seed: int = MISSING
    batch_size: int = MISSING
    test_batch_size: int = MISSING
    num_workers: int = MISSING
    mean: float = MISSING
    std: float = MISSING
    # Interpolated from `device` and `seed` (conf/data/mnist.yaml).
    pin_memory: bool = MISSING
    data_on_device: bool = MISSING
    channels_last: bool = MISSING
    seed: int = MISSING


@dataclass
class DeviceConfig:
    accelerator: Accelerator = MISSING
    devices: int = MISSING
    precision: str = MISSING
    matmul_precision: MatmulPrecision = MISSING
    pin_memory: bool = MISSING
    data_on_device: bool = MISSING
    channels_last: bool = MISSING
    compile: bool = MISSING
    compile_mode: str | None = MISSING
    deterministic: bool = MISSING
    cudnn_benchmark: bool = MISSING


@dataclass
class TrainerConfig:
    """The Trainer arguments that ``conf/trainer/default.yaml`` sets, typed; ``+trainer.<arg>=...`` adds any
    other argument of ``lightning.pytorch.Trainer``, untyped (Lightning checks it)."""

    _target_: str = MISSING
    default_root_dir: Any = MISSING
    # Interpolated from the device group (conf/trainer/default.yaml).
    accelerator: Any = MISSING
    devices: Any = MISSING
    precision: Any = MISSING
    deterministic: Any = MISSING
    benchmark: Any = MISSING
    max_epochs: int = MISSING
    accumulate_grad_batches: int = MISSING
    log_every_n_steps: int = MISSING
    limit_train_batches: float = MISSING
    limit_val_batches: float = MISSING
    limit_test_batches: float = MISSING
    num_sanity_val_steps: int = MISSING
    gradient_clip_val: float | None = MISSING
    enable_checkpointing: bool = MISSING
    enable_progress_bar: bool = MISSING
    profiler: ProfilerName | None = MISSING


def register_configs() -> None:
    """Put the schemas into Hydra's ConfigStore (idempotent)."""
    cs = ConfigStore.instance()
    cs.store(group="schema", name="app", node=AppConfig)
    cs.store(group="schema", name="model", node=ModelConfig)
    cs.store(group="schema", name="data", node=DataConfig)
    cs.store(group="schema", name="device", node=DeviceConfig)
    cs.store(group="schema", name="trainer", node=TrainerConfig)


register_configs()
