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
