"""Training throughput: the app's LightningModule through Lightning's Trainer vs a plain PyTorch loop.

Both train the same model (same initial weights) on the same in-memory uint8 data with the same batch
iterator and normalisation, one after the other in this process, alternating, ``--repeats`` times; the best
run of each is reported (the least disturbed by other work on the machine), and the median ratio
of each Lightning run to the plain run just before it. Images/second count training
steps only, after the first step (which carries compilation and autotuning, reported as `first step`).
The Lightning side is built by the app's own ``build_trainer`` from its config (CSV and TensorBoard loggers,
progress bar, logging cadence as in a real run), with validation and checkpointing off so that both sides do
the same work, and the app's ``throughput`` callback replaced by this benchmark's clock.

Data: on CPU the 3,600 training images of the bundled real MNIST subset; on CUDA 60,000 synthetic
images of MNIST's shape (full MNIST cannot be downloaded here). Accuracy (time to 97% validation accuracy)
always uses the bundled real images.

    python benchmarks/bench_training.py    # CPU (and CUDA when available), batch 64 and 1024
    python benchmarks/bench_training.py --devices cuda --compile
"""

from __future__ import annotations

import argparse
import contextlib
import io
import logging
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import lightning as L
import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf, open_dict

from mnist_app.config import config_dir
from mnist_app.data import InMemoryBatches, MnistArrays, full_mnist_present, load_mnist, normalize
from mnist_app.train import build_datamodule, build_model, build_trainer, prepare_runtime, with_run_dir

# Dense bf16 tensor-core peak (FLOP/s) by device name; TF32 is half of it, plain fp32 far less.
PEAK_BF16 = {
    "H200": 989e12,
    "H100 SXM": 989e12,
    "H100 80GB HBM3": 989e12,
    "H100 NVL": 835e12,
    "H100 PCIe": 756e12,
    "H100": 756e12,
    "A100": 312e12,
    "L40S": 362e12,
    "L4": 121e12,
    "A10": 125e12,
}


def compose_cfg(*overrides: str):
    """The app's config; its run folder (checkpoints, logs) is set where a run happens (``with_run_dir``)."""
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        cfg = compose(config_name="config", overrides=list(overrides))
    return with_run_dir(cfg, Path(tempfile.gettempdir()) / "bench_training")


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def throughput_data(device: str, seed: int) -> tuple[torch.Tensor, torch.Tensor, str]:
    if device == "cuda":
        g = torch.Generator().manual_seed(seed)
        images = torch.randint(0, 256, (60000, 28, 28), dtype=torch.uint8, generator=g)
        labels = torch.randint(0, 10, (60000,), generator=g)
        return images, labels, "60,000 synthetic 28x28 images (full MNIST not downloadable here)"
    data = load_mnist(compose_cfg("data.source=bundled").data, Path("unused"))
    return data.train_images, data.train_labels, "3,600 real MNIST training images (bundled subset)"


class StepClock(L.Callback):
    """Same clock as the plain loop: from the end of the first step to the end of training."""

    def __init__(self, device: str) -> None:
        self.device, self.t0, self.images, self.first_step_s, self.elapsed = device, 0.0, 0, 0.0, 0.0
        self._start = 0.0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step == 0 and batch_idx == 0:
            sync(self.device)
            self._start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step == 1:
            sync(self.device)
            self.t0 = time.perf_counter()
            self.first_step_s = self.t0 - self._start
        else:
            self.images += len(batch[1])

    def on_train_end(self, trainer, pl_module) -> None:
        sync(self.device)
        self.elapsed = time.perf_counter() - self.t0


def bench_cfg(device: str, batch_size: int, epochs: int, compile_: bool):
    return compose_cfg(
        f"device={device}",
        f"data.batch_size={batch_size}",
        f"trainer.max_epochs={epochs}",
        "trainer.limit_val_batches=0",
        "trainer.num_sanity_val_steps=0",
        "trainer.enable_checkpointing=false",
        "~callbacks.throughput",  # StepClock times the steps here
        f"device.compile={str(compile_).lower()}",
    )


# A net with next to no arithmetic (multinomial logistic regression): timing it shows each side's fixed
# host-side cost per step, which is what a GPU step at batch 64 is made of.
PROBE_NET = {
    "_target_": "torch.nn.Sequential",
    "_args_": [
        {"_target_": "torch.nn.Flatten"},
        {"_target_": "torch.nn.Linear", "in_features": 784, "out_features": 10},
        {"_target_": "torch.nn.LogSoftmax", "dim": 1},
    ],
}


def probe_cfg(device: str, epochs: int):
    cfg = bench_cfg(device, 64, epochs, False)
    with open_dict(cfg):
        cfg.model.net = OmegaConf.create(PROBE_NET)
        cfg.device.channels_last = False
    return cfg


