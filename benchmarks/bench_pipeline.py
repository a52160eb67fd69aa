"""Data pipelines side by side: the tensor pipeline (decoded-image cache, index batches,
batched augmentation on the device) against the PIL pipeline (decode + augment per image in
loader processes). One table, all rows measured in one run.

1. Training speed of the real `src/train.py` (experiment=lfm_resnet18_synthetic: ResNet-18 +
   LFM, batch 32) at 64 x 32 and 96 x 48, each pipeline, as `train/images_per_second` of one
   epoch (lfm.runs.callbacks.TrainingSpeedMonitor: loading, augmentation, steps, logging, progress
   bar; not validation), against the compute floor: the same network's forward, backward and
   optimizer step in a plain PyTorch loop on batches already in memory. Target: tensor >= 0.90.
2. The loader alone at 256 x 128 on the Market-1501-scale synthetic preset (12,936 training
   images, batch 32, the market1501 recipe's pad 10 + flip): images/s of the PIL DataLoader
   (2 workers: this machine's cores) and of the tensor loader, with its augmentation on this
   machine's CPU and without it (uint8 batches, as handed to a GPU that augments them).
   Target: tensor >= 20x PIL.
3. With --gpu on a CUDA machine: ResNet-50 + LFM, 256 x 128, bf16-mixed + channels_last,
   batch 64, `experiment=lfm_resnet50` on the Market-1501-scale preset: src/train.py's
   images/s against the floor (target >= 0.95), one epoch's training time and the 60-epoch
   projection (target <= 5 min).

Run: .venv/bin/python benchmarks/bench_pipeline.py [--repeats 3] [--gpu]
The datasets are generated under data/synthetic/ on first use, with their caches beside them.
"""

import argparse
import itertools
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from bench_training_loop import WARMUP_STEPS, LoopSetup, plain_images_per_second
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from lfm.data.datamodule import ReIDDataModule
from lfm.runs.pipeline import build_datamodule

PROJECT = Path(__file__).resolve().parents[1]
EPOCHS = 60  # the paper recipe
FLOOR_STEPS = 60
LOADER_SECONDS = 3.0
TRAINING_TARGET, GPU_TRAINING_TARGET, LOADER_TARGET, GPU_PROJECTION_TARGET_MIN = 0.90, 0.95, 20.0, 5.0
CPU_RUN = ("experiment=lfm_resnet18_synthetic",)
TRAINING_IMAGE_SIZES = ((64, 32), (96, 48))
GPU_RUN = (
    "experiment=lfm_resnet50",
    "data=synthetic_market1501",
    "model.pretrained=false",
    "trainer.precision=bf16-mixed",
    "model.channels_last=true",
    "data.batch_size=64",
)


def composed(overrides: tuple[str, ...]):
    """The resolved config src/train.py runs with these overrides."""
    with initialize_config_dir(str(PROJECT / "conf"), version_base="1.3"):
        cfg = compose(
            "train", overrides=[*overrides, f"paths.root_dir={PROJECT}", f"paths.output_dir={PROJECT}/outputs"]
        )
    return cfg


def datamodule(overrides: tuple[str, ...], stage: str = "fit") -> ReIDDataModule:
    """The DataModule of that config (built as src/train.py builds it), with its data generated and set up."""
    data = build_datamodule(OmegaConf.to_container(composed(overrides).data, resolve=True), seed=0)
    data.prepare_data()
    data.setup(stage)
    return data


@dataclass(frozen=True)
class TrainPyRun:
    """One run of src/train.py: its training speed, epoch time and peak resident memory."""

    images_per_second: float
    epoch_seconds: float
    peak_rss_gb: float


def train_py_speed(overrides: tuple[str, ...], run_dir: Path | None = None) -> TrainPyRun:
    """One epoch of the real src/train.py (no test), in a process of its own; its run directory
    (checkpoints) is kept in `run_dir` when given."""
    with tempfile.TemporaryDirectory() as scratch:
        run_dir = run_dir or Path(scratch) / "run"
        command = [
            sys.executable,
            str(PROJECT / "src" / "train.py"),
            *overrides,
            "trainer.max_epochs=1",
            "test=false",
            f"hydra.run.dir={run_dir}",
        ]
        log = Path(scratch) / "train.log"
        with log.open("w") as output:
            process = subprocess.Popen(
                command, cwd=PROJECT, env={**os.environ, "WANDB_MODE": "offline"}, stdout=output, stderr=output
            )
            _, status, usage = os.wait4(process.pid, 0)  # its own resource usage, peak memory included
        if os.waitstatus_to_exitcode(status) != 0:
            raise SystemExit(f"src/train.py {' '.join(overrides)} failed:\n{log.read_text()[-3000:]}")
        metrics = json.loads((run_dir / "metrics.json").read_text())
    return TrainPyRun(metrics["train/images_per_second"], metrics["train/epoch_seconds"], rss_gb(usage))


