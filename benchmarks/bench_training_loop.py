"""Training throughput (images/s): our Lightning loop against a plain PyTorch loop.

Same model (ResNet-18 re-ID net with LFM after conv1), data (the synthetic Market-style set at
96 x 48, batch 32, 2 loader workers), optimizer and number of steps; the Lightning side runs
with the callbacks and CSV logging of a real run (masked-fraction monitor, random state, LR
monitor), without validation or checkpoints. Runs alternate to share out machine noise; the
table shows medians. Target: Lightning at least 0.95 of the plain loop.

Run: .venv/bin/python benchmarks/bench_training_loop.py [--steps 30] [--repeats 2]
"""

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import Callback, LearningRateMonitor
from lightning.pytorch.loggers import CSVLogger

from lfm.callbacks import MaskedFractionMonitor
from lfm.data.datamodule import ReIDDataModule
from lfm.models.reid import ReIDModule, build_optimizer
from lfm.randomness import RandomStateCallback

ROOT = Path(__file__).resolve().parents[1] / "data" / "synthetic" / "market_style_seed0"
WARMUP_STEPS = 5
TARGET = 0.95
MODEL = dict(
    backbone="resnet18", lfm={"after": "conv1", "p": 0.5, "mask_ratio": 0.5, "fill": "random"},
    optimizer={"name": "sgd", "lr": 0.05}, scheduler={"name": "constant"},
)


def datamodule() -> ReIDDataModule:
    data = ReIDDataModule(
        str(ROOT), image_size=(96, 48), batch_size=32, num_workers=2, pad=5,
        synthetic={"preset": "market_style", "seed": 0},
    )
    data.prepare_data()
    data.setup("fit")
    return data


class StepClock(Callback):
    """Wall time from the end of the warm-up steps to the end of the last step."""

    def __init__(self):
        self.start = self.end = 0.0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if batch_idx == WARMUP_STEPS - 1:
            self.start = time.perf_counter()
        self.end = time.perf_counter()


def lightning_images_per_second(data: ReIDDataModule, steps: int) -> float:
    torch.manual_seed(0)
    model = ReIDModule(**MODEL, num_classes=data.num_classes)
    clock = StepClock()
    with tempfile.TemporaryDirectory() as logs:
        trainer = L.Trainer(
            max_epochs=1, limit_train_batches=steps, limit_val_batches=0, num_sanity_val_steps=0,
            logger=CSVLogger(logs), enable_checkpointing=False, enable_progress_bar=False,
            enable_model_summary=False, accelerator="cpu", log_every_n_steps=10,
            callbacks=[clock, MaskedFractionMonitor(), RandomStateCallback(0), LearningRateMonitor()],
        )
        trainer.fit(model, train_dataloaders=data.train_dataloader())
    return (steps - WARMUP_STEPS) * data.batch_size / (clock.end - clock.start)


def plain_images_per_second(data: ReIDDataModule, steps: int) -> float:
    torch.manual_seed(0)
    net = ReIDModule(**MODEL, num_classes=data.num_classes).net.train()
    optimizer = build_optimizer(net, MODEL["optimizer"], MODEL["scheduler"], max_epochs=1)["optimizer"]
    start = 0.0
    for step, batch in enumerate(data.train_dataloader()):
        loss = F.cross_entropy(net(batch["image"])["logits"], batch["label"])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if step == WARMUP_STEPS - 1:
            start = time.perf_counter()
        if step == steps - 1:
            break
    return (steps - WARMUP_STEPS) * data.batch_size / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30, help="training steps per run (first 5 not timed)")
    parser.add_argument("--repeats", type=int, default=2, help="runs of each loop, alternating")
    args = parser.parse_args()
    data = datamodule()
    results = {"lightning": [], "plain": []}
    for _ in range(args.repeats):
        results["plain"].append(plain_images_per_second(data, args.steps))
        results["lightning"].append(lightning_images_per_second(data, args.steps))
    plain = statistics.median(results["plain"])
    lightning = statistics.median(results["lightning"])
    print(f"\ntorch {torch.__version__}, CPU, {torch.get_num_threads()} threads; {args.steps} steps x {args.repeats} runs each")
    print(f"| loop | images/s (median) | runs | ratio to plain |")
    print(f"|---|---|---|---|")
    print(f"| plain PyTorch | {plain:.1f} | {', '.join(f'{v:.1f}' for v in results['plain'])} | 1.00 |")
    print(f"| lfm Lightning | {lightning:.1f} | {', '.join(f'{v:.1f}' for v in results['lightning'])} | {lightning / plain:.2f} |")
    verdict = "met" if lightning / plain >= TARGET else "MISSED"
    print(f"target: Lightning >= {TARGET:.2f} of plain -> {lightning / plain:.2f} {verdict}")


if __name__ == "__main__":
    main()
