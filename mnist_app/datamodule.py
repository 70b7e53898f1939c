"""The DataModule of the app: MNIST loaded once, its three splits as uint8 batches, normalised on the training
device."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import lightning as L
import torch

from mnist_app.data import InMemoryBatches, MnistArrays, load_mnist, make_loader, normalize


def _shuffle_generator(loader: Any) -> torch.Generator:
    """The generator behind a training loader's permutations (``make_loader``'s two kinds of loader)."""
    if isinstance(loader, InMemoryBatches):
        return loader.generator
    generator: torch.Generator = loader.sampler.sampler.generator  # DataLoader(BatchSampler(RandomSampler))
    return generator


class MnistDataModule(L.LightningDataModule):
    """Loads MNIST (``load_mnist``: full or bundled, split once), serves the three splits as uint8 batches and
    normalises them on the training device.

    Built from ``conf/data/mnist.yaml`` (its ``_target_``): the keyword arguments are that file's keys. The
    images are loaded by :meth:`load` (``setup`` calls it; ``train`` calls it first to report the data), or
    given as ``arrays``. With ``data_on_device`` (and no workers) each split is moved to the training device
    once, so per step there is neither a host-to-device copy nor Lightning's generic batch walk.
    """

    def __init__(
        self,
        *,
        source: str,
        root: str,
        download: bool,
        download_timeout: float,
        val_size: float,
        bundled_test_size: float,
        split_seed: int,
        batch_size: int,
        test_batch_size: int,
        num_workers: int,
        pin_memory: bool,
        data_on_device: bool,
        seed: int,
        mean: float,
        std: float,
        channels_last: bool,
        arrays: MnistArrays | None = None,
    ) -> None:
        super().__init__()
        # What load_mnist reads (data.* names); the caller makes `root` absolute (train.build_datamodule).
        self.loading = SimpleNamespace(
            source=source,
            download=download,
            download_timeout=download_timeout,
            val_size=val_size,
            bundled_test_size=bundled_test_size,
            split_seed=split_seed,
        )
        self.root = Path(root)
        self.mean, self.std, self.channels_last = mean, std, channels_last
        self.arrays = arrays
        self.batch_size, self.test_batch_size = batch_size, test_batch_size
        self.num_workers, self.pin_memory = num_workers, pin_memory
        self.data_on_device, self.seed = data_on_device, seed
        self._loaders: dict[str, Any] = {}
        # The training shuffle's generator state from a checkpoint, applied when the loader is built.
        self._train_generator_state: torch.Tensor | None = None

    def load(self) -> MnistArrays:
        """The three splits, loaded on the first call (``MnistAppError`` for unusable data settings)."""
        if self.arrays is None:
            self.arrays = load_mnist(self.loading, self.root)
        return self.arrays

    def setup(self, stage: str) -> None:
        self.load()

    def _device(self) -> torch.device | None:
        if self.num_workers > 0 or not self.data_on_device or self.trainer is None:
            return None
        device = self.trainer.strategy.root_device
        return device if device.type != "cpu" else None

    def _loader(self, split: str) -> Any:
        if split not in self._loaders:
            a = self.load()
            images, labels = {
                "train": (a.train_images, a.train_labels),
                "val": (a.val_images, a.val_labels),
                "test": (a.test_images, a.test_labels),
            }[split]
            train = split == "train"
            self._loaders[split] = make_loader(
                images,
                labels,
                self.batch_size if train else self.test_batch_size,
                shuffle=train,
                seed=self.seed,
                num_workers=self.num_workers,
                pin_memory=self.pin_memory,
                device=self._device(),
            )
            if train and self._train_generator_state is not None:
                _shuffle_generator(self._loaders[split]).set_state(self._train_generator_state)
                self._train_generator_state = None
        return self._loaders[split]

    def state_dict(self) -> dict[str, Any]:
        """The training shuffle's generator state, saved in checkpoints: a resumed run draws the next epoch's
        permutation exactly as an uninterrupted one would."""
        if "train" in self._loaders:
            return {"train_generator": _shuffle_generator(self._loaders["train"]).get_state()}
        return {}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._train_generator_state = state_dict.get("train_generator")
        if self._train_generator_state is not None and "train" in self._loaders:
            _shuffle_generator(self._loaders["train"]).set_state(self._train_generator_state)
            self._train_generator_state = None

    def train_dataloader(self) -> Any:
        return self._loader("train")

    def val_dataloader(self) -> Any:
        return self._loader("val")

    def test_dataloader(self) -> Any:
        return self._loader("test")

    def transfer_batch_to_device(self, batch: Any, device: torch.device, dataloader_idx: int) -> Any:
        # Already on the training device (the in-memory path): nothing to move.
        if isinstance(batch, (tuple, list)) and all(
            isinstance(t, torch.Tensor) and t.device == device for t in batch
        ):
            return batch
        return super().transfer_batch_to_device(batch, device, dataloader_idx)

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        images, labels = batch
        if images.dtype == torch.uint8:
            images = normalize(images, self.mean, self.std, self.channels_last)
        return images, labels