def rss_gb(usage: resource.struct_rusage) -> float:
    """A process's peak resident memory in GB (Linux reports ru_maxrss in KiB)."""
    return usage.ru_maxrss * 1024 / 1e9


def floor_images_per_second(
    overrides: tuple[str, ...], num_classes: int, device: str, steps: int = FLOOR_STEPS
) -> float:
    """The plain loop over the same network, batches resident on the device (the compute floor)."""
    cfg = composed(overrides)
    model = OmegaConf.to_container(cfg.model, resolve=True)
    height, width = cfg.data.image_size
    batch_size = cfg.data.batch_size
    setup = LoopSetup(model, num_classes, batch_size, steps, device, cfg.trainer.precision)
    generator = torch.Generator().manual_seed(0)
    batches = [
        {
            "image": torch.rand(batch_size, 3, height, width, generator=generator).to(device),
            "label": torch.randint(num_classes, (batch_size,), generator=generator).to(device),
        }
        for _ in range(4)
    ]
    return plain_images_per_second(setup, itertools.islice(itertools.cycle(batches), steps))


@dataclass(frozen=True)
class RecipeSpeed:
    """src/train.py's training against the plain-loop floor on the same network (images/s per run)."""

    floor: list[float]
    runs: list[TrainPyRun]
    images_per_epoch: int

    @property
    def floor_median(self) -> float:
        return statistics.median(self.floor)

    @property
    def train_py_median(self) -> float:
        return statistics.median(run.images_per_second for run in self.runs)

    @property
    def ratio(self) -> float:
        return self.train_py_median / self.floor_median


def recipe_speed(
    overrides: tuple[str, ...],
    device: str,
    repeats: int = 1,
    steps: int | None = None,
    floor_steps: int = FLOOR_STEPS,
    run_dir: Path | None = None,
) -> RecipeSpeed:
    """One epoch of src/train.py with these overrides (its first `steps` batches when given) and the
    floor, `repeats` runs each, interleaved; the last run's directory is kept in `run_dir` when given."""
    data = datamodule(overrides)
    limit = (f"++trainer.limit_train_batches={steps}",) if steps else ()
    floor, runs = [], []
    for repeat in range(repeats):
        floor.append(floor_images_per_second(overrides, data.num_classes, device, floor_steps))
        runs.append(train_py_speed((*overrides, *limit), run_dir if repeat == repeats - 1 else None))
    return RecipeSpeed(floor, runs, len(data.train_set))


def projected_minutes(images_per_second: float, images_per_epoch: int, epochs: int = EPOCHS) -> float:
    """Minutes of `epochs` training epochs of `images_per_epoch` at `images_per_second` (no validation)."""
    return epochs * images_per_epoch / images_per_second / 60


def loader_images_per_second(loader, seconds: float = LOADER_SECONDS) -> float:
    """images/s of iterating `loader` for `seconds` after its first WARMUP_STEPS batches (worker start-up)."""
    batches = itertools.chain.from_iterable(itertools.repeat(loader))
    for _ in range(WARMUP_STEPS):
        next(batches)
    images, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        images += len(next(batches)["label"])
    return images / (time.perf_counter() - start)


def median_of(measure, repeats: int) -> tuple[float, list[float]]:
    runs = [measure() for _ in range(repeats)]
    return statistics.median(runs), runs


def training_rows(
    repeats: int,
    device: str = "cpu",
    image_sizes: tuple[tuple[int, int], ...] = TRAINING_IMAGE_SIZES,
    extra: tuple[str, ...] = (),
    floor_steps: int = FLOOR_STEPS,
) -> list[tuple]:
    """Rows of part 1: per image size, the floor and src/train.py on each pipeline, interleaved
    (`extra`: more overrides, e.g. a smaller dataset)."""
    rows = []
    for height, width in image_sizes:
        overrides = (*CPU_RUN, f"data.image_size=[{height},{width}]", *extra)
        num_classes = datamodule(overrides).num_classes
        runs = {"floor": [], "tensor": [], "pil": []}
        for _ in range(repeats):
            runs["floor"].append(floor_images_per_second(overrides, num_classes, device, floor_steps))
            for pipeline in ("tensor", "pil"):
                runs[pipeline].append(train_py_speed((*overrides, f"data.pipeline={pipeline}")).images_per_second)
        floor = statistics.median(runs["floor"])
        rows.append(
            (
                f"ResNet-18 + LFM {height}x{width}, batch {composed(overrides).data.batch_size}",
                "compute floor (plain loop, batches in memory)",
                floor,
                runs["floor"],
                1.0,
                "",
            )
        )
        for pipeline in ("tensor", "pil"):
            rate = statistics.median(runs[pipeline])
            verdict = ("met" if rate / floor >= TRAINING_TARGET else "MISSED") if pipeline == "tensor" else ""
            rows.append(
                (
                    "",
                    f"src/train.py, data.pipeline={pipeline}",
                    rate,
                    runs[pipeline],
                    rate / floor,
                    f">= {TRAINING_TARGET:.2f}: {verdict}" if verdict else "",
                )
            )
    return rows


