"""Speed of Local Feature Masking on CPU, side by side with its floor and its alternatives.

Forward + backward at the size of ResNet-50's conv1 output for 256 x 128 inputs
([32, 64, 128, 64], float32), then one ResNet-50 training step with and without LFM after
conv1. Run: .venv/bin/python benchmarks/bench_masking.py [--quick]
"""

import argparse
import copy
import math
import random
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models import resnet50
from torchvision.ops import DropBlock2d

from lfm.masking import LocalFeatureMasking, local_feature_masking

SHAPE = (32, 64, 128, 64)
OFFICIAL = dict(selection="batch", channel_sampling="with_replacement", region="band", fill="random")
TARGET_FLOOR_RATIO = 3.0
TARGET_LOOP_SPEEDUP = 50.0
TARGET_STEP_OVERHEAD = 0.02


def median_ms(step: Callable[[], object], warmup: int, repeats: int) -> float:
    for _ in range(warmup):
        step()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


def authors_region(height: int, width: int) -> tuple[int, int, int, int]:
    """The released code's Random Erasing sampler: (h, w, row offset, column offset)."""
    while True:
        target = random.uniform(0.02, 0.4) * height * width
        ratio = random.uniform(0.3, 1 / 0.3)
        h = round(math.sqrt(target * ratio))
        w = round(math.sqrt(target / ratio))
        if w < width and h < height:
            return h, w, random.randint(0, height - h), random.randint(0, width - w)


def authors_masking(x: Tensor) -> Tensor:
    """The released code's LFM with its batch always selected: 8 samples x 32 slice writes.

    It writes into conv1's output in place; the clone stands in for that non-leaf tensor.
    """
    x = x.clone()
    channels = [random.randint(0, 63) for _ in range(32)]
    for i in range(8):
        for c in channels:
            h, w, x1, y1 = authors_region(128, 64)
            x[i][c][y1 : y1 + h][x1 : x1 + w] = random.random()
    return x


def forward_backward(op: Callable[[Tensor], Tensor], x: Tensor, grad: Tensor) -> Callable[[], object]:
    return lambda: torch.autograd.grad(op(x), x, grad)


def op_rows(warmup: int, repeats: int, loop_repeats: int) -> list[tuple[str, float, int]]:
    x = torch.randn(SHAPE, requires_grad=True)
    grad = torch.randn(SHAPE)
    keep = (torch.rand(SHAPE) > 0.1).float()
    dropout = nn.Dropout2d(0.5).train()
    dropblock = DropBlock2d(p=0.5, block_size=7).train()
    loop_runs = (0, loop_repeats)  # seconds per call: no warm-up needed
    ops = [
        ("floor: x * precomputed mask", lambda t: t * keep, (warmup, repeats)),
        ("LFM paper defaults, p=1", lambda t: local_feature_masking(t, p=1.0), (warmup, repeats)),
        ("LFM paper defaults, p=0.5", lambda t: local_feature_masking(t, p=0.5), (warmup, repeats)),
        (
            "LFM official settings, p=1",
            lambda t: local_feature_masking(t, p=1.0, **OFFICIAL),
            (warmup, repeats),
        ),
        ("authors' loop (8 x 32 slices), p=1", authors_masking, loop_runs),
        ("nn.Dropout2d(0.5)", dropout, (warmup, repeats)),
        ("torchvision DropBlock2d(0.5, 7)", dropblock, (warmup, repeats)),
    ]
    return [(name, median_ms(forward_backward(op, x, grad), *runs), runs[1]) for name, op, runs in ops]


def training_step(model: nn.Module, optimizer: torch.optim.Optimizer, images: Tensor, labels: Tensor) -> None:
    optimizer.zero_grad(set_to_none=True)
    F.cross_entropy(model(images), labels).backward()
    optimizer.step()


