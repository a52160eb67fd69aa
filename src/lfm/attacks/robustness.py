"""Robustness evaluation: attack the test inputs over an eps grid, white-box or transferred
from another checkpoint, and score every attack with the evaluation metric.

Re-ID: the query images are attacked (the gallery stays clean) and ranked against the clean
gallery features: mAP and Rank-1. Classification: the test images are attacked: accuracy.
Writes robustness.json, robustness.csv and robustness.png (metric against eps) and prints
the table. eps is in units of 1/255 of the [0, 1] pixel range throughout.
"""

import csv
import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from matplotlib.figure import Figure
from torch import nn

from lfm.attacks.classification import CLASSIFICATION_LOSSES, build_classification_loss
from lfm.attacks.core import linf_pgd, linf_pgd_with_restarts
from lfm.attacks.reid import NEEDS_RANDOM_START, REID_LOSSES, build_reid_loss, true_matches
from lfm.errors import InputError
from lfm.files import write_json
from lfm.metrics.distance import pairwise_distance
from lfm.metrics.reid import evaluate_ranking

METHODS = ("noise", "fgsm", "ifgsm", "mifgsm", "pgd")
TASK_LOSSES = {"reid": REID_LOSSES, "classification": CLASSIFICATION_LOSSES}
DEFAULT_LOSSES = {"reid": REID_LOSSES, "classification": ("ce",)}
TASK_METRICS = {"reid": ("mAP", "rank1"), "classification": ("accuracy",)}
PIXEL = 1 / 255


@dataclass(frozen=True)
class AttackSettings:
    """The `attack` config group, checked. eps and alpha are in units of 1/255."""

    name: str
    eps: tuple[float, ...]
    methods: tuple[str, ...]
    eps_by_method: tuple[tuple[str, tuple[float, ...]], ...] = ()  # (method, its eps) replacing `eps` for it
    losses: tuple[str, ...] | None = None
    alpha: float | None = 1.0
    steps: int | None = None
    momentum: float = 1.0
    restarts: int = 1
    seed: int = 0
    source_ckpt_path: str | None = None

    @property
    def enabled(self) -> bool:
        return bool(self.methods)

    def losses_for(self, task: str) -> tuple[str, ...]:
        """The losses to run on a `task` model (the task's defaults when `attack.losses` is null)."""
        losses = self.losses or DEFAULT_LOSSES[task]
        unknown = [name for name in losses if name not in TASK_LOSSES[task]]
        if unknown:
            raise InputError(
                f"attack.losses: {unknown} do not apply to a {task} model; choose from {list(TASK_LOSSES[task])}"
            )
        return tuple(losses)


def _is_number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _eps_list(key: str, eps) -> tuple[float, ...]:
    if (
        isinstance(eps, str | bytes)
        or not hasattr(eps, "__iter__")
        or not all(_is_number(e) and 0 <= e <= 255 for e in eps)
    ):
        raise InputError(
            f"{key} must be a list of numbers in [0, 255] (units of 1/255 of the pixel range), "
            f"e.g. {key}=[0,2,4,8,16]; got {eps!r}"
        )
    return tuple(sorted({float(e) for e in eps}))


