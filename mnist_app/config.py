"""Where the configs live and the typed schemas that Hydra checks overrides against.

Light to import (no torch): ``__main__`` imports it before Hydra composes, so ``--help`` and
``--cfg job`` stay fast. The schemas are registered in Hydra's ConfigStore under ``schema/*`` and
pulled into the YAML files with ``- /schema/<group>@_here_``, so that ``model.lr=abc`` or
``data.source=foo`` fail at composition with a message that names the key and the accepted values.
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


@dataclass
class ModelConfig:
    # Short name, written to metrics.json.
    name: str = MISSING
    # Learning rate: the one knob to sweep; the optimizer config interpolates it.
    lr: float = MISSING
    # Training batch size of this recipe (data.batch_size follows it unless overridden).
    batch_size: int = 64
    # The torch.nn.Module to train (``_target_`` + its arguments).
    net: Any = MISSING
    # Optimizer factory (``_target_``, ``_partial_: true``); called with the parameters.
    optimizer: Any = MISSING
    # LR scheduler factory (``_partial_: true``) or null; ``total_steps: null`` is filled in at run time.
    scheduler: Any = None
    # How often the scheduler steps: "epoch" (StepLR) or "step" (OneCycleLR, warmup).
    scheduler_interval: str = "epoch"


@dataclass
class DataConfig:
    # auto: full MNIST when present or downloadable, else the bundled 5,000 images; full; bundled.
    source: DataSource = DataSource.auto
    # torchvision's MNIST root (holds MNIST/raw/...); relative paths are relative to the launch directory.
    root: str = "data"
    # Download full MNIST into root when it is missing (source auto/full).
    download: bool = True
    # Seconds to wait for the download servers before giving up (auto then falls back to bundled).
    download_timeout: float = 3.0
    # Validation split taken from the training images: a fraction (<1) or a count (>=1).
    val_size: float = 0.1
    # Test split of the bundled 5,000 images: a fraction (<1) or a count (>=1); full MNIST has its own.
    bundled_test_size: float = 0.2
    # Seed of the train/val/test split; separate from `seed` so that seed sweeps share one test set.
    split_seed: int = 1234
    # Training batch size.
    batch_size: int = 64
    # Validation and test batch size.
    test_batch_size: int = 1000
    # 0: batches are sliced from one in-memory tensor (on the GPU with device=cuda). >0: a classic
    # DataLoader with that many worker processes over the same tensors.
    num_workers: int = 0
    # Normalisation applied per batch.
    mean: float = 0.1307
    std: float = 0.3081


@dataclass
class DeviceConfig:
    # Lightning accelerator: cpu or cuda.
    accelerator: str = "cpu"
    # Number of devices (this app trains on one).
    devices: int = 1
    # Lightning precision: 32-true, bf16-mixed, 16-mixed, ...
    precision: str = "32-true"
    # torch.set_float32_matmul_precision: highest (exact fp32), high (TF32), medium.
    matmul_precision: str = "highest"
    # Pin host memory for the num_workers>0 DataLoader path.
    pin_memory: bool = False
    # Keep the whole uint8 dataset on the device and slice batches there.
    data_on_device: bool = True
    # Convert model and batches to channels_last (faster convolutions with tensor cores).
    channels_last: bool = False
    # torch.compile the network; its compile time is reported separately from steady-state speed.
    compile: bool = False
    # torch.compile mode (null, "default", "reduce-overhead", "max-autotune").
    compile_mode: str | None = None
    # Deterministic algorithms: same seed, same metrics (cheap on CPU, slower on GPU).
    deterministic: bool = True
    # cudnn.benchmark autotuning (fixed input shapes make it pay off on GPU).
    cudnn_benchmark: bool = False


@dataclass
class TrainerConfig:
    # Epochs to train (14 in the pytorch/examples recipe).
    max_epochs: int = 14
    # Log training metrics every n steps (more often costs speed).
    log_every_n_steps: int = 50
    # Show Lightning's progress bar.
    progress_bar: bool = True
    # Redraw the progress bar every n batches (each redraw reads the loss back from the device).
    progress_bar_refresh_rate: int = 10
    # ... but at most every this many seconds (on a GPU, 10 batches take ~10 ms).
    progress_bar_min_interval_s: float = 0.25
    # Lightning's profiler: null (off, and no per-hook cost), simple, advanced or pytorch; the report is
    # written into the run folder.
    profiler: str | None = None
    # Fraction (float) or number (int) of batches per epoch; for quick tries.
    limit_train_batches: float = 1.0
    limit_val_batches: float = 1.0
    limit_test_batches: float = 1.0
    # Validation sanity-check batches before training.
    num_sanity_val_steps: int = 2
    # Clip gradients at this norm (null: off).
    gradient_clip_val: float | None = None
    # Save best (by val/acc) and last checkpoints in the run folder.
    enable_checkpointing: bool = True
    # Evaluate on the test split after training.
    test: bool = True
    # Which weights to test: "best" (by val/acc) or "last".
    test_ckpt: str = "best"
    # Write TensorBoard logs too when tensorboard is installed.
    tensorboard: bool = True


def register_configs() -> None:
    """Put the schemas into Hydra's ConfigStore (idempotent)."""
    cs = ConfigStore.instance()
    cs.store(group="schema", name="model", node=ModelConfig)
    cs.store(group="schema", name="data", node=DataConfig)
    cs.store(group="schema", name="device", node=DeviceConfig)
    cs.store(group="schema", name="trainer", node=TrainerConfig)


register_configs()