def loader_rows(repeats: int, extra: tuple[str, ...] = (), seconds: float = LOADER_SECONDS) -> list[tuple]:
    """Rows of part 2: the loaders alone at 256 x 128 on the Market-1501-scale preset (`extra`: more overrides)."""
    overrides = ("data=synthetic_market1501", *extra)
    tensor = datamodule(overrides)
    pil = datamodule((*overrides, "data.pipeline=pil", "data.num_workers=2"))
    uint8 = tensor.train_dataloader()
    uint8.augment = lambda images, generator: images
    loaders = {"pil": pil.train_dataloader, "tensor": tensor.train_dataloader, "uint8": lambda: uint8}
    runs = {name: [] for name in loaders}
    for _ in range(repeats):
        for name, loader in loaders.items():
            runs[name].append(loader_images_per_second(loader(), seconds))
    base = statistics.median(runs["pil"])
    described = {
        "pil": "PIL: decode + resize + augment per image, 2 worker processes",
        "tensor": "tensor: index batch from the cache + augmentation on this CPU",
        "uint8": "tensor: index batch from the cache (uint8, augmented on the GPU)",
    }
    rows = []
    for name in ("pil", "tensor", "uint8"):
        rate = statistics.median(runs[name])
        target = (
            "" if name == "pil" else f">= {LOADER_TARGET:.0f}x: {'met' if rate / base >= LOADER_TARGET else 'MISSED'}"
        )
        rows.append(
            (
                f"loader alone, 256x128, batch {tensor.batch_size}" if name == "pil" else "",
                described[name],
                rate,
                runs[name],
                rate / base,
                target,
            )
        )
    return rows


def gpu_rows(
    repeats: int, overrides: tuple[str, ...] = GPU_RUN, device: str = "cuda", floor_steps: int = FLOOR_STEPS
) -> list[tuple]:
    """Rows of part 3: the paper recipe (ResNet-50 on a GPU), src/train.py's epoch against the floor, and the
    60-epoch projection. gpu_check.py --quick runs them with tiny overrides on the CPU."""
    speed = recipe_speed(overrides, device, repeats, floor_steps=floor_steps)
    epoch = statistics.median(run.epoch_seconds for run in speed.runs)
    images = speed.images_per_epoch
    projection = projected_minutes(speed.train_py_median, images)
    cfg = composed(overrides)
    height, width = cfg.data.image_size
    where = torch.cuda.get_device_name() if device == "cuda" else "CPU"
    name = (
        f"{cfg.model.backbone} + LFM {height}x{width} {cfg.trainer.precision}"
        f"{' + channels_last' if cfg.model.channels_last else ''}, batch {cfg.data.batch_size}, {where}"
    )
    rate, ratio = speed.train_py_median, speed.ratio
    return [
        (name, f"compute floor (plain loop, batches on the {device})", speed.floor_median, speed.floor, 1.0, ""),
        (
            "",
            f"src/train.py {overrides[0]}, tensor",
            rate,
            [run.images_per_second for run in speed.runs],
            ratio,
            f">= {GPU_TRAINING_TARGET:.2f}: {'met' if ratio >= GPU_TRAINING_TARGET else 'MISSED'}",
        ),
        (
            "",
            f"one epoch: {epoch:.1f} s; {EPOCHS} epochs of {images} images at {rate:.0f} images/s: {projection:.1f} min",
            0.0,
            [],
            0.0,
            f"<= {GPU_PROJECTION_TARGET_MIN:.0f} min: {'met' if projection <= GPU_PROJECTION_TARGET_MIN else 'MISSED'}",
        ),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="runs of each row, interleaved; the table shows medians")
    parser.add_argument("--gpu", action="store_true", help="add the ResNet-50 rows on this machine's CUDA GPU")
    args = parser.parse_args()
    if args.gpu and not torch.cuda.is_available():
        raise SystemExit("--gpu: no CUDA device here")
    rows = training_rows(args.repeats) + loader_rows(args.repeats) + (gpu_rows(args.repeats) if args.gpu else [])
    print(
        f"\ntorch {torch.__version__}, {os.cpu_count()} CPU cores, {torch.get_num_threads()} threads; "
        f"medians of {args.repeats} interleaved runs"
    )
    print("| setting | path | images/s | runs | ratio | target |")
    print("|---|---|---|---|---|---|")
    for setting, path, rate, runs, ratio, target in rows:
        if not runs:
            print(f"| {setting} | {path} | | | | {target} |")
            continue
        print(
            f"| {setting} | {path} | {rate:.0f} | {', '.join(f'{run:.0f}' for run in runs)} | {ratio:.2f} | {target} |"
        )


if __name__ == "__main__":
    main()
