"""Model probes for the notebooks: feature maps around LFM, realised masked fractions, ranking lists."""

import pytest
import torch

from lfm.analysis.inspection import (
    feature_maps,
    input_image,
    lfm_preset,
    mask_feature_map,
    mask_with_presets,
    masked_fractions,
    ranking_lists,
)
from lfm.data.datamodule import ReIDDataModule
from lfm.errors import InputError
from lfm.models.reid import ReIDModule

OPTIMIZER = {"name": "sgd", "lr": 0.1}
SCHEDULER = {"name": "constant"}


@pytest.fixture(scope="module")
def model() -> ReIDModule:
    torch.manual_seed(0)
    return ReIDModule(
        backbone="resnet18", num_classes=4, optimizer=OPTIMIZER, scheduler=SCHEDULER, flip_test=False
    ).eval()


@pytest.fixture(scope="module")
def test_set(tiny_market):
    datamodule = ReIDDataModule(root=str(tiny_market), image_size=(64, 32), num_workers=0)
    datamodule.setup("test")
    return datamodule.test_set


def test_presets_are_read_from_the_lfm_config_group():
    paper, official = lfm_preset("paper"), lfm_preset("official")
    assert (paper["p"], paper["region"], paper["selection"]) == (0.5, "rectangle", "sample")
    assert (official["p"], official["region"], official["channel_sampling"]) == (0.15, "band", "with_replacement")
    assert "after" not in paper
    with pytest.raises(InputError, match="unknown LFM preset 'nope'.*official"):
        lfm_preset("nope")


def test_feature_maps_are_the_outputs_of_the_named_modules(model, test_set):
    image = input_image(test_set, 0, (64, 32))
    maps = feature_maps(model.net, image[None], ["conv1", "layer1", "layer2"])
    assert {point: tuple(value.shape) for point, value in maps.items()} == {
        "conv1": (1, 64, 32, 16),
        "layer1": (1, 64, 16, 8),
        "layer2": (1, 128, 8, 4),
    }
    backbone = model.net.backbone
    with torch.no_grad():
        expected = backbone.conv1((image[None] - model.net.mean) / model.net.std)
    torch.testing.assert_close(maps["conv1"], expected)
    assert not backbone.conv1._forward_hooks and not backbone.layer1._forward_hooks


def test_a_masked_draw_fills_exactly_its_mask():
    feature_map = torch.randn(2, 16, 12, 8)
    masked, mask = mask_feature_map(feature_map, {**lfm_preset("paper"), "p": 1.0, "fill": "zero"}, seed=3)
    assert mask.any() and mask.shape == feature_map.shape
    assert torch.equal(masked[mask], torch.zeros(int(mask.sum())))
    assert torch.equal(masked[~mask], feature_map[~mask])


def test_every_preset_shows_a_masked_sample():
    maps = {"conv1": torch.randn(1, 8, 16, 8), "layer1": torch.randn(1, 16, 8, 4)}
    after = mask_with_presets(maps, {"paper": lfm_preset("paper"), "official": lfm_preset("official")})
    for preset in ("paper", "official"):
        for point in maps:
            masked, mask = after[preset][point]
            assert mask.any(), (preset, point)
            assert not torch.equal(masked, maps[point])
    band = after["official"]["conv1"][1][0]
    masked_rows = band.any(dim=2)
    assert torch.equal(band.all(dim=2), masked_rows)  # bands span the whole width


def test_realised_masked_fraction_matches_the_paper_setting_and_bands_realise_less():
    feature_map = torch.randn(1, 64, 32, 16)
    fractions, expected = masked_fractions(feature_map, lfm_preset("paper"), draws=400)
    assert expected == pytest.approx(0.5 * 32 / 64 * (0.02 + 0.4) / 2)
    assert sum(fractions) / len(fractions) == pytest.approx(expected, rel=0.15)
    assert 0.3 < sum(f == 0 for f in fractions) / len(fractions) < 0.7  # p = 0.5 per sample
    band_fractions, band_expected = masked_fractions(feature_map, lfm_preset("official"), draws=400)
    assert sum(band_fractions) / len(band_fractions) < 0.8 * band_expected
    assert masked_fractions(feature_map, lfm_preset("paper"), draws=20, seed=1) == masked_fractions(
        feature_map, lfm_preset("paper"), draws=20, seed=1
    )


def test_ranking_lists_follow_the_protocol_and_the_attack_stays_in_its_ball(model, test_set):
    clean, attacked = ranking_lists(model, test_set, method="ifgsm", loss="metric", eps=8, top_k=4, query=2)
    query = test_set.samples[2]
    assert clean.title == "clean" and attacked.title == "ifgsm / metric, eps 8/255"
    assert len(clean.gallery) == len(attacked.gallery) == 4 and clean.gallery.shape[1:] == (3, 64, 32)
    assert clean.distances == sorted(clean.distances) and attacked.distances == sorted(attacked.distances)
    assert torch.equal(clean.query, test_set[2]["image"])
    delta = attacked.query - clean.query
    assert 0 < delta.abs().max() <= 8 / 255 + 1e-6 and attacked.query.min() >= 0 and attacked.query.max() <= 1
    gallery = {
        tuple(test_set[index]["image"].flatten()[:64].tolist()): test_set.samples[index]
        for index in range(test_set.num_query, len(test_set))
    }
    for image, is_match in zip(clean.gallery, clean.is_match):
        sample = gallery[tuple(image.flatten()[:64].tolist())]
        assert not (sample.pid == query.pid and sample.camid == query.camid)
        assert is_match == (sample.pid == query.pid)


def test_without_a_query_the_first_with_a_top1_match_is_shown_and_eps_0_changes_nothing(model, test_set):
    clean, unchanged = ranking_lists(model, test_set, eps=0, top_k=3)
    assert clean.is_match[0]
    assert unchanged.is_match == clean.is_match and unchanged.distances == pytest.approx(clean.distances, abs=1e-5)
    with pytest.raises(InputError, match="query=100000 is not a query index"):
        ranking_lists(model, test_set, query=100000)
