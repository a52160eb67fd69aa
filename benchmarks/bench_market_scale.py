"""A Market-1501-scale rehearsal on the CPU: the paper's experiment, phase by phase, each beside its compute bound.

`experiment=lfm_resnet50` (ResNet-50 + LFM after conv1, 256 x 128, batch 32) on `data=synthetic_market1501`
(12,936 training, 3,368 query and 19,732 gallery files; the reader drops the 3,819 junk files, leaving 15,913),
through the project's own code: src/train.py, ReIDDataModule, ReIDModule's test step (flip test),
lfm.metrics.evaluate_features (plain and k-reciprocal re-ranked) and lfm.attacks.robustness.run_robustness.

1. synthetic data: generated under data/synthetic/ on first use (once; no bound).
2. cache build: the decoded-image caches of all 32,217 images (ReIDDataModule.setup, written afresh into a
   temporary data.cache_dir), against decoding and resizing the same images with the same loader processes.
3. training: the first --steps batches of src/train.py (its own process, trainer.limit_train_batches; images/s of
   its TrainingSpeedMonitor), against the plain PyTorch loop on the same network (bench_pipeline.recipe_speed).
4. feature extraction: the test step over --test-images images (every k-th query and gallery image), the trained
   checkpoint loaded as src/eval.py loads it, against the same network's bare forward (flip: two per image).
5. ranking and 6. re-ranking: evaluate_features at the full size (3,368 x 15,913); when --test-images is below the
   test set, the extracted features are repeated to the full counts (time and memory depend on the sizes).
7. attack: I-FGSM, eps 8/255, SMA loss (conf/attack/literature.yaml's step and iteration rule) on the first
   --attack-queries queries, ranked against the gallery images of their identities.

The bound of a phase is the compute it cannot avoid; target: each phase within 1.10 x its bound, and at most 8 GB
of peak memory. The memory column is this process's peak resident memory during the phase (Linux VmHWM, reset
at the phase's start through /proc/self/clear_refs); the training phase's is src/train.py's own peak, and the
cache build's loader processes are reported beside it. Last, the
projection of a 60-epoch run on a GPU: the GPU's plain-loop speed (--gpu-floor; an A100 estimate by default,
`make gpu-check` measures it) times the training ratio measured here.

No ImageNet weights are needed: the randomly initialised backbone's state dict is saved to a temporary file and
passed as model.pretrained=<file> (the recipe's loading path; weights do not change speed).

Run: .venv/bin/python benchmarks/bench_market_scale.py [--steps 10] [--test-images 3000] [--attack-queries 200]
`--quick` runs every phase at tiny sizes (ResNet-18, 64 x 32, a 2% dataset in a temporary folder), for a test.
"""

import argparse
import dataclasses
import resource
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import lightning as L
import torch
import torchvision
from bench_pipeline import EPOCHS, PROJECT, composed, projected_minutes, recipe_speed, rss_gb
from hydra import compose, initialize_config_dir
from lightning.pytorch.callbacks import Callback
from omegaconf import OmegaConf
from torch.utils.data import DataLoader, Dataset

from lfm.attacks.robustness import AttackSettings, parse_attack_settings, run_robustness
from lfm.data.datamodule import ReIDDataModule
from lfm.data.market import load_image, ranking_dataset, read_split
from lfm.data.transforms import eval_transform, resize_transform
from lfm.metrics.reid import evaluate_features
from lfm.models.reid import ReIDModule, check_rerank_settings
from lfm.runs.pipeline import build_datamodule, build_trainer, load_checkpoint, load_module

TARGET_RATIO, TARGET_PEAK_GB = 1.10, 8.0
GPU_FLOOR = 3800.0  # images/s: NVIDIA's mixed-precision ResNet-50 training speed on one A100, scaled to 256 x 128
DECODE_BATCH = 64  # as lfm.data.cache writes the cache
RUN = ("experiment=lfm_resnet50", "data=synthetic_market1501")
ATTACK = ("attack.methods=[ifgsm]", "attack.losses=[sma]", "attack.eps=[8]")


