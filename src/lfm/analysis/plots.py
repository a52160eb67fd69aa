"""Figures for the notebooks, from the tables of lfm.analysis.tables and the probes of lfm.analysis.inspection.

Each function returns a matplotlib Figure (no pyplot state); `save_figure` writes one to a file.
"""

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure

from lfm.analysis.inspection import RankingList
from lfm.analysis.tables import RobustnessRun, SeedSummary, grid

MATCH_COLOUR, OTHER_COLOUR = "tab:green", "tab:red"


def save_figure(figure: Figure, path: Path) -> Path:
    """Write `figure` as an image (format from the suffix, e.g. .png) and return its path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120, bbox_inches="tight")
    return path


def _show_image(axis, image: torch.Tensor) -> None:
    axis.imshow(image.permute(1, 2, 0).clamp(0, 1).numpy())
    axis.set_xticks([])
    axis.set_yticks([])


def _show_map(axis, values: torch.Tensor, vmin: float, vmax: float, cmap: str = "viridis") -> None:
    axis.imshow(values.numpy(), cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest")
    axis.set_xticks([])
    axis.set_yticks([])


def feature_masks_figure(
    image: torch.Tensor,
    before: Mapping[str, torch.Tensor],
    after: Mapping[str, Mapping[str, tuple[torch.Tensor, torch.Tensor]]],
) -> Figure:
    """One row per insertion point: the input image, then for each LFM preset a channel it masked
    before and after masking, and the share of channels masked at each position.

    `before`: point -> feature maps [B, C, H, W]; `after`: preset -> point -> (masked maps, masks), both
    [B, C, H, W] (lfm.analysis.inspection.mask_with_presets). The first sample is shown.
    """
    points, presets = list(before), list(after)
    figure = Figure(figsize=(1.6 * (1 + 3 * len(presets)), 2.4 * len(points)))
    axes = figure.subplots(len(points), 1 + 3 * len(presets), squeeze=False)
    for row, point in enumerate(points):
        _show_image(axes[row][0], image)
        axes[row][0].set_ylabel(f"{point}\n{tuple(before[point].shape[1:])}", fontsize=8)
        for number, preset in enumerate(presets):
            original, (masked, mask) = before[point][0], (tensor[0] for tensor in after[preset][point])
            hit = mask.flatten(1).any(dim=1).nonzero()
            channel = int(hit[0, 0]) if len(hit) else 0
            low, high = float(original[channel].min()), float(original[channel].max())
            first = 1 + 3 * number
            _show_map(axes[row][first], original[channel], low, high)
            _show_map(axes[row][first + 1], masked[channel], low, high)
            _show_map(axes[row][first + 2], mask.float().mean(dim=0), 0.0, 1.0, cmap="magma")
            if row == 0:
                axes[row][first].set_title(f"{preset}: before\n(channel {channel})", fontsize=8)
                axes[row][first + 1].set_title(f"{preset}: after", fontsize=8)
                axes[row][first + 2].set_title(f"{preset}: share of\nchannels masked", fontsize=8)
    axes[0][0].set_title("input", fontsize=8)
    figure.suptitle("LFM on the feature maps at each insertion depth (one masked draw per preset)")
    figure.tight_layout()
    return figure


def masked_fraction_figure(samples: Mapping[str, Mapping[str, tuple[Sequence[float], float]]]) -> Figure:
    """One panel per insertion point: the histogram of the realised masked fraction per preset, with the
    fraction the settings ask for (dashed) and the realised mean (solid).

    `samples`: preset -> point -> (masked fraction of each draw, expected fraction).
    """
    presets = list(samples)
    points = list(samples[presets[0]])
    figure = Figure(figsize=(3.6 * len(points), 3.2))
    axes = figure.subplots(1, len(points), squeeze=False)[0]
    colours = [f"C{number}" for number in range(len(presets))]
    for axis, point in zip(axes, points):
        largest = max(max(samples[preset][point][0]) for preset in presets)
        for preset, colour in zip(presets, colours):
            fractions, expected = samples[preset][point]
            axis.hist(fractions, bins=40, range=(0, max(0.01, largest)), alpha=0.5, color=colour, label=preset)
            axis.axvline(expected, color=colour, linestyle="--", linewidth=1)
            axis.axvline(float(np.mean(fractions)), color=colour, linewidth=1)
        axis.set_title(point)
        axis.set_xlabel("masked fraction of the feature values")
        axis.set_yscale("log")
    axes[0].set_ylabel("draws")
    axes[0].legend(fontsize=8)
    figure.suptitle("Realised masked fraction per draw (solid: mean; dashed: p x k/C x mean area)")
    figure.tight_layout()
    return figure


def _summary_text(summary: SeedSummary) -> str:
    spread = "" if math.isnan(summary.std) else f"\n± {summary.std:.3f}"
    return f"{summary.mean:.3f}{spread}\n(n={summary.n})"


def heatmap_figure(
    summaries: Sequence[SeedSummary], row_key: str, column_key: str, *, title: str, frame: Sequence[SeedSummary] = ()
) -> Figure:
    """Seed summaries on a grid of two parameters (lfm.analysis.tables.grid, `frame` included): colour = mean,
    text = mean ± std and the number of seeds."""
    rows, columns, cells = grid(summaries, row_key, column_key, frame)
    means = np.array([[np.nan if cell is None else cell.mean for cell in line] for line in cells], dtype=float)
    figure = Figure(figsize=(1.2 + 1.5 * len(columns), 1.0 + 1.0 * len(rows)))
    axis = figure.subplots()
    image = axis.imshow(np.ma.masked_invalid(means), cmap="viridis")
    for i, line in enumerate(cells):
        for j, cell in enumerate(line):
            text = "no run" if cell is None else _summary_text(cell)
            axis.text(j, i, text, ha="center", va="center", fontsize=8, color="white" if cell is not None else "black")
    axis.set_xticks(range(len(columns)), [str(value) for value in columns])
    axis.set_yticks(range(len(rows)), [str(value) for value in rows])
    axis.set_xlabel(column_key)
    axis.set_ylabel(row_key)
    axis.set_title(title, fontsize=9)
    figure.colorbar(image, ax=axis)
    figure.tight_layout()
    return figure


def comparison_figure(summaries: Sequence[SeedSummary], *, metric: str, label_keys: Sequence[str] = ()) -> Figure:
    """Bars with error bars (std over seeds), one per configuration, labelled by its regularizer and the
    non-empty values of `label_keys`."""
    labels = []
    for summary in summaries:
        details = [
            f"{key.rsplit('.', 1)[-1]}={summary.settings[key]}"
            for key in label_keys
            if summary.settings.get(key, "") != ""
        ]
        labels.append("\n".join([summary.settings.get("regularizer", ""), *details]))
    figure = Figure(figsize=(1.5 + 1.4 * len(summaries), 3.6))
    axis = figure.subplots()
    positions = range(len(summaries))
    errors = [0.0 if math.isnan(summary.std) else summary.std for summary in summaries]
    axis.bar(
        positions,
        [summary.mean for summary in summaries],
        yerr=errors,
        capsize=4,
        color=[f"C{number}" for number in positions],
    )
    for position, summary in zip(positions, summaries):
        axis.text(position, summary.mean, f" n={summary.n}", ha="left", va="bottom", fontsize=7)
    axis.set_xticks(list(positions), labels, fontsize=8)
    axis.set_ylabel(f"{metric} (mean ± std over seeds)")
    axis.grid(axis="y", alpha=0.3)
    figure.tight_layout()
    return figure


def robustness_curves_figure(runs: Sequence[RobustnessRun], metrics: Sequence[str]) -> Figure:
    """Rows: metrics; columns: attacks (method / loss); one line per model (eval run) against eps."""
    attacks = list(dict.fromkeys(attack for run in runs for attack in run.attacks))
    figure = Figure(figsize=(3.6 * len(attacks), 3.0 * len(metrics)))
    axes = figure.subplots(len(metrics), len(attacks), squeeze=False)
    for row, metric in enumerate(metrics):
        for column, (method, loss) in enumerate(attacks):
            axis = axes[row][column]
            for number, run in enumerate(runs):
                eps, values = run.curve(method, loss, metric)
                if eps:
                    axis.plot(eps, values, marker="o", color=f"C{number}", label=run.label)
            axis.set_title(method if loss == "none" else f"{method} / {loss}", fontsize=9)
            axis.set_xlabel("eps (x 1/255)")
            axis.set_ylabel(metric)
            axis.set_ylim(-0.02, 1.02)
            axis.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    figure.suptitle("Metric under attack against eps, per model")
    figure.tight_layout()
    return figure


def ranking_lists_figure(lists: Sequence[RankingList]) -> Figure:
    """One row per ranking list: the query, then its top-k gallery images framed green (true match) or red."""
    top_k = max(len(ranking.gallery) for ranking in lists)
    figure = Figure(figsize=(1.3 * (1 + top_k), 2.6 * len(lists)))
    axes = figure.subplots(len(lists), 1 + top_k, squeeze=False)
    for row, ranking in enumerate(lists):
        _show_image(axes[row][0], ranking.query)
        axes[row][0].set_title("query", fontsize=8)
        axes[row][0].set_ylabel(ranking.title, fontsize=8)
        for rank in range(top_k):
            axis = axes[row][1 + rank]
            if rank >= len(ranking.gallery):
                axis.set_axis_off()
                continue
            _show_image(axis, ranking.gallery[rank])
            colour = MATCH_COLOUR if ranking.is_match[rank] else OTHER_COLOUR
            for spine in axis.spines.values():
                spine.set_edgecolor(colour)
                spine.set_linewidth(4)
            axis.set_title(f"#{rank + 1} d={ranking.distances[rank]:.2f}", fontsize=8, color=colour)
    figure.suptitle("Ranking lists (green frame: true match, same person from another camera)")
    figure.tight_layout()
    return figure
