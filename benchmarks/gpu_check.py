"""GPU check: the LFM op on CUDA, torch.compile without graph breaks, training throughput, the data
pipelines and one epoch of the paper recipe.

One command for a GPU machine (designed for under 10 minutes on an H100; not yet measured on a GPU):

    .venv/bin/python benchmarks/gpu_check.py [--json outputs/gpu_check.json]    (or: make gpu-check)

1. LFM op (lfm.masking.LocalFeatureMasking, paper settings, train mode) in fp32, bf16 and
   fp16, contiguous and channels_last: output dtype and memory format kept, masked fraction
   (mean of several draws) within 10% of p x k / C x mean area, gradient 0 at the masked
   positions and 1 elsewhere, and no host-device synchronisation in the forward and backward
   (torch.cuda.set_sync_debug_mode("error")).
2. torch.compile: torch._dynamo.explain of the re-ID network (ResNet-50, LFM after conv1,
   train mode) in fp32 and in bf16 autocast + channels_last: one graph, no graph breaks.
3. Throughput (images/s) of our Lightning ReIDModule against a plain PyTorch loop on the same
   network and batches (benchmarks/bench_training_loop.py), ResNet-50 with the LFM paper
   preset, 256 x 128, batch 64, random images resident on the GPU (so the data loader is not
   measured): fp32; bf16-mixed; + channels_last; + torch.compile. Target: ratio >= 0.95.
4. The data pipelines: the rows of benchmarks/bench_pipeline.py on this machine, once each:
   src/train.py (ResNet-18 + LFM) on the tensor and PIL pipelines against the floor (target:
   tensor >= 0.90), and the loaders alone on the Market-1501-scale preset (target: >= 20x PIL).
5. The paper recipe (bench_pipeline.py --gpu): one epoch of src/train.py experiment=lfm_resnet50 on
   data=synthetic_market1501 with the tensor pipeline, bf16-mixed and channels_last, against the
   plain loop (target >= 0.95), and the 60-epoch projection (target <= 5 min).

Prints a table per part and exits 1 if any check failed (a missed speed target included; a
part that crashes is one failed row). `--device cpu --quick` runs every check at tiny sizes on
the CPU (no sync check there; speed rows are informational; parts 4 and 5 on a 2% dataset
generated in a temporary folder) so a test keeps this script working; `--skip-compile` leaves
out the torch.compile throughput row (its first compile takes a minute or more).
"""

import argparse
import json
import statistics
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch._dynamo
from bench_pipeline import GPU_RUN, gpu_rows, loader_rows, training_rows
from bench_training_loop import TARGET, LoopSetup, compare_loops
from omegaconf import OmegaConf
from torch.utils.data import DataLoader

from lfm.masking import LocalFeatureMasking
from lfm.models.reid import ReIDModule

PAPER_LFM = OmegaConf.to_container(OmegaConf.load(Path(__file__).resolve().parents[1] / "conf" / "lfm" / "paper.yaml"))
MASKED_FRACTION_TOLERANCE = 0.10  # relative; the draws' spread at these sizes is about 2%
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
MEMORY_FORMATS = {"contiguous": torch.contiguous_format, "channels_last": torch.channels_last}
# (name, Lightning precision, model.channels_last, model.compile)
THROUGHPUT_CONFIGS = (
    ("fp32", "32-true", False, False),
    ("bf16-mixed", "bf16-mixed", False, False),
    ("bf16-mixed + channels_last", "bf16-mixed", True, False),
    ("bf16-mixed + channels_last + compile", "bf16-mixed", True, True),
)
PASS, FAIL, INFO = "ok", "FAIL", "info"


@dataclass(frozen=True)
class Sizes:
    """How big each part runs: the full GPU check, or --quick."""

    feature_map: tuple[int, int, int, int]  # LFM op input [B, C, H, W]
    draws: int  # forwards averaged for the masked fraction
    backbone: str
    image_size: tuple[int, int]
    batch_size: int
    num_classes: int
    steps: int
    repeats: int
    # bench_pipeline.py's rows: ResNet-18 image sizes, more overrides for every run (a scaled dataset,
    # generated in a temporary folder), seconds per loader, plain-loop steps of the floors
    pipeline_image_sizes: tuple[tuple[int, int], ...]
    pipeline_overrides: tuple[str, ...]
    loader_seconds: float
    floor_steps: int