def run_lightning(cfg, images, labels, device: str) -> tuple[float, float]:
    prepare_runtime(cfg)
    empty = images[:0]
    arrays = MnistArrays(images, labels, empty, labels[:0], empty, labels[:0], "bench", "bench")
    clock = StepClock(device)
    with tempfile.TemporaryDirectory() as tmp:
        cfg = with_run_dir(cfg, Path(tmp))
        torch.manual_seed(cfg.seed)
        model = build_model(cfg)
        trainer = build_trainer(cfg, [clock])
        # The progress bar still renders (its cost counts); only its text is dropped.
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            trainer.fit(model, datamodule=build_datamodule(cfg, arrays))
    return clock.images / clock.elapsed, clock.first_step_s


def alternate(cfg, images, labels, device: str, repeats: int) -> tuple[list, list]:
    """``repeats`` (images/s, first step s) pairs of each side, plain then Lightning in turn."""
    plain_runs, lightning_runs = [], []
    for _ in range(repeats):
        plain_runs.append(run_plain(cfg, images, labels, device))
        lightning_runs.append(run_lightning(cfg, images, labels, device))
    return plain_runs, lightning_runs


def run_plain(cfg, images, labels, device: str) -> tuple[float, float]:
    """The hand-written loop a PyTorch user would write for the same recipe."""
    prepare_runtime(cfg)
    torch.manual_seed(cfg.seed)
    # Same net, same init; used as a plain nn.Module (compiled below like the Lightning side's).
    model = build_model(OmegaConf.merge(cfg, {"device": {"compile": False}}))
    net = model.net.to(device)
    step_fn = torch.compile(net, mode=cfg.device.compile_mode) if cfg.device.compile else net
    optimizer = torch.optim.Adadelta(net.parameters(), lr=cfg.model.lr)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.7)
    batches = InMemoryBatches(images, labels, cfg.data.batch_size, shuffle=True, seed=cfg.seed)
    if device == "cuda":
        batches = batches.to(device, pin_memory=True)
    bf16 = cfg.device.precision == "bf16-mixed"
    net.train()
    t0 = first_step_s = 0.0
    n = step = 0
    sync(device)
    start = time.perf_counter()
    for _ in range(cfg.trainer.max_epochs):
        for x, y in batches:
            x = normalize(x, cfg.data.mean, cfg.data.std, cfg.device.channels_last)
            with torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=bf16):
                loss = F.nll_loss(step_fn(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
            if step == 1:
                sync(device)
                t0 = time.perf_counter()
                first_step_s = t0 - start
            else:
                n += len(y)
        scheduler.step()
    sync(device)
    return n / (time.perf_counter() - t0), first_step_s


class ReachTarget(L.Callback):
    """Stops training at the first validation at or above ``target``; records seconds since fit start."""

    def __init__(self, target: float, key: str = "val/acc") -> None:
        self.target, self.key, self.t0, self.reached_s, self.epoch = target, key, 0.0, None, None

    def on_fit_start(self, trainer, pl_module) -> None:
        self.t0 = time.perf_counter()

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        value = trainer.callback_metrics.get(self.key)
        if trainer.sanity_checking or value is None or self.reached_s is not None:
            return
        if float(value) >= self.target:
            self.reached_s, self.epoch = time.perf_counter() - self.t0, trainer.current_epoch + 1
            trainer.should_stop = True


def time_to_accuracy(device: str, source: str, target: float, max_epochs: int) -> str:
    cfg = compose_cfg(
        f"device={device}",
        f"data.source={source}",
        f"trainer.max_epochs={max_epochs}",
        "trainer.enable_checkpointing=false",
        "trainer.num_sanity_val_steps=0",
    )
    prepare_runtime(cfg)
    arrays = load_mnist(cfg.data, Path(cfg.data.root).resolve())
    reach = ReachTarget(target)
    with tempfile.TemporaryDirectory() as tmp:
        cfg = with_run_dir(cfg, Path(tmp))
        trainer = build_trainer(cfg, [reach])
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            trainer.fit(build_model(cfg), datamodule=build_datamodule(cfg, arrays))
    if reach.reached_s is None:
        return f"not reached in {max_epochs} epochs ({source} data)"
    return f"{reach.reached_s:.1f} s (epoch {reach.epoch}, {source} data, default recipe)"


def device_name(device: str) -> str:
    if device == "cuda":
        return torch.cuda.get_device_name()
    cpu = platform.processor() or platform.machine()
    return f"{cpu}, {os.cpu_count()} CPU cores, torch threads {torch.get_num_threads()}"


def peak_flops(device: str, precision: str) -> float | None:
    if device != "cuda":
        return None
    name = torch.cuda.get_device_name()
    for key, peak in PEAK_BF16.items():
        if key in name:
            return peak if precision.startswith("bf16") else peak / 2
    return None


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--devices", default="auto", help="cpu, cuda, cpu,cuda or auto (cuda when available)")
    parser.add_argument("--batch-sizes", default="64,1024")
    parser.add_argument(
        "--epochs", type=int, default=0, help="epochs per measurement (0: 2 on CPU, 3 on CUDA)"
    )
    parser.add_argument("--repeats", type=int, default=4)
    parser.add_argument("--compile", action="store_true", help="also measure with device.compile=true (CUDA)")
    parser.add_argument("--no-accuracy", action="store_true", help="skip the time-to-accuracy runs")
    parser.add_argument("--no-overhead", action="store_true", help="skip the per-step overhead probe")
    parser.add_argument("--only-overhead", action="store_true", help="run the per-step overhead probe alone")
    parser.add_argument("--cpu-accuracy", action="store_true", help="also time 97%% val accuracy on CPU")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.WARNING)

    devices = args.devices.split(",") if args.devices != "auto" else ["cpu"]
    if args.devices == "auto" and torch.cuda.is_available():
        devices.append("cuda")
    if "cuda" in devices and not torch.cuda.is_available():
        raise SystemExit("--devices cuda: no usable CUDA GPU here")
    batch_sizes = [int(b) for b in args.batch_sizes.split(",")]

    if args.only_overhead:
        batch_sizes, args.no_overhead, args.no_accuracy = [], False, True
    rows = []
    notes = []
    data = {device: throughput_data(device, seed=1) for device in devices}  # read once, for both tables
    for device in devices:
        epochs = args.epochs or (3 if device == "cuda" else 2)
        images, labels, what = data[device]
        notes.append(
            f"{device}: {device_name(device)}; data: {what}; {epochs} epochs per run, best of {args.repeats}"
        )
        for compile_ in [False, True] if (args.compile and device == "cuda") else [False]:
            for bs in batch_sizes:
                cfg = bench_cfg(device, bs, epochs, compile_)
                plain_runs, lightning_runs = alternate(cfg, images, labels, device, args.repeats)
                plain = max(plain_runs)
                light = max(lightning_runs)
                # Each Lightning run against the plain run just before it: robust to slow drifts in load.
                paired = statistics.median(
                    lr[0] / pr[0] for lr, pr in zip(lightning_runs, plain_runs, strict=True)
                )
                macs = getattr(build_model(cfg).net, "macs_per_image", None)
                peak = peak_flops(device, cfg.device.precision)
                frac = f"{light[0] * 6 * macs / peak:.1%}" if (peak and macs) else "-"
                rows.append(
                    (
                        device,
                        cfg.device.precision,
                        "yes" if compile_ else "no",
                        bs,
                        plain[0],
                        light[0],
                        light[0] / plain[0],
                        paired,
                        plain[1],
                        light[1],
                        frac,
                    )
                )
                print(
                    f"  measured {device} batch {bs} compile={compile_}: plain {plain[0]:.0f} img/s, "
                    f"lightning {light[0]:.0f} img/s",
                    flush=True,
                )

    if rows:
        header = (
            "device",
            "precision",
            "compile",
            "batch",
            "plain img/s",
            "Lightning img/s",
            "ratio (best)",
            "ratio (median of pairs)",
            "plain 1st step s",
            "Lightning 1st step s",
            "of peak",
        )
        print()
        print("| " + " | ".join(header) + " |")
        print("|" + "|".join("---" for _ in header) + "|")
        for r in rows:
            print(
                f"| {r[0]} | {r[1]} | {r[2]} | {r[3]} | {r[4]:.0f} | {r[5]:.0f} | {r[6]:.3f} | {r[7]:.3f} | "
                f"{r[8]:.3f} | {r[9]:.3f} | {r[10]} |"
            )
        print()
        for note in notes:
            print("- " + note)
        print(
            "- 'of peak': Lightning img/s x 6 x MACs/image (forward + backward) / the GPU's dense peak "
            "for the precision (bf16 tensor cores; TF32 = half)"
        )

    if not args.no_overhead:
        print()
        print("Fixed cost per training step (batch 64, a linear net with next to no arithmetic):")
        print()
        cols = ("device", "plain us/step", "Lightning us/step", "Lightning's extra us/step")
        print("| " + " | ".join(cols) + " | ratio 0.95 needs a plain step of |")
        print("|---|---|---|---|---|")
        for device in devices:
            images, labels, _ = data[device]
            cfg = probe_cfg(device, epochs=10 if device == "cpu" else 2)
            plain_runs, lightning_runs = alternate(cfg, images, labels, device, args.repeats)
            # Fastest run of each side, as microseconds per step of 64 images.
            plain, light = (1e6 * 64 / max(runs)[0] for runs in (plain_runs, lightning_runs))
            extra = light - plain
            print(
                f"| {device} | {plain:.0f} | {light:.0f} | {extra:.0f} | "
                f">= {max(extra, 0) * 19 / 1000:.1f} ms |"
            )
        print()
        print(
            "- a model whose plain step takes t runs through Lightning at about t / (t + extra) of the plain "
            "speed, unless the device's queue hides the host time (GPU-bound steps)"
        )

    if not args.no_accuracy:
        for device in devices:
            if device == "cpu" and not args.cpu_accuracy:
                continue
            result = time_to_accuracy(device, "bundled", 0.97, max_epochs=10)
            print(f"- {device}: time from fit start to 97% val accuracy: {result}")
            root = Path(os.environ.get("MNIST_DATA_ROOT", "data")).resolve()
            if full_mnist_present(root):
                print(f"- {device}: time to 99% val accuracy: {time_to_accuracy(device, 'full', 0.99, 14)}")
            else:
                print(
                    f"- {device}: time to 99%: full MNIST not on disk under {root} (needs the full dataset)"
                )


if __name__ == "__main__":
    main()