@dataclass(frozen=True)
class Sizes:
    """The rehearsal's sizes: the full run's defaults, or --quick."""

    overrides: tuple[str, ...]  # beyond experiment=lfm_resnet50 data=synthetic_market1501
    steps: int
    test_images: int
    attack_queries: int
    attack_batch_size: int
    bound_batches: int  # timed batches of the bare forward (after one warm-up batch)
    scratch_data: bool = False  # generate the data in the temporary folder (a scaled dataset)


FULL = Sizes((), 10, 3000, 200, 16, 2)
QUICK = Sizes(
    (
        "model.backbone=resnet18",
        "data.image_size=[64,32]",
        "data.synthetic.scale=0.02",
        "data.batch_size=8",
        "data.eval_batch_size=16",
        "data.num_workers=0",
    ),
    6,
    64,
    4,
    4,
    1,
    scratch_data=True,
)


@dataclass(frozen=True)
class Phase:
    """One row: what ran, its wall time and peak memory, and its time against its compute bound."""

    name: str
    work: str
    seconds: float
    peak_gb: float
    ratio: float | None = None  # time / bound time for the same work
    bound: str = "-"


def reset_peak_memory() -> None:
    """Restart this process's peak resident memory (VmHWM) from its current resident memory."""
    Path("/proc/self/clear_refs").write_text("5")


def peak_memory_gb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024 / 1e9
    raise RuntimeError("no VmHWM in /proc/self/status: this benchmark needs Linux")


def measured(action: Callable[[], object]) -> tuple[object, float, float]:
    """`action()`'s result, its wall seconds and this process's peak resident memory (GB) while it ran."""
    reset_peak_memory()
    start = time.perf_counter()
    result = action()
    return result, time.perf_counter() - start, peak_memory_gb()


def run_overrides(sizes: Sizes, scratch: Path) -> tuple[str, ...]:
    """The rehearsal's config: the paper's experiment on the Market-scale data, random weights from a file,
    caches built afresh in `scratch`."""
    backbone = composed((*RUN, *sizes.overrides)).model.backbone
    weights = scratch / f"{backbone}_random.pth"
    torch.save(torchvision.models.get_model(backbone).state_dict(), weights)
    own_data = (f"paths.data_dir={scratch / 'data'}",) if sizes.scratch_data else ()
    return (
        *RUN,
        f"model.pretrained={weights}",
        f"data.cache_dir={scratch / 'cache'}",
        *sizes.overrides,
        *own_data,
    )


class DecodedImages(Dataset):
    """Each image decoded and resized to the cache's size: the work of a cache build, without the file."""

    def __init__(self, paths: list[Path], image_size: tuple[int, int]):
        self.paths, self.transform = paths, resize_transform(image_size)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.transform(load_image(self.paths[index])).as_subclass(torch.Tensor)


def decode_seconds(data: ReIDDataModule) -> float:
    """Decoding and resizing every image of the dataset with the cache build's loader processes."""
    paths = [sample.path for split in ("train", "query", "gallery") for sample in read_split(data.root, split)]
    loader = DataLoader(DecodedImages(paths, data.image_size), batch_size=DECODE_BATCH, num_workers=data.num_workers)
    start = time.perf_counter()
    for _ in loader:
        pass
    return time.perf_counter() - start


def cache_phases(overrides: tuple[str, ...]) -> tuple[ReIDDataModule, list[Phase]]:
    """The data generated (first use), then the caches built, beside decoding the same images."""
    cfg = composed(overrides)
    data = build_datamodule(OmegaConf.to_container(cfg.data, resolve=True), cfg.seed)
    _, generate_seconds, generate_peak = measured(data.prepare_data)
    bound = decode_seconds(data)
    _, seconds, peak = measured(lambda: (data.setup("fit"), data.setup("test")))
    images = sum(len(cached) for cached in data.cached.values())
    workers = rss_gb(resource.getrusage(resource.RUSAGE_CHILDREN))
    return data, [
        Phase("synthetic data", f"generated or found at {data.root}", generate_seconds, generate_peak),
        Phase(
            "cache build",
            f"{images} images decoded, resized and written ({data.num_workers} loader processes, "
            f"the largest {workers:.2f} GB, not in the memory column)",
            seconds,
            peak,
            seconds / bound,
            f"decode + resize: {bound:.1f} s",
        ),
    ]


