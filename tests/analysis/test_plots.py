"""Notebook figures: what each one draws, and that it is written to a file."""

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from matplotlib.colors import to_rgba

from lfm.analysis.inspection import RankingList
from lfm.analysis.plots import (
    MATCH_COLOUR,
    OTHER_COLOUR,
    comparison_figure,
    feature_masks_figure,
    heatmap_figure,
    masked_fraction_figure,
    ranking_lists_figure,
    robustness_curves_figure,
    save_figure,
)
from lfm.analysis.tables import RobustnessRun, SeedSummary


def summary(after: str, ratio: float, mean: float, std: float = math.nan, seeds=(0,), regularizer: str = "lfm"):
    settings = {"regularizer": regularizer, "model.lfm.after": after, "model.lfm.mask_ratio": ratio}
    return SeedSummary(settings, mean, std, tuple(seeds))


def texts(figure) -> list[str]:
    return [text.get_text() for axis in figure.axes for text in axis.texts]


def test_save_figure_writes_a_png_in_a_new_folder(tmp_path):
    figure = heatmap_figure([summary("conv1", 0.5, 0.3)], "model.lfm.after", "model.lfm.mask_ratio", title="t")
    path = save_figure(figure, tmp_path / "figures" / "heatmap.png")
    assert path == tmp_path / "figures" / "heatmap.png"
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_heatmap_colours_the_means_and_names_missing_cells():
    summaries = [
        summary("conv1", 0.25, 0.2, 0.01, (0, 1)),
        summary("conv1", 0.5, 0.4, 0.02, (0, 1)),
        summary("layer1", 0.5, 0.3),
    ]
    figure = heatmap_figure(summaries, "model.lfm.after", "model.lfm.mask_ratio", title="test/mAP")
    axis = figure.axes[0]
    image = axis.images[0].get_array()
    assert image[0, 0] == pytest.approx(0.2) and image[0, 1] == pytest.approx(0.4) and image.mask[1, 0]
    assert texts(figure)[:2] == ["0.200\n± 0.010\n(n=2)", "0.400\n± 0.020\n(n=2)"]
    assert texts(figure)[2:] == ["no run", "0.300\n(n=1)"]
    assert [label.get_text() for label in axis.get_yticklabels()] == ["conv1", "layer1"]
    assert axis.get_xlabel() == "model.lfm.mask_ratio"


def test_comparison_bars_are_the_means_with_their_spread():
    summaries = [
        summary("", "", 0.1, 0.02, (0, 1), regularizer="none"),
        summary("conv1", 0.5, 0.3, 0.05, (0, 1)),
        summary("", "", 0.2, regularizer="dropblock"),
    ]
    figure = comparison_figure(summaries, metric="test/mAP", label_keys=["model.lfm.after", "model.lfm.mask_ratio"])
    axis = figure.axes[0]
    assert [bar.get_height() for bar in axis.patches] == pytest.approx([0.1, 0.3, 0.2])
    labels = [label.get_text() for label in axis.get_xticklabels()]
    assert labels == ["none", "lfm\nafter=conv1\nmask_ratio=0.5", "dropblock"]
    error_bars = next(container for container in axis.containers if container.has_yerr).lines[2][0].get_segments()
    assert [segment[1][1] - segment[0][1] for segment in error_bars] == pytest.approx([0.04, 0.1, 0.0])


def test_robustness_curves_have_a_panel_per_metric_and_attack_and_a_line_per_model():
    def run(label: str, values: list[float]) -> RobustnessRun:
        rows = [{"method": "clean", "loss": "none", "eps": 0.0, "mAP": 0.5, "rank1": 0.6}]
        rows += [
            {"method": "ifgsm", "loss": "metric", "eps": eps, "mAP": value, "rank1": value}
            for eps, value in zip((0.0, 4.0, 8.0), values)
        ]
        rows += [{"method": "noise", "loss": "none", "eps": 8.0, "mAP": 0.45, "rank1": 0.5}]
        return RobustnessRun(label, Path(label), Path("x.ckpt"), "reid", rows)

    figure = robustness_curves_figure([run("baseline", [0.5, 0.2, 0.1]), run("lfm", [0.5, 0.3, 0.2])], ["mAP", "rank1"])
    assert len(figure.axes) == 4
    ifgsm_map = figure.axes[0]
    assert ifgsm_map.get_title() == "ifgsm / metric" and figure.axes[1].get_title() == "noise"
    assert [line.get_label() for line in ifgsm_map.lines] == ["baseline", "lfm"]
    assert list(ifgsm_map.lines[1].get_xdata()) == [0.0, 4.0, 8.0]
    assert list(ifgsm_map.lines[1].get_ydata()) == [0.5, 0.3, 0.2]
    assert figure.axes[2].get_ylabel() == "rank1"


def test_ranking_lists_frame_true_matches_green_and_others_red():
    image = torch.rand(3, 16, 8)
    lists = [
        RankingList("clean", image, torch.rand(3, 3, 16, 8), [True, False, True], [0.1, 0.2, 0.3]),
        RankingList("attacked", image, torch.rand(2, 3, 16, 8), [False, False], [0.5, 0.6]),
    ]
    figure = ranking_lists_figure(lists)
    axes = np.array(figure.axes).reshape(2, 4)
    frame = lambda axis: axis.spines["top"].get_edgecolor()  # noqa: E731
    assert [frame(axis) for axis in axes[0][1:]] == [
        to_rgba(MATCH_COLOUR),
        to_rgba(OTHER_COLOUR),
        to_rgba(MATCH_COLOUR),
    ]
    assert axes[0][1].get_title() == "#1 d=0.10" and axes[1][0].get_ylabel() == "attacked"
    assert not axes[1][3].axison  # the shorter list leaves its last slot empty


def test_feature_masks_show_a_masked_channel_before_and_after_for_each_preset():
    before = {"conv1": torch.rand(1, 4, 8, 4), "layer1": torch.rand(1, 4, 4, 2)}
    mask = torch.zeros(1, 4, 8, 4, dtype=torch.bool)
    mask[0, 2, 2:5, 1:3] = True
    masked = before["conv1"].masked_fill(mask, 0.0)
    after = {
        "paper": {"conv1": (masked, mask), "layer1": (before["layer1"], torch.zeros(1, 4, 4, 2, dtype=torch.bool))}
    }
    figure = feature_masks_figure(torch.rand(3, 16, 8), before, after)
    axes = np.array(figure.axes).reshape(2, 4)
    assert axes[0][1].get_title() == "paper: before\n(channel 2)"
    np.testing.assert_array_equal(axes[0][1].images[0].get_array(), before["conv1"][0, 2].numpy())
    np.testing.assert_array_equal(axes[0][2].images[0].get_array(), masked[0, 2].numpy())
    np.testing.assert_array_equal(axes[0][3].images[0].get_array(), mask[0].float().mean(dim=0).numpy())
    assert axes[1][0].get_ylabel() == "layer1\n(4, 4, 2)"


def test_masked_fraction_histograms_mark_the_expected_and_realised_means():
    samples = {"paper": {"conv1": ([0.0, 0.1, 0.1, 0.0], 0.06)}, "official": {"conv1": ([0.0, 0.0, 0.0, 0.04], 0.02)}}
    figure = masked_fraction_figure(samples)
    axis = figure.axes[0]
    vertical = [line.get_xdata()[0] for line in axis.lines]
    assert vertical == pytest.approx([0.06, 0.05, 0.02, 0.01])
    assert [text.get_text() for text in axis.get_legend().get_texts()] == ["paper", "official"]