FULL = Sizes((256, 64, 128, 64), 10, "resnet50", (256, 128), 64, 751, 60, 2, ((64, 32), (96, 48)), (), 3.0, 60)
QUICK = Sizes(
    (128, 16, 32, 16),
    10,
    "resnet18",
    (32, 16),
    4,
    10,
    6,
    1,
    ((32, 16),),
    ("data.synthetic.scale=0.02", "data.val_ids=0", "data.num_workers=0", "data.batch_size=4"),
    0.2,
    6,
)
# the paper recipe of bench_pipeline.py --gpu, at QUICK's sizes
QUICK_RECIPE = ("model.backbone=resnet18", "data.image_size=[64,32]")


def first_line(error: Exception) -> str:
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0] if lines else ''}"


def masking_forward_backward(module: LocalFeatureMasking, x: torch.Tensor) -> tuple[torch.Tensor, str]:
    """One forward and backward; on CUDA any host-device sync inside raises. Returns the output
    and what the sync check found."""
    if x.device.type != "cuda":
        output = module(x)
        output.float().sum().backward()
        return output, "n/a (CPU)"
    torch.cuda.set_sync_debug_mode("error")
    try:
        output = module(x)
        output.float().sum().backward()
    finally:
        torch.cuda.set_sync_debug_mode(0)
    return output, "none"


def check_masking_op(device: str, sizes: Sizes) -> list[dict]:
    """The LFM op per dtype and memory format: dtype, format, masked fraction, gradient, syncs."""
    settings = {key: value for key, value in PAPER_LFM.items() if key not in ("_target_", "after")}
    rows = []
    for dtype_name, dtype in DTYPES.items():
        for format_name, memory_format in MEMORY_FORMATS.items():
            row = {"dtype": dtype_name, "memory format": format_name}
            torch.manual_seed(0)
            module = LocalFeatureMasking(**settings).train()
            fractions, problems = [], []
            try:
                for _ in range(sizes.draws):
                    x = torch.randn(sizes.feature_map, device=device, dtype=dtype)
                    x = x.contiguous(memory_format=memory_format).requires_grad_()
                    output, syncs = masking_forward_backward(module, x)
                    fractions.append(float(module.masked_fraction))
                    if output.dtype != dtype:
                        problems.append(f"output dtype {output.dtype}")
                    if not output.is_contiguous(memory_format=memory_format):
                        problems.append("memory format lost")
                    # d sum / dx: 0 at the masked positions, 1 elsewhere (up to float32 rounding of the fraction)
                    zeros = float((x.grad == 0).sum()) / x.numel()
                    if not ((x.grad == 0) | (x.grad == 1)).all() or abs(zeros - fractions[-1]) > 1e-6:
                        problems.append("gradient not 0 where masked and 1 elsewhere")
            except RuntimeError as error:  # among them the sync debug mode's error
                rows.append(
                    {**row, "masked / expected": "-", "host syncs": "-", "problems": first_line(error), "result": FAIL}
                )
                continue
            ratio = statistics.mean(fractions) / module.expected_fraction
            if abs(ratio - 1) > MASKED_FRACTION_TOLERANCE:
                problems.append(f"masked fraction {ratio:.3f} x expected")
            rows.append(
                {
                    **row,
                    "masked / expected": round(ratio, 3),
                    "host syncs": syncs,
                    "problems": ", ".join(sorted(set(problems))) or "-",
                    "result": FAIL if problems else PASS,
                }
            )
    return rows


def model_settings(sizes: Sizes, channels_last: bool = False, compile: bool = False) -> dict:
    """ReIDModule settings of the checked model: a re-ID ResNet with the LFM paper preset, from scratch."""
    return dict(
        backbone=sizes.backbone,
        lfm=PAPER_LFM,
        optimizer={"name": "sgd", "lr": 0.05},
        scheduler={"name": "constant"},
        channels_last=channels_last,
        compile=compile,
    )