def training_phase(overrides: tuple[str, ...], steps: int, run_dir: Path) -> tuple[Phase, float]:
    """src/train.py's first `steps` batches against the plain loop; the phase and the speed ratio."""
    speed, seconds, _ = measured(
        lambda: recipe_speed(overrides, "cpu", steps=steps, floor_steps=steps, run_dir=run_dir)
    )
    batch_size = composed(overrides).data.batch_size
    rate, floor = speed.train_py_median, speed.floor_median
    phase = Phase(
        "training",
        f"src/train.py, {steps} steps of {batch_size} (the first 3 not timed): {rate / batch_size:.3f} steps/s",
        seconds,
        speed.runs[-1].peak_rss_gb,
        floor / rate,
        f"plain loop: {floor / batch_size:.3f} steps/s",
    )
    return phase, speed.ratio


class TestClock(Callback):
    """Wall time and images of the test batches after the first (its one-off set-up left out)."""

    def __init__(self):
        self.start = self.end = 0.0
        self.images = 0

    def on_test_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0):
        if batch_idx == 1:
            self.start = time.perf_counter()

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
        if batch_idx >= 1:
            self.images += len(batch["pid"])
            self.end = time.perf_counter()


def trained_model(run_dir: Path) -> ReIDModule:
    """The trained checkpoint, loaded as src/eval.py loads it."""
    path = run_dir / "checkpoints" / "last.ckpt"
    return load_module(path, load_checkpoint(path))


def forward_seconds_per_image(model: ReIDModule, batch_size: int, image_size: tuple[int, int], batches: int) -> float:
    """The bare network's evaluation feature (flip test as configured), after one warm-up batch."""
    net = model.net.eval()
    images = model.images({"image": torch.rand(batch_size, 3, *image_size)})
    with torch.inference_mode():
        net.retrieval_features(images, flip=model.hparams.flip_test)
        start = time.perf_counter()
        for _ in range(batches):
            net.retrieval_features(images, flip=model.hparams.flip_test)
    return (time.perf_counter() - start) / (batches * batch_size)