def parse_attack_settings(settings: Mapping) -> AttackSettings:
    """AttackSettings from the `attack` config, with an InputError naming any bad key."""
    eps = _eps_list("attack.eps", settings.get("eps"))
    methods = tuple(settings.get("methods") or ())
    unknown = [method for method in methods if method not in METHODS]
    if unknown:
        raise InputError(f"attack.methods: unknown {unknown}; choose from {list(METHODS)}")
    eps_by_method = settings.get("eps_by_method") or {}
    if not isinstance(eps_by_method, Mapping) or not set(eps_by_method) <= set(methods):
        raise InputError(
            f"attack.eps_by_method must map methods of attack.methods={list(methods)} to their eps lists, "
            f"e.g. attack.eps_by_method={{pgd:[8]}}; got {eps_by_method!r}"
        )
    alpha, steps = settings.get("alpha", 1.0), settings.get("steps")
    if alpha is not None and not (_is_number(alpha) and alpha > 0):
        raise InputError(f"attack.alpha (step size in 1/255) must be a number > 0 or null, got {alpha!r}")
    if steps is not None and (not isinstance(steps, int) or isinstance(steps, bool) or steps < 1):
        raise InputError(f"attack.steps must be an int >= 1 or null (the literature rule), got {steps!r}")
    momentum, restarts = settings.get("momentum", 1.0), settings.get("restarts", 1)
    if not (_is_number(momentum) and momentum >= 0):
        raise InputError(f"attack.momentum must be a number >= 0, got {momentum!r}")
    if not isinstance(restarts, int) or isinstance(restarts, bool) or restarts < 1:
        raise InputError(f"attack.restarts must be an int >= 1, got {restarts!r}")
    losses = settings.get("losses")
    source = settings.get("source_ckpt_path")
    if source is not None and not Path(source).expanduser().is_file():
        raise InputError(
            f"attack.source_ckpt_path={source} does not exist; pass a .ckpt file from a run's checkpoints/ folder"
        )
    return AttackSettings(
        name=str(settings.get("name", "custom")),
        eps=eps,
        methods=methods,
        eps_by_method=tuple(
            (str(method), _eps_list(f"attack.eps_by_method.{method}", values))
            for method, values in eps_by_method.items()
        ),
        losses=tuple(losses) if losses else None,
        alpha=alpha,
        steps=steps,
        momentum=float(momentum),
        restarts=restarts,
        seed=int(settings.get("seed", 0)),
        source_ckpt_path=str(Path(source).expanduser()) if source is not None else None,
    )


def literature_steps(eps: float) -> int:
    """Kurakin et al.'s iteration count min(eps + 4, 1.25 eps), eps in 1/255 (at least 1)."""
    return max(1, int(min(eps + 4, 1.25 * eps)))


def attack_images(
    method: str,
    per_sample_loss: Callable[[torch.Tensor], torch.Tensor],
    images: torch.Tensor,
    eps: float,
    settings: AttackSettings,
    generator: torch.Generator,
    random_start: bool = False,
) -> torch.Tensor:
    """Adversarial `images` for one method at `eps` (1/255 units); see METHODS.

    `noise` is the control: a random corner of the eps-ball (each pixel +-eps), no gradient.
    `random_start` forces a random start (for losses whose gradient vanishes at x).
    """
    radius = eps * PIXEL
    if method == "noise" or radius == 0:
        if radius == 0:
            return images.clone()
        signs = torch.randint(0, 2, images.shape, generator=generator, device=images.device) * 2 - 1
        return (images + radius * signs).clamp(0, 1)
    scalar_loss = lambda x: per_sample_loss(x).sum()  # noqa: E731
    if method == "fgsm":
        return linf_pgd(
            scalar_loss, images, eps=radius, alpha=radius, steps=1, random_start=random_start, generator=generator
        )
    steps = settings.steps or literature_steps(eps)
    alpha = settings.alpha * PIXEL if settings.alpha is not None else 2.5 * radius / steps
    if method == "pgd":
        return linf_pgd_with_restarts(
            per_sample_loss,
            images,
            restarts=settings.restarts,
            eps=radius,
            alpha=alpha,
            steps=steps,
            generator=generator,
        )
    momentum = settings.momentum if method == "mifgsm" else 0.0
    return linf_pgd(
        scalar_loss,
        images,
        eps=radius,
        alpha=alpha,
        steps=steps,
        random_start=random_start,
        momentum=momentum,
        generator=generator,
    )


def attack_grid(settings: AttackSettings, losses: tuple[str, ...]) -> list[tuple[str, str, float]]:
    """(method, loss, eps) for every attack to run (a method's eps from attack.eps_by_method where named);
    the noise control once per eps."""
    eps_of = dict(settings.eps_by_method)
    grid = []
    for method in settings.methods:
        for loss in ("none",) if method == "noise" else losses:
            grid += [(method, loss, eps) for eps in eps_of.get(method, settings.eps)]
    return grid