def check_graph_breaks(device: str, sizes: Sizes) -> list[dict]:
    """torch._dynamo.explain of the network in train mode: fp32, and bf16 autocast + channels_last."""
    rows = []
    for name, channels_last, autocast in (("fp32", False, False), ("bf16 autocast + channels_last", True, True)):
        module = ReIDModule(**model_settings(sizes, channels_last), num_classes=sizes.num_classes)
        net = module.net.to(device).train()
        images = module.images({"image": torch.rand(sizes.batch_size, 3, *sizes.image_size, device=device)})
        torch._dynamo.reset()
        with torch.autocast(device, dtype=torch.bfloat16, enabled=autocast):
            explanation = torch._dynamo.explain(net)(images)
        reasons = "; ".join(str(reason.reason).splitlines()[0] for reason in explanation.break_reasons) or "-"
        passed = explanation.graph_count == 1 and explanation.graph_break_count == 0
        rows.append(
            {
                "setting": name,
                "graphs": explanation.graph_count,
                "graph breaks": explanation.graph_break_count,
                "break reasons": reasons,
                "result": PASS if passed else FAIL,
            }
        )
    torch._dynamo.reset()
    return rows


def random_batches(device: str, sizes: Sizes) -> DataLoader:
    """`steps` ready-made batches (4 random ones in turn) already on the device."""
    distinct = [
        {
            "image": torch.rand(sizes.batch_size, 3, *sizes.image_size, device=device),
            "label": torch.randint(sizes.num_classes, (sizes.batch_size,), device=device),
        }
        for _ in range(4)
    ]
    return DataLoader([distinct[step % len(distinct)] for step in range(sizes.steps)], batch_size=None)


def check_throughput(device: str, sizes: Sizes, quick: bool, skip_compile: bool) -> list[dict]:
    """Lightning against the plain loop per configuration; ratio >= TARGET passes (quick: info)."""
    torch.manual_seed(0)
    batches = random_batches(device, sizes)
    rows = []
    for name, precision, channels_last, compile in THROUGHPUT_CONFIGS:
        if compile and skip_compile:
            continue
        model = model_settings(sizes, channels_last, compile)
        setup = LoopSetup(model, sizes.num_classes, sizes.batch_size, sizes.steps, device, precision)
        try:
            results = compare_loops(setup, batches, sizes.repeats)
        except Exception as error:  # a failed configuration (e.g. a compile error) is a row, not a crash
            rows.append(
                {
                    "config": name,
                    "plain img/s": "-",
                    "lightning img/s": "-",
                    "ratio": "-",
                    "error": first_line(error),
                    "result": FAIL,
                }
            )
            continue
        plain, lightning = statistics.median(results["plain"]), statistics.median(results["lightning"])
        ratio = lightning / plain
        rows.append(
            {
                "config": name,
                "plain img/s": round(plain, 1),
                "lightning img/s": round(lightning, 1),
                "ratio": round(ratio, 3),
                "error": "-",
                "result": INFO if quick else PASS if ratio >= TARGET else FAIL,
            }
        )
    return rows


def benchmark_rows(rows: list[tuple], quick: bool) -> list[dict]:
    """bench_pipeline.py's rows as this script's: a missed target fails (quick: informational)."""
    table = []
    for setting, path, rate, runs, ratio, target in rows:
        result = INFO if quick or not target else FAIL if "MISSED" in target else PASS
        measured = {"images/s": round(rate, 1), "ratio": round(ratio, 3)} if runs else {"images/s": "", "ratio": ""}
        table.append({"setting": setting, "path": path, **measured, "target": target, "result": result})
    return table


def pipeline_overrides(sizes: Sizes, data_dir: Path) -> tuple[str, ...]:
    """The overrides of sizes.pipeline_overrides, with their scaled data generated under `data_dir`."""
    return (*sizes.pipeline_overrides, f"paths.data_dir={data_dir}") if sizes.pipeline_overrides else ()


