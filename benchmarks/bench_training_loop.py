"""Training throughput (images/s): our Lightning loop against a plain PyTorch loop.

Same model (ResNet-18 re-ID net with LFM after conv1), data (the synthetic Market-style set at
96 x 48, batch 32, the tensor data pipeline), optimizer and number of steps; the Lightning side runs
with the callbacks and CSV logging of a real run (masked-fraction monitor, random state, LR
monitor), without validation or checkpoints. Runs alternate to share out machine noise; the
table shows medians. Target: Lightning at least 0.95 of the plain loop.
benchmarks/gpu_check.py runs the same two loops on a GPU (ResNet-50, mixed precision, compile).

Run: .venv/bin/python benchmarks/bench_training_loop.py [--steps 30] [--repeats 2]
"""

import argparse
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import Callback, LearningRateMonitor
from lightning.pytorch.loggers import CSVLogger
from torch.utils.data import DataLoader

from lfm.data.datamodule import ReIDDataModule
from lfm.models.optimization import build_optimizer
from lfm.models.reid import ReIDModule
from lfm.runs.callbacks import MaskedFractionMonitor
from lfm.runs.randomness import RandomStateCallback

ROOT = Path(__file__).resolve().parents[1] / "data" / "synthetic" / "market_style_seed0"
WARMUP_STEPS = 5
TARGET = 0.95
PRECISIONS = ("32-true", "bf16-mixed")  # no loss scaling in the plain loop, so no 16-mixed
MODEL = dict(
    backbone="resnet18",
    lfm={"after": "conv1", "p": 0.5, "mask_ratio": 0.5, "fill": "random"},
    optimizer={"name": "sgd", "lr": 0.05},
    scheduler={"name": "constant"},
)


@dataclass(frozen=True)
class LoopSetup:
    """What both loops train: ReIDModule settings, steps (the first WARMUP_STEPS not timed),
    device ("cpu" or "cuda") and Lightning precision (one of PRECISIONS)."""

    model: dict
    num_classes: int
    batch_size: int
    steps: int
    device: str = "cpu"
    precision: str = "32-true"

    def __post_init__(self):
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        if self.steps <= WARMUP_STEPS:
            raise ValueError(f"steps must be more than the {WARMUP_STEPS} warm-up steps, got {self.steps}")

    def images_per_second(self, seconds: float) -> float:
        return (self.steps - WARMUP_STEPS) * self.batch_size / seconds


def synchronize(device: str) -> None:
    """Wait for the device's queued work, so the clock measures it (no-op on the CPU)."""
    if device == "cuda":
        torch.cuda.synchronize()


def datamodule() -> ReIDDataModule:
    data = ReIDDataModule(
        str(ROOT),
        image_size=(96, 48),
        batch_size=32,
        num_workers=2,
        pad=5,
        synthetic={"preset": "market_style", "seed": 0},
    )
    data.prepare_data()
    data.setup("fit")
    return data


class StepClock(Callback):
    """Wall time from the end of the warm-up steps to the end of the last step."""

    def __init__(self, setup: LoopSetup):
        self.setup = setup
        self.start = self.end = 0.0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if batch_idx in (WARMUP_STEPS - 1, self.setup.steps - 1):
            synchronize(self.setup.device)
        if batch_idx == WARMUP_STEPS - 1:
            self.start = time.perf_counter()
        self.end = time.perf_counter()


def lightning_images_per_second(setup: LoopSetup, batches: DataLoader) -> float:
    """Our Lightning training loop on `setup.steps` of `batches`, with a real run's callbacks."""
    torch.manual_seed(0)
    model = ReIDModule(**setup.model, num_classes=setup.num_classes)
    clock = StepClock(setup)
    with tempfile.TemporaryDirectory() as logs:
        trainer = L.Trainer(
            max_epochs=1,
            limit_train_batches=setup.steps,
            limit_val_batches=0,
            num_sanity_val_steps=0,
            logger=CSVLogger(logs),
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            accelerator="gpu" if setup.device == "cuda" else "cpu",
            devices=1,
            precision=setup.precision,
            log_every_n_steps=10,
            callbacks=[clock, MaskedFractionMonitor(), RandomStateCallback(0), LearningRateMonitor()],
        )
        trainer.fit(model, train_dataloaders=batches)
    return setup.images_per_second(clock.end - clock.start)


def plain_images_per_second(setup: LoopSetup, batches: DataLoader) -> float:
    """A plain PyTorch loop over the same network (same memory format, compile and autocast)."""
    torch.manual_seed(0)
    module = ReIDModule(**setup.model, num_classes=setup.num_classes)
    net = module.net.to(setup.device).train()
    optimizer = build_optimizer(net, setup.model["optimizer"], setup.model["scheduler"], max_epochs=1)["optimizer"]
    autocast = torch.autocast(setup.device, dtype=torch.bfloat16, enabled=setup.precision == "bf16-mixed")
    start = 0.0
    for step, batch in enumerate(batches):
        images = module.images({"image": batch["image"].to(setup.device, non_blocking=True)})
        labels = batch["label"].to(setup.device, non_blocking=True)
        with autocast:
            loss = F.cross_entropy(net(images)["logits"], labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if step == WARMUP_STEPS - 1:
            synchronize(setup.device)
            start = time.perf_counter()
        if step == setup.steps - 1:
            break
    synchronize(setup.device)
    return setup.images_per_second(time.perf_counter() - start)


def compare_loops(setup: LoopSetup, batches: DataLoader, repeats: int) -> dict[str, list[float]]:
    """images/s of each loop, `repeats` runs each, alternating plain and Lightning."""
    results = {"plain": [], "lightning": []}
    for _ in range(repeats):
        results["plain"].append(plain_images_per_second(setup, batches))
        results["lightning"].append(lightning_images_per_second(setup, batches))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--steps", type=int, default=30, help=f"training steps per run (first {WARMUP_STEPS} not timed)"
    )
    parser.add_argument("--repeats", type=int, default=2, help="runs of each loop, alternating")
    args = parser.parse_args()
    data = datamodule()
    setup = LoopSetup(MODEL, data.num_classes, data.batch_size, args.steps)
    results = compare_loops(setup, data.train_dataloader(), args.repeats)
    plain = statistics.median(results["plain"])
    lightning = statistics.median(results["lightning"])
    print(
        f"\ntorch {torch.__version__}, CPU, {torch.get_num_threads()} threads; {args.steps} steps x {args.repeats} runs each"
    )
    print("| loop | images/s (median) | runs | ratio to plain |")
    print("|---|---|---|---|")
    print(f"| plain PyTorch | {plain:.1f} | {', '.join(f'{v:.1f}' for v in results['plain'])} | 1.00 |")
    print(
        f"| lfm Lightning | {lightning:.1f} | {', '.join(f'{v:.1f}' for v in results['lightning'])} | {lightning / plain:.2f} |"
    )
    verdict = "met" if lightning / plain >= TARGET else "MISSED"
    print(f"target: Lightning >= {TARGET:.2f} of plain -> {lightning / plain:.2f} {verdict}")


if __name__ == "__main__":
    main()
