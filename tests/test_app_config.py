"""Config composition (Hydra's compose API): every group option, the sweep knob, and bad input."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf

from mnist_app.config import DataSource, config_dir
from mnist_app.train import with_run_dir

MODELS = sorted(p.stem for p in (config_dir() / "model").glob("*.yaml"))
DEVICES = sorted(p.stem for p in (config_dir() / "device").glob("*.yaml"))


def test_config_dir_is_the_repo_conf():
    assert (config_dir() / "config.yaml").is_file()
    assert {"cnn", "lenet5", "mlp", "cnn_large_batch"} <= set(MODELS)
    assert {"cpu", "cuda"} <= set(DEVICES)


def test_defaults(compose_cfg):
    cfg = compose_cfg()
    assert cfg.model.name == "cnn"
    assert cfg.seed == 1
    assert cfg.trainer.max_epochs == 14
    assert cfg.device.accelerator == "cpu"
    assert cfg.data.source == DataSource.auto
    assert cfg.data.batch_size == 64 and cfg.data.test_batch_size == 1000
    assert cfg.optimized_metric == "test/acc"
    # The pytorch/examples recipe.
    assert cfg.model.optimizer._target_ == "torch.optim.Adadelta" and cfg.model.optimizer.lr == 1.0
    assert (
        cfg.model.scheduler._target_ == "torch.optim.lr_scheduler.StepLR" and cfg.model.scheduler.gamma == 0.7
    )


@pytest.mark.parametrize("model", MODELS)
def test_every_model_composes_and_lr_is_the_knob(compose_cfg, model):
    cfg = compose_cfg(f"model={model}", "model.lr=0.123")
    assert cfg.model.name == model
    assert cfg.model.optimizer.lr == 0.123
    assert cfg.model.optimizer._partial_ is True
    assert cfg.data.batch_size == cfg.model.batch_size
    # Resolves fully once the run folder is known (paths.output_dir is Hydra's run folder in a Hydra run).
    resolved = OmegaConf.to_container(with_run_dir(cfg, Path("run")), resolve=True)
    assert resolved["callbacks"]["model_checkpoint"]["dirpath"] == "run/checkpoints"


@pytest.mark.parametrize("device", DEVICES)
def test_every_device_composes(compose_cfg, device):
    cfg = compose_cfg(f"device={device}")
    assert cfg.device.accelerator == device
    if device == "cuda":
        assert cfg.device.precision == "bf16-mixed"
        assert cfg.device.channels_last is True
        assert cfg.device.matmul_precision == "high"
        assert cfg.device.compile is False


@pytest.mark.parametrize("source", ["auto", "full", "bundled"])
def test_data_sources(compose_cfg, source):
    assert compose_cfg(f"data.source={source}").data.source == DataSource(source)


def test_trainer_takes_any_argument_with_plus(compose_cfg):
    cfg = compose_cfg("trainer.accumulate_grad_batches=2", "+trainer.val_check_interval=0.5")
    assert cfg.trainer.accumulate_grad_batches == 2 and cfg.trainer.val_check_interval == 0.5
    assert cfg.trainer._target_ == "lightning.pytorch.Trainer"


def test_device_maps_onto_the_trainer(compose_cfg):
    cfg = with_run_dir(compose_cfg("device=cuda"), Path("run"))
    trainer = OmegaConf.to_container(cfg.trainer, resolve=True, enum_to_str=True)
    assert (trainer["accelerator"], trainer["precision"]) == ("cuda", "bf16-mixed")
    assert (trainer["deterministic"], trainer["benchmark"]) == (False, True)


def test_launcher_local_and_batch_size_override(compose_cfg):
    cfg = compose_cfg("launcher=local", "data.batch_size=128")
    assert cfg.data.batch_size == 128 and cfg.model.batch_size == 64


def test_a_launcher_config_can_switch_device(compose_cfg, tmp_path: Path):
    # The pattern conf/launcher/htcondor.yaml uses: a _global_ launcher config that overrides the device.
    conf = tmp_path / "conf"
    shutil.copytree(config_dir(), conf)
    (conf / "launcher" / "gpu_pool.yaml").write_text(
        "# @package _global_\ndefaults:\n  - override /hydra/launcher: basic\n  - override /device: cuda\n"
    )
    assert compose_cfg("launcher=gpu_pool", conf=conf).device.accelerator == "cuda"
    assert compose_cfg("launcher=gpu_pool", "device=cpu", conf=conf).device.accelerator == "cpu"


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("device=tpu", "device/tpu"),
        ("model=resnet", "model/resnet"),
        ("model.lr=abc", "model.lr"),
        ("trainer.max_epochs=many", "trainer.max_epochs"),
        ("data.source=web", "expected one of [auto, full, bundled]"),
        ("data.download=maybe", "data.download"),
        # Closed choices are Enums: refused here, not checked again in the code.
        ("model.scheduler_interval=daily", "expected one of [epoch, step]"),
        ("app.test_ckpt=first", "expected one of [best, last]"),
        ("device.accelerator=tpu", "expected one of [cpu, cuda, gpu]"),
        ("device.matmul_precision=low", "expected one of [highest, high, medium]"),
        ("trainer.profiler=fast", "expected one of [simple, advanced, pytorch]"),
        ("trainer.accumulate_grad_batches=x", "trainer.accumulate_grad_batches"),
    ],
)
def test_bad_overrides_fail_at_composition(compose_cfg, override, message):
    with pytest.raises(ConfigCompositionException) as err:
        compose_cfg(override)
    text = str(err.value) + str(err.value.__cause__)
    assert message in text
