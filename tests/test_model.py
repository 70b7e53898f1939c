"""The networks of the model group, instantiated from their configs as train() does."""

from __future__ import annotations

import pytest
import torch
from hydra.utils import instantiate

from mnist_app.config import config_dir

MODELS = sorted(p.stem for p in (config_dir() / "model").glob("*.yaml"))


@pytest.mark.parametrize("model", MODELS)
def test_net_forward_and_optimizer(compose_cfg, model):
    cfg = compose_cfg(f"model={model}")
    net = instantiate(cfg.model.net)
    out = net(torch.randn(5, 1, 28, 28))
    assert out.shape == (5, 10)
    # log-probabilities: rows sum to 1 after exp
    torch.testing.assert_close(out.exp().sum(1), torch.ones(5))
    optimizer = instantiate(cfg.model.optimizer)(net.parameters())
    assert optimizer.param_groups[0]["lr"] == pytest.approx(cfg.model.optimizer.lr)
    assert net.macs_per_image > 0


def test_cnn_is_the_pytorch_examples_net(compose_cfg):
    net = instantiate(compose_cfg("model=cnn").model.net)
    assert [tuple(p.shape) for p in net.parameters()] == [
        (32, 1, 3, 3),
        (32,),
        (64, 32, 3, 3),
        (64,),
        (128, 9216),
        (128,),
        (10, 128),
        (10,),
    ]
    assert (net.dropout1.p, net.dropout2.p) == (0.25, 0.5)


@pytest.mark.parametrize("model", MODELS)
def test_every_model_is_built_from_its_target(compose_cfg, tmp_path, model):
    from hydra.utils import get_class

    from mnist_app.train import build_model, with_run_dir

    cfg = with_run_dir(compose_cfg(f"model={model}", "model.lr=0.05"), tmp_path)
    built = build_model(cfg)
    assert type(built) is get_class(cfg.model._target_)
    assert type(built.net) is get_class(cfg.model.net._target_)
    assert built.optimizer_factory.keywords["lr"] == 0.05
    assert (built.scheduler_factory is None) == (cfg.model.scheduler is None)
    assert built.scheduler_interval == cfg.model.scheduler_interval.value
    # hparams: the run's whole resolved config (Lightning's hparams.yaml, checkpoints).
    assert built.hparams["model"]["lr"] == 0.05 and built.hparams["model"]["optimizer"]["lr"] == 0.05
    assert built.hparams["paths"]["output_dir"] == str(tmp_path)


def test_optimizer_and_scheduler_overrides_reach_the_model(compose_cfg, tmp_path):
    from mnist_app.train import build_model, with_run_dir

    cfg = compose_cfg("model.optimizer._target_=torch.optim.SGD", "model.lr=0.3")
    configured = build_model(with_run_dir(cfg, tmp_path)).configure_optimizers()
    assert type(configured["optimizer"]) is torch.optim.SGD
    assert configured["optimizer"].param_groups[0]["lr"] == 0.3
    assert type(configured["lr_scheduler"]["scheduler"]) is torch.optim.lr_scheduler.StepLR
    without = build_model(with_run_dir(compose_cfg("model.scheduler=null"), tmp_path)).configure_optimizers()
    assert type(without) is torch.optim.Adadelta


@pytest.mark.parametrize("channels_last", [True, False])
def test_device_placement_is_declared_once_and_reaches_model_and_data(compose_cfg, tmp_path, channels_last):
    from mnist_app.train import build_datamodule, build_model, with_run_dir

    cfg = compose_cfg("device=cuda", f"device.channels_last={channels_last}", "seed=7", "model.batch_size=32")
    cfg = with_run_dir(cfg, tmp_path)
    model, datamodule = build_model(cfg), build_datamodule(cfg)
    assert model.channels_last is channels_last and datamodule.channels_last is channels_last
    conv = model.net.conv2.weight  # (64, 32, 3, 3): its two layouts differ
    assert conv.is_contiguous(memory_format=torch.channels_last) is channels_last
    assert (datamodule.pin_memory, datamodule.data_on_device) == (True, True)
    assert (datamodule.seed, datamodule.batch_size) == (7, 32)


def test_datamodule_loads_its_data_once_from_an_absolute_root(compose_cfg, tmp_path, monkeypatch):
    from mnist_app.train import build_datamodule

    monkeypatch.chdir(tmp_path)
    datamodule = build_datamodule(compose_cfg("data.source=bundled", "data.root=rel", "data.val_size=100"))
    # Relative to the launch directory, whatever the working directory is when the data is loaded.
    assert datamodule.root == tmp_path / "rel"
    assert datamodule.arrays is None  # nothing is read before load() (or Lightning's setup)
    arrays = datamodule.load()
    assert arrays.sizes() == (3900, 100, 1000) and arrays.source == "bundled"
    datamodule.setup("fit")
    assert datamodule.load() is arrays