def check_pipelines(device: str, sizes: Sizes, quick: bool, data_dir: Path) -> list[dict]:
    """bench_pipeline.py's rows: src/train.py on each pipeline against the floor, the loaders alone."""
    extra = pipeline_overrides(sizes, data_dir)
    training = training_rows(1, device, sizes.pipeline_image_sizes, extra, sizes.floor_steps)
    loaders = loader_rows(1, extra, sizes.loader_seconds)
    return benchmark_rows(training + loaders, quick)


def check_recipe(device: str, sizes: Sizes, quick: bool, data_dir: Path) -> list[dict]:
    """One epoch of the paper recipe (bf16-mixed, channels_last, tensor pipeline) against the floor, and the
    60-epoch projection (bench_pipeline.py --gpu)."""
    overrides = (*GPU_RUN, *(QUICK_RECIPE if quick else ()), *pipeline_overrides(sizes, data_dir))
    return benchmark_rows(gpu_rows(1, overrides, device, sizes.floor_steps), quick)


def guarded(part: Callable[[], list[dict]]) -> list[dict]:
    """The part's rows, or one failed row naming the error (src/train.py's failure included)."""
    try:
        return part()
    except (Exception, SystemExit) as error:
        return [{"error": first_line(error), "result": FAIL}]


def markdown_table(rows: list[dict]) -> str:
    columns = list(dict.fromkeys(key for row in rows for key in row))
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(str(row.get(column, "")) for column in columns) + " |" for row in rows]
    return "\n".join(lines)


def count_failures(report: dict[str, list[dict]]) -> int:
    return sum(row["result"] == FAIL for rows in report.values() for row in rows)


def parts(device: str, quick: bool, skip_compile: bool, data_dir: Path) -> dict[str, Callable[[], list[dict]]]:
    """The five checks, by table title (`data_dir`: where --quick generates its small datasets)."""
    sizes = QUICK if quick else FULL
    return {
        "LFM op": lambda: check_masking_op(device, sizes),
        "torch.compile graph breaks": lambda: check_graph_breaks(device, sizes),
        f"training throughput, images/s ({sizes.backbone}, {sizes.image_size[0]}x{sizes.image_size[1]}, "
        f"batch {sizes.batch_size}, {sizes.steps} steps x {sizes.repeats} runs, median; target ratio >= {TARGET})": lambda: (
            check_throughput(device, sizes, quick, skip_compile)
        ),
        "data pipelines (bench_pipeline.py; target tensor >= 0.90 of the floor, loader >= 20x PIL)": lambda: guarded(
            lambda: check_pipelines(device, sizes, quick, data_dir)
        ),
        "paper recipe, one epoch of src/train.py against the floor, 60-epoch projection (bench_pipeline.py --gpu)": (
            lambda: guarded(lambda: check_recipe(device, sizes, quick, data_dir))
        ),
    }


def describe(device: str) -> str:
    if device == "cuda":
        return f"{torch.cuda.get_device_name()} (CUDA {torch.version.cuda})"
    return f"CPU, {torch.get_num_threads()} threads"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    parser.add_argument("--quick", action="store_true", help="tiny sizes and few steps (a smoke run, e.g. on the CPU)")
    parser.add_argument("--skip-compile", action="store_true", help="leave out the torch.compile throughput row")
    parser.add_argument("--json", type=Path, help="also write the tables to this JSON file")
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        print(
            "error: --device cuda but torch sees no CUDA GPU; run on a GPU machine or pass --device cpu --quick",
            file=sys.stderr,
        )
        return 2
    print(f"torch {torch.__version__} on {describe(args.device)}")
    report = {}
    with tempfile.TemporaryDirectory() as data_dir:
        for title, part in parts(args.device, args.quick, args.skip_compile, Path(data_dir)).items():
            report[title] = part()
            print(f"\n## {title}\n{markdown_table(report[title])}", flush=True)
            if args.json:  # after each part, so a run cut short still leaves what it measured
                args.json.parent.mkdir(parents=True, exist_ok=True)
                args.json.write_text(
                    json.dumps({"device": describe(args.device), "torch": torch.__version__, **report}, indent=2)
                )
    failures = count_failures(report)
    print(f"\n{failures} check(s) FAILED" if failures else "\nall checks passed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