@torch.no_grad()
def _features(module: nn.Module, images: torch.Tensor) -> torch.Tensor:
    return module.net.retrieval_features(images, flip=module.hparams.flip_test)


def _device_batches(loader, device: torch.device) -> Iterator[dict]:
    for batch in loader:
        yield {key: value.to(device) if isinstance(value, torch.Tensor) else value for key, value in batch.items()}


def reid_robustness(
    target: nn.Module, source: nn.Module, loader, settings: AttackSettings, device: torch.device
) -> list[dict]:
    """mAP and Rank-1 of `target` for each attack made on `source`'s evaluation feature.

    `loader` yields the test set (query samples first, as ReIDDataModule's test loader does).
    Attacked queries are scored in the same batches as the clean pass, so eps = 0 reproduces
    the clean features bit for bit.
    """
    hp = target.hparams
    clean = {"target": [], "source": [], "pid": [], "camid": [], "is_query": []}
    for batch in _device_batches(loader, device):
        clean["target"].append(_features(target, batch["image"]))
        clean["source"].append(_features(source, batch["image"]) if source is not target else clean["target"][-1])
        for key in ("pid", "camid", "is_query"):
            clean[key].append(batch[key])
    features = {key: torch.cat(value) for key, value in clean.items()}
    is_query = features["is_query"]
    gallery = {key: features[key][~is_query] for key in ("target", "source", "pid", "camid")}
    losses = settings.losses_for("reid")
    grid = attack_grid(settings, losses)
    generator = torch.Generator(device=device).manual_seed(settings.seed)
    adversarial: dict[tuple, list[torch.Tensor]] = {key: [] for key in grid}
    start = 0
    for batch in _device_batches(loader, device):
        rows = slice(start, start + len(batch["pid"]))
        start = rows.stop
        query = batch["is_query"]
        if not query.any():
            break
        images = batch["image"]
        positives = true_matches(batch["pid"][query], batch["camid"][query], gallery["pid"], gallery["camid"])
        feature_fn = lambda x: source.net.retrieval_features(x, flip=source.hparams.flip_test)  # noqa: E731
        for method, loss, eps in grid:
            per_sample_loss = (
                None
                if loss == "none"
                else build_reid_loss(
                    loss,
                    feature_fn,
                    clean=features["source"][rows][query],
                    gallery=gallery["source"],
                    positives=positives,
                    distance=source.hparams.distance,
                )
            )
            attacked = images.clone()
            attacked[query] = attack_images(
                method,
                per_sample_loss,
                images[query],
                eps,
                settings,
                generator,
                random_start=loss in NEEDS_RANDOM_START,
            )
            adversarial[(method, loss, eps)].append(_features(target, attacked)[query])
    query_ids = (features["pid"][is_query], features["camid"][is_query])
    table = [_ranking_row("clean", "none", 0.0, features["target"][is_query], gallery, query_ids, hp)]
    for (method, loss, eps), parts in adversarial.items():
        table.append(_ranking_row(method, loss, eps, torch.cat(parts), gallery, query_ids, hp))
    return table


def _ranking_row(method: str, loss: str, eps: float, query: torch.Tensor, gallery: dict, query_ids, hp) -> dict:
    distmat = pairwise_distance(query, gallery["target"], hp.distance)
    result = evaluate_ranking(distmat, query_ids[0], gallery["pid"], query_ids[1], gallery["camid"], ap=hp.ap)
    return {"method": method, "loss": loss, "eps": eps, "mAP": result["mAP"], "rank1": result["rank1"]}