def extraction_phase(
    overrides: tuple[str, ...], data: ReIDDataModule, model: ReIDModule, sizes: Sizes, scratch: Path
) -> tuple[Phase, dict]:
    """The test step over every k-th test image against the bare forward; the phase and the test's samples."""
    full = data.test_set
    query, gallery = full.samples[: full.num_query], full.samples[full.num_query :]
    k = max(1, -(-len(full) // sizes.test_images))
    data.test_set = ranking_dataset(query[::k], gallery[::k], eval_transform(data.image_size))
    cfg = composed((*overrides, "++trainer.enable_progress_bar=false"))
    clock = TestClock()
    trainer = build_trainer(cfg, scratch / "test", [], [clock])
    model.keep_test_features = True
    _, seconds, peak = measured(lambda: trainer.test(model, datamodule=data, verbose=False))
    data.test_set = full
    bound = forward_seconds_per_image(model, data.eval_batch_size, data.image_size, sizes.bound_batches)
    measured_per_image = (clock.end - clock.start) / clock.images
    phase = Phase(
        "feature extraction",
        f"test step, flip test, {len(query[::k])} query + {len(gallery[::k])} gallery images (every {k})",
        seconds,
        peak,
        measured_per_image / bound,
        f"bare forward: {1 / bound:.2f} images/s",
    )
    return phase, model.test_features


def full_size_features(samples: dict, data: ReIDDataModule) -> tuple[torch.Tensor, ...]:
    """evaluate_features' first six arguments at the full test set's counts: the extracted query and gallery
    features (repeated when fewer), the full test set's pids and camera ids."""
    full = data.test_set
    pids = torch.tensor([sample.pid for sample in full.samples])
    camids = torch.tensor([sample.camid for sample in full.samples])
    query, gallery = slice(0, full.num_query), slice(full.num_query, len(full))
    features, is_query = samples["features"], samples["is_query"]

    def repeated(extracted: torch.Tensor, count: int) -> torch.Tensor:
        return extracted[torch.arange(count) % len(extracted)]

    return (
        repeated(features[is_query], full.num_query),
        repeated(features[~is_query], len(full) - full.num_query),
        pids[query],
        pids[gallery],
        camids[query],
        camids[gallery],
    )


def ranking_phases(model: ReIDModule, samples: dict, data: ReIDDataModule) -> list[Phase]:
    """Ranking, then k-reciprocal re-ranking, at the full test size, as ReIDRankingMetric.compute does."""
    arguments = full_size_features(samples, data)
    hp = model.hparams
    size = f"{len(arguments[0])} x {len(arguments[1])}, {arguments[0].shape[1]}-d, {hp.distance}"
    extracted = len(samples["features"])
    note = "" if extracted == len(data.test_set) else f" ({extracted} extracted features, repeated)"
    _, seconds, peak = measured(lambda: evaluate_features(*arguments, distance=hp.distance, ap=hp.ap))
    settings = check_rerank_settings(hp.rerank_settings)
    _, rerank_seconds, rerank_peak = measured(
        lambda: evaluate_features(*arguments, distance=hp.distance, ap=hp.ap, rerank=settings)
    )
    return [
        Phase("ranking", f"evaluate_features, {size}{note}", seconds, peak),
        Phase("re-ranking", f"k-reciprocal {settings or '(published defaults)'}, {size}", rerank_seconds, rerank_peak),
    ]


def attack_settings() -> AttackSettings:
    """conf/attack/literature.yaml as src/eval.py composes it, narrowed to I-FGSM with the SMA loss at eps 8/255."""
    with initialize_config_dir(str(PROJECT / "conf"), version_base="1.3"):
        cfg = compose("eval", overrides=["attack=literature", *ATTACK])
    return parse_attack_settings(OmegaConf.to_container(cfg.attack, resolve=True))


def attack_phase(data: ReIDDataModule, model: ReIDModule, sizes: Sizes) -> tuple[Phase, list[dict]]:
    """The attack on the first queries, ranked against their identities' gallery images; the phase and its rows."""
    full = data.test_set
    query = full.samples[: sizes.attack_queries]
    pids = {sample.pid for sample in query}
    gallery = [sample for sample in full.samples[full.num_query :] if sample.pid in pids]
    data.test_set = ranking_dataset(query, gallery, eval_transform(data.image_size))
    data.eval_batch_size, eval_batch_size = sizes.attack_batch_size, data.eval_batch_size
    settings = attack_settings()
    loader = data.test_dataloader(shard=False)
    rows, seconds, peak = measured(lambda: run_robustness("reid", model, model, loader, settings, torch.device("cpu")))
    data.test_set, data.eval_batch_size = full, eval_batch_size
    work = (
        f"I-FGSM eps 8/255, SMA, {len(query)} queries (batches of {sizes.attack_batch_size}) "
        f"against {len(gallery)} gallery images, with their clean features"
    )
    return Phase("attack", work, seconds, peak), rows


def verdict(phase: Phase) -> str:
    if phase.ratio is None:
        return ""
    return f"<= {TARGET_RATIO:.2f}: {'met' if phase.ratio <= TARGET_RATIO else 'MISSED'}"


def table(phases: list[Phase]) -> str:
    lines = [
        "| phase | what ran | seconds | peak memory (GB) | compute bound | time / bound | target |",
        "|---|---|---|---|---|---|---|",
    ]
    for phase in phases:
        ratio = f"{phase.ratio:.2f}" if phase.ratio is not None else "-"
        lines.append(
            f"| {phase.name} | {phase.work} | {phase.seconds:.1f} | {phase.peak_gb:.2f} | {phase.bound} | {ratio} "
            f"| {verdict(phase)} |"
        )
    return "\n".join(lines)


@dataclass(frozen=True)
class Rehearsal:
    """What the run measured: its phases, the training speed ratio (src/train.py / plain loop), the training
    images, the decoded-image caches' size and the attack's rows."""

    phases: list[Phase]
    training_ratio: float
    train_images: int
    cache_gb: float
    attack_rows: list[dict]


def rehearse(sizes: Sizes, scratch: Path) -> Rehearsal:
    """Every phase in turn."""
    L.seed_everything(0, verbose=False)
    overrides = run_overrides(sizes, scratch)
    data, phases = cache_phases(overrides)
    training, ratio = training_phase(overrides, sizes.steps, scratch / "run")
    phases.append(training)
    model = trained_model(scratch / "run")
    extraction, samples = extraction_phase(overrides, data, model, sizes, scratch)
    phases += [extraction, *ranking_phases(model, samples, data)]
    attack, rows = attack_phase(data, model, sizes)
    phases.append(attack)
    cache_gb = sum(cached.nbytes for cached in data.cached.values()) / 1e9
    return Rehearsal(phases, ratio, len(data.train_set), cache_gb, rows)


def positive_int(text: str) -> int:
    """An argparse type: a whole number of at least 1."""
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, got {text!r}")
    return int(text)


def main(argv: list[str] | None = None) -> list[Phase]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes (ResNet-18, 64 x 32, 2%% of the data)")
    parser.add_argument(
        "--steps",
        type=positive_int,
        help=f"training steps (default {FULL.steps}; src/train.py times all but the first 3, the plain loop all but 5)",
    )
    parser.add_argument("--test-images", type=positive_int, help=f"test images to extract (default {FULL.test_images})")
    parser.add_argument("--attack-queries", type=positive_int, help=f"queries attacked (default {FULL.attack_queries})")
    parser.add_argument("--gpu-floor", type=float, default=GPU_FLOOR, help="the GPU's plain-loop images/s")
    args = parser.parse_args(argv)
    base = QUICK if args.quick else FULL
    sizes = dataclasses.replace(
        base,
        steps=args.steps or base.steps,
        test_images=args.test_images or base.test_images,
        attack_queries=args.attack_queries or base.attack_queries,
    )
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as scratch:
        run = rehearse(sizes, Path(scratch))
    peak = max(phase.peak_gb for phase in run.phases)
    print(
        f"\ntorch {torch.__version__}, CPU, {torch.get_num_threads()} threads; {time.perf_counter() - start:.0f} s in all"
    )
    print(table(run.phases))
    print(
        f"peak memory: {peak:.2f} GB, target <= {TARGET_PEAK_GB:.0f} GB: {'met' if peak <= TARGET_PEAK_GB else 'MISSED'} "
        f"(the decoded-image caches, {run.cache_gb:.2f} GB, are memory-mapped files: their pages count in the "
        f"resident memory of each process that reads them, and are shared with the page cache)"
    )
    for row in run.attack_rows:
        print(
            f"attack table: {row['method']} {row['loss']} eps {row['eps']:g}: mAP {row['mAP']:.4f}, rank-1 {row['rank1']:.4f}"
        )
    minutes = projected_minutes(args.gpu_floor * run.training_ratio, run.train_images)
    print(
        f"projection: {EPOCHS} epochs of {run.train_images} images on a GPU whose plain loop trains "
        f"{args.gpu_floor:.0f} images/s, at the training ratio measured here ({run.training_ratio:.2f}): {minutes:.1f} min"
    )
    return run.phases


if __name__ == "__main__":
    main()