def resnet_step_ms(warmup: int, repeats: int) -> tuple[list[float], list[float], float]:
    """Step times (ms) without and with LFM after conv1, and LFM's own median at that size."""
    torch.manual_seed(0)
    plain = resnet50().train()
    masked = copy.deepcopy(plain)
    masked.conv1 = nn.Sequential(masked.conv1, LocalFeatureMasking())
    images = torch.randn(16, 3, 256, 128)
    labels = torch.randint(1000, (16,))
    models = {"plain": plain, "masked": masked}
    optimizers = {name: torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9) for name, model in models.items()}
    times = {name: [] for name in models}
    for run in range(warmup + repeats):
        for name, model in models.items():  # interleaved: load from elsewhere hits both alike
            start = time.perf_counter()
            training_step(model, optimizers[name], images, labels)
            if run >= warmup:
                times[name].append(1e3 * (time.perf_counter() - start))
    conv1_out = torch.randn(16, 64, 128, 64, requires_grad=True)
    lfm_alone = median_ms(
        forward_backward(LocalFeatureMasking().train(), conv1_out, torch.randn_like(conv1_out)),
        warmup=1,
        repeats=4 * repeats,
    )
    return times["plain"], times["masked"], lfm_alone


def verdict(ok: bool) -> str:
    return "ok" if ok else "MISSED"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats (noisier medians)")
    args = parser.parse_args()
    warmup, repeats, loop_repeats, steps = (1, 5, 1, 1) if args.quick else (2, 11, 2, 7)
    print(f"torch {torch.__version__}, CPU, {torch.get_num_threads()} threads")
    print(f"forward + backward, x = {list(SHAPE)} float32, median over `runs`")

    rows = op_rows(warmup, repeats, loop_repeats)
    times = {name: ms for name, ms, _ in rows}
    floor = times["floor: x * precomputed mask"]
    loop = times["authors' loop (8 x 32 slices), p=1"]
    paper = times["LFM paper defaults, p=1"]
    official = times["LFM official settings, p=1"]
    print(f"\n{'op':<38}{'median ms':>11}{'x floor':>9}{'runs':>6}")
    for name, ms, runs in rows:
        print(f"{name:<38}{ms:>11.1f}{ms / floor:>9.2f}{runs:>6}")

    plain_runs, masked_runs, lfm_ms = resnet_step_ms(1, steps)
    plain_ms, masked_ms = statistics.median(plain_runs), statistics.median(masked_runs)
    # Steps run in (plain, masked) pairs: the median of the per-pair ratios cancels slow drifts.
    overhead = statistics.median(masked / plain - 1 for plain, masked in zip(plain_runs, masked_runs))
    share = lfm_ms / plain_ms
    spread = (max(plain_runs) - min(plain_runs)) / plain_ms
    print(f"\nResNet-50 training step, batch 16 x 3 x 256 x 128, SGD, median of {steps} interleaved pairs")
    print(f"{'without LFM':<38}{plain_ms:>11.1f}   run-to-run spread {spread:.1%}")
    print(f"{'with LFM after conv1':<38}{masked_ms:>11.1f}{overhead:>+9.1%}")
    print(f"{'LFM fwd+bwd alone at [16, 64, 128, 64]':<38}{lfm_ms:>11.1f}{share:>+9.1%}")

    print("\ntargets")
    print(
        f"  paper defaults within {TARGET_FLOOR_RATIO:g}x of the floor: "
        f"{paper / floor:.2f}x  {verdict(paper / floor <= TARGET_FLOOR_RATIO)}"
    )
    print(
        f"  official settings within {TARGET_FLOOR_RATIO:g}x of the floor: "
        f"{official / floor:.2f}x  {verdict(official / floor <= TARGET_FLOOR_RATIO)}"
    )
    print(
        f"  at least {TARGET_LOOP_SPEEDUP:g}x faster than the authors' loop: "
        f"paper {loop / paper:.0f}x {verdict(loop / paper >= TARGET_LOOP_SPEEDUP)}, "
        f"official {loop / official:.0f}x {verdict(loop / official >= TARGET_LOOP_SPEEDUP)}"
    )
    print(
        f"  at most {TARGET_STEP_OVERHEAD:.0%} added to the ResNet-50 step: measured "
        f"{overhead:+.1%} {verdict(overhead <= TARGET_STEP_OVERHEAD)} (spread {spread:.1%}), "
        f"LFM's own time {share:.1%} of the step {verdict(share <= TARGET_STEP_OVERHEAD)}"
    )


if __name__ == "__main__":
    main()