def classification_robustness(
    target: nn.Module, source: nn.Module, loader, settings: AttackSettings, device: torch.device
) -> list[dict]:
    """Accuracy of `target` on the test set for each attack made on `source`'s logits."""
    losses = settings.losses_for("classification")
    grid = [("clean", "none", 0.0), *attack_grid(settings, losses)]
    generator = torch.Generator(device=device).manual_seed(settings.seed)
    correct = dict.fromkeys(grid, 0)
    total = 0
    for batch in _device_batches(loader, device):
        images, labels = batch["image"], batch["label"]
        total += len(labels)
        for method, loss, eps in grid:
            per_sample_loss = None if loss == "none" else build_classification_loss(loss, source.net, labels)
            attacked = (
                images
                if method == "clean"
                else attack_images(method, per_sample_loss, images, eps, settings, generator)
            )
            with torch.no_grad():
                correct[(method, loss, eps)] += int((target.net(attacked).argmax(dim=1) == labels).sum())
    return [
        {"method": method, "loss": loss, "eps": eps, "accuracy": correct[(method, loss, eps)] / total}
        for method, loss, eps in grid
    ]


def run_robustness(
    task: str, target: nn.Module, source: nn.Module, loader, settings: AttackSettings, device: torch.device
) -> list[dict]:
    """The robustness table (one row per method, loss and eps, plus the clean row)."""
    target.eval().to(device)
    source.eval().to(device)
    evaluate = reid_robustness if task == "reid" else classification_robustness
    rows = evaluate(target, source, loader, settings, device)
    mode = "white-box" if source is target else "transfer"
    return [{"mode": mode, **row} for row in rows]


def flat_metrics(rows: list[dict], task: str) -> dict[str, float]:
    """Rows as metrics.json keys: attack/<method>/<loss>/eps<eps>/<metric>."""
    return {
        f"attack/{row['method']}/{row['loss']}/eps{row['eps']:g}/{metric}": row[metric]
        for row in rows
        for metric in TASK_METRICS[task]
    }


def evaluate_robustness(
    task: str,
    target: nn.Module,
    source: nn.Module,
    loader,
    settings: AttackSettings,
    device: torch.device,
    run_dir: Path,
    info: dict,
) -> dict[str, float]:
    """Run the table, write its files into `run_dir`, print it; return it as metrics.json keys."""
    rows = run_robustness(task, target, source, loader, settings, device)
    write_robustness(rows, task, run_dir, info)
    print(f"\nRobustness ({settings.name}, {rows[0]['mode']}; eps in 1/255 of the [0, 1] pixel range):")
    print(format_table(rows, task))
    return flat_metrics(rows, task)


def write_robustness(rows: list[dict], task: str, run_dir: Path, info: dict) -> None:
    """robustness.json (rows + settings), robustness.csv (rows) and robustness.png."""
    write_json(run_dir / "robustness.json", {**info, "task": task, "eps_unit": "1/255", "rows": rows})
    with (run_dir / "robustness.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    plot_robustness(rows, task, run_dir / "robustness.png", title=f"{info.get('preset', '')} ({rows[0]['mode']})")


def plot_robustness(rows: list[dict], task: str, path: Path, title: str = "") -> None:
    """One panel per metric: the metric against eps, one line per (method, loss)."""
    metrics = TASK_METRICS[task]
    figure = Figure(figsize=(5.5 * len(metrics), 4))
    axes = figure.subplots(1, len(metrics), squeeze=False)
    curves: dict[tuple[str, str], list[dict]] = {}
    for row in rows:
        if row["method"] != "clean":
            curves.setdefault((row["method"], row["loss"]), []).append(row)
    for axis, metric in zip(axes[0], metrics):
        for (method, loss), points in curves.items():
            points = sorted(points, key=lambda row: row["eps"])
            label = method if loss == "none" else f"{method} / {loss}"
            axis.plot([p["eps"] for p in points], [p[metric] for p in points], marker="o", label=label)
        axis.set_xlabel("eps (x 1/255)")
        axis.set_ylabel(metric)
        axis.set_ylim(-0.02, 1.02)
        axis.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def format_table(rows: list[dict], task: str) -> str:
    """The table as aligned text: mode, method, loss, eps, then the task's metrics."""
    header = ["mode", "method", "loss", "eps/255", *TASK_METRICS[task]]
    lines = [
        [row["mode"], row["method"], row["loss"], f"{row['eps']:g}", *(f"{row[m]:.4f}" for m in TASK_METRICS[task])]
        for row in rows
    ]
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *lines)]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(line, widths)) for line in [header, *lines])
