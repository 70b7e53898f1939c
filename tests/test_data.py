"""Data loading: bundled images via importlib.resources, hand-placed full MNIST files, splits, batches."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from mnist_app.data import (
    FULL_FILES,
    InMemoryBatches,
    full_mnist_present,
    load_bundled,
    load_mnist,
    normalize,
    read_idx,
)
from mnist_app.errors import MnistAppError


@pytest.fixture(scope="module")
def bundled():
    return load_bundled()


def _data_cfg(**kw):
    base = {
        "source": "bundled",
        "root": "unused",
        "download": False,
        "download_timeout": 1.0,
        "val_size": 0.1,
        "bundled_test_size": 0.2,
        "split_seed": 1234,
    }
    base.update(kw)
    return OmegaConf.create(base)


def _write_idx(path: Path, array: np.ndarray, gz: bool) -> None:
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    payload = header + array.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(payload) if gz else payload)


def test_bundled_is_5000_real_digits(bundled):
    images, labels = bundled
    assert images.shape == (5000, 28, 28) and images.dtype == torch.uint8
    assert labels.dtype == torch.int64 and set(labels.tolist()) == set(range(10))
    # Real handwriting: mostly background with bright strokes, not noise.
    assert 0.1 < images.float().mean().item() / 255 < 0.2
    assert (images == 0).float().mean() > 0.7


def test_bundled_split_is_seeded_and_disjoint(tmp_path):
    a = load_mnist(_data_cfg(), tmp_path)
    b = load_mnist(_data_cfg(), tmp_path)
    c = load_mnist(_data_cfg(split_seed=7), tmp_path)
    assert a.sizes() == (3600, 400, 1000)
    assert a.source == "bundled"
    assert torch.equal(a.train_images, b.train_images) and torch.equal(a.test_labels, b.test_labels)
    assert not torch.equal(a.test_images, c.test_images)
    rows = {tuple(x.flatten().tolist()) for x in torch.cat([a.train_images, a.val_images, a.test_images])}
    assert len(rows) > 4900  # the three splits do not share images (a few MNIST digits are duplicates)


def test_hand_placed_full_mnist_in_torchvision_layout(tmp_path, bundled):
    images, labels = bundled
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    # Real digits written as IDX files, gzipped and plain mixed, as torchvision lays them out.
    arrays = [images[:3000].numpy(), labels[:3000].numpy(), images[3000:].numpy(), labels[3000:].numpy()]
    assert not full_mnist_present(tmp_path)
    for i, (name, array) in enumerate(zip(FULL_FILES, arrays, strict=True)):
        _write_idx(raw / (f"{name}.gz" if i % 2 else name), array, gz=bool(i % 2))
    assert full_mnist_present(tmp_path)
    assert torch.equal(read_idx(raw / FULL_FILES[0]), images[:3000])
    for source in ("full", "auto"):
        data = load_mnist(_data_cfg(source=source, val_size=500), tmp_path)
        assert data.source == "full" and "found" in data.reason
        assert data.sizes() == (2500, 500, 2000)
        assert torch.equal(data.test_images, images[3000:])


def test_full_without_files_and_no_download_is_one_clear_error(tmp_path):
    root = tmp_path / "nothing"
    with pytest.raises(
        MnistAppError, match=r"data.source=full but .*nothing/MNIST/raw lacks the MNIST files"
    ):
        load_mnist(_data_cfg(source="full", download=False), root)
    assert not root.exists()


def test_auto_falls_back_to_bundled_and_says_why(tmp_path):
    data = load_mnist(_data_cfg(source="auto", download=False), tmp_path / "none")
    assert data.source == "bundled" and "download=false" in data.reason


def test_auto_download_failure_falls_back(tmp_path, monkeypatch):
    # Boundary fake: no server is reachable (this machine has no internet; elsewhere we force it).
    from mnist_app import data as data_module

    monkeypatch.setattr(data_module, "_mirror_hosts", lambda: [("127.0.0.1", 9)])
    result = load_mnist(_data_cfg(source="auto", download=True, download_timeout=0.5), tmp_path / "none")
    assert result.source == "bundled" and "download failed" in result.reason
    with pytest.raises(MnistAppError, match=r"download .* failed"):
        load_mnist(_data_cfg(source="full", download=True, download_timeout=0.5), tmp_path / "none")


def test_batches_cover_each_image_once_per_epoch_and_reshuffle():
    images = torch.arange(100, dtype=torch.uint8).reshape(100, 1, 1).expand(100, 28, 28).contiguous()
    labels = torch.arange(100)
    batches = InMemoryBatches(images, labels, batch_size=32, shuffle=True, seed=3)
    assert len(batches) == 4
    epochs = [[y for _, y in batches] for _ in range(2)]
    for epoch in epochs:
        assert [len(y) for y in epoch] == [32, 32, 32, 4]
        assert sorted(torch.cat(epoch).tolist()) == list(range(100))
    assert not torch.equal(torch.cat(epochs[0]), torch.cat(epochs[1]))
    again = InMemoryBatches(images, labels, batch_size=32, shuffle=True, seed=3)
    assert torch.equal(torch.cat([y for _, y in again]), torch.cat(epochs[0]))
    for x, y in batches:  # images stay paired with their labels
        assert torch.equal(x[:, 0, 0].long(), y)
    ordered = InMemoryBatches(images, labels, batch_size=40)
    assert next(y.tolist() for _, y in ordered) == list(range(40)) and len(ordered) == 3


def test_normalize_matches_torchvision_transforms(bundled):
    from torchvision import transforms

    images = bundled[0][:8]
    expected = torch.stack(
        [transforms.Normalize((0.1307,), (0.3081,))(transforms.ToTensor()(img.numpy())) for img in images]
    )
    torch.testing.assert_close(normalize(images), expected, rtol=1e-5, atol=1e-5)
    assert normalize(images, channels_last=True).is_contiguous(memory_format=torch.channels_last)


def test_worker_dataloader_path(bundled):
    from mnist_app.data import make_loader

    images, labels = bundled[0][:300], bundled[1][:300]
    loader = make_loader(images, labels, batch_size=64, shuffle=True, seed=0, num_workers=1)
    seen = [y for _, y in loader]
    assert [len(y) for y in seen] == [64, 64, 64, 64, 44]
    assert sorted(torch.cat(seen).tolist()) == sorted(labels.tolist())
