"""A trained re-ID model up close, for the notebooks: feature maps before and after LFM at each
insertion depth, the masked fraction LFM realises, and one query's ranking list, clean and attacked."""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from omegaconf import OmegaConf
from torch import nn

from lfm.attacks.reid import NEEDS_RANDOM_START, build_reid_loss, true_matches
from lfm.attacks.robustness import AttackSettings, attack_images
from lfm.data.market import ReIDImageDataset, load_image
from lfm.data.transforms import eval_transform
from lfm.errors import InputError
from lfm.masking import LocalFeatureMasking, local_feature_masking, sample_feature_mask
from lfm.metrics.distance import pairwise_distance
from lfm.models.insertion import insert_after_each
from lfm.models.reid import ReIDModule
from lfm.project import CONF_DIR
from lfm.runs.pipeline import build_datamodule, load_checkpoint, load_module, testing_data_settings

LFM_PRESET_DIR = CONF_DIR / "lfm"


def lfm_preset(name: str) -> dict:
    """The masking settings of conf/lfm/<name>.yaml (paper, official): `_target_` and `after` left out."""
    path = LFM_PRESET_DIR / f"{name}.yaml"
    if not path.is_file():
        presets = sorted(file.stem for file in LFM_PRESET_DIR.glob("*.yaml"))
        raise InputError(f"unknown LFM preset {name!r}; choose from {presets} (conf/lfm/)")
    settings = OmegaConf.to_container(OmegaConf.load(path))
    settings.pop("after", None)
    settings.pop("_target_", None)
    return settings


def load_trained(checkpoint: Path) -> tuple[ReIDModule, ReIDImageDataset]:
    """A re-ID checkpoint of src/train.py in eval mode, and its test set (query first, then gallery)."""
    checkpoint = Path(checkpoint)
    contents = load_checkpoint(checkpoint)
    if contents.get("task", "reid") != "reid":
        raise InputError(f"{checkpoint} holds a {contents['task']} model; the notebooks inspect re-ID models")
    datamodule = build_datamodule(testing_data_settings(contents["datamodule_hyper_parameters"]), seed=0)
    datamodule.prepare_data()
    datamodule.setup("test")
    return load_module(checkpoint, contents).eval(), datamodule.test_set


def input_image(dataset: ReIDImageDataset, index: int, image_size: Sequence[int]) -> torch.Tensor:
    """Image `index` of the dataset as the network sees it at evaluation, at `image_size` [3, H, W] in [0, 1]."""
    return eval_transform(tuple(image_size))(load_image(dataset.samples[index].path))


class _Recorder(nn.Module):
    """Identity that keeps what passed through it."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.output = x.detach()
        return x


@torch.no_grad()
def feature_maps(net: nn.Module, images: torch.Tensor, points: Sequence[str]) -> dict[str, torch.Tensor]:
    """The outputs of the submodules `points` of `net.backbone` when `net` (in eval mode) runs on `images`."""
    recorders, handles = insert_after_each(net.backbone, list(points), _Recorder)
    try:
        net.eval()(images)
    finally:
        for handle in handles:
            handle.remove()
    return {point: recorders[point.replace(".", "__")].output for point in points}


def mask_feature_map(feature_map: torch.Tensor, settings: Mapping, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """One LFM draw (training mode) on `feature_map` [B, C, H, W]: (masked map, boolean mask)."""
    draw_settings = {key: value for key, value in settings.items() if key != "fill"}
    mask = sample_feature_mask(feature_map.shape, **draw_settings, generator=torch.Generator().manual_seed(seed))
    # The same generator state draws the same regions, then the fill values.
    masked = local_feature_masking(feature_map, **settings, generator=torch.Generator().manual_seed(seed))
    return masked, mask


def mask_with_presets(maps: Mapping[str, torch.Tensor], presets: Mapping[str, Mapping], seed: int = 0) -> dict:
    """preset -> point -> (masked map, mask): one draw of each preset on each feature map, with every
    sample masked (p = 1) so that the draw shows what a masked sample looks like."""
    return {
        name: {
            point: mask_feature_map(feature_map, {**settings, "p": 1.0}, seed) for point, feature_map in maps.items()
        }
        for name, settings in presets.items()
    }


def masked_fractions(
    feature_map: torch.Tensor, settings: Mapping, draws: int = 500, seed: int = 0
) -> tuple[list[float], float]:
    """LFM applied `draws` times to `feature_map` [B, C, H, W]: the fraction of values each draw masked
    (`LocalFeatureMasking.masked_fraction`), and the fraction the settings ask for on average."""
    layer = LocalFeatureMasking(**settings).train()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        fractions = []
        for _ in range(draws):
            layer(feature_map)
            fractions.append(float(layer.masked_fraction))
    return fractions, layer.expected_fraction


@dataclass(frozen=True)
class RankingList:
    """A query and its top-k gallery images, best first, with the true matches (same person, another camera)."""

    title: str
    query: torch.Tensor  # [3, H, W] in [0, 1]: the image that was ranked (attacked, for an attack)
    gallery: torch.Tensor  # [k, 3, H, W]
    is_match: list[bool]
    distances: list[float]


def _images(dataset: ReIDImageDataset, indices: Sequence[int]) -> torch.Tensor:
    return torch.stack([dataset[index]["image"] for index in indices])


@torch.no_grad()
def _features(
    module: ReIDModule, dataset: ReIDImageDataset, indices: Sequence[int], batch_size: int = 128
) -> torch.Tensor:
    """Evaluation features of the dataset's images `indices`, loaded a batch at a time."""
    return torch.cat(
        [
            module.net.retrieval_features(_images(dataset, indices[i : i + batch_size]), flip=module.hparams.flip_test)
            for i in range(0, len(indices), batch_size)
        ]
    )


def ranking_lists(
    module: ReIDModule,
    dataset: ReIDImageDataset,
    *,
    method: str = "ifgsm",
    loss: str = "metric",
    eps: float = 8,
    top_k: int = 5,
    query: int | None = None,
    seed: int = 0,
) -> tuple[RankingList, RankingList]:
    """One query's top-k gallery images, clean and under an attack (eps in 1/255, as src/eval.py).

    The gallery is filtered as the metric does (same person and camera dropped). `query` None
    picks the first query whose clean top-1 is a true match, so the attack has a match to push away.
    """
    module.eval()
    num_query = dataset.num_query
    if query is not None and not 0 <= query < num_query:
        raise InputError(f"query={query} is not a query index; choose one in [0, {num_query})")
    pids = torch.tensor([sample.pid for sample in dataset.samples])
    camids = torch.tensor([sample.camid for sample in dataset.samples])
    q_pids, q_camids, g_pids, g_camids = pids[:num_query], camids[:num_query], pids[num_query:], camids[num_query:]
    gallery = range(num_query, len(dataset))
    gallery_features = _features(module, dataset, gallery)
    distance = module.hparams.distance
    matches = true_matches(q_pids, q_camids, g_pids, g_camids)
    # The protocol drops the query's own camera shots of the same person from its gallery.
    dropped = (q_pids[:, None] == g_pids[None, :]) & (q_camids[:, None] == g_camids[None, :])
    distances = pairwise_distance(_features(module, dataset, range(num_query)), gallery_features, distance)
    distances = distances.masked_fill(dropped, float("inf"))
    index = _default_query(distances, matches) if query is None else query
    image = _images(dataset, [index])
    feature_fn = lambda x: module.net.retrieval_features(x, flip=module.hparams.flip_test)  # noqa: E731
    with torch.no_grad():
        clean_feature = feature_fn(image)
    per_sample_loss = build_reid_loss(
        loss,
        feature_fn,
        clean=clean_feature,
        gallery=gallery_features,
        positives=matches[index : index + 1],
        distance=distance,
    )
    settings = AttackSettings(name="ranking_list", eps=(float(eps),), methods=(method,), losses=(loss,))
    attacked = attack_images(
        method,
        per_sample_loss,
        image,
        eps,
        settings,
        torch.Generator().manual_seed(seed),
        random_start=loss in NEEDS_RANDOM_START,
    )
    with torch.no_grad():
        attacked_distances = pairwise_distance(feature_fn(attacked), gallery_features, distance)[0]
    attacked_distances = attacked_distances.masked_fill(dropped[index], float("inf"))
    ranked = [
        ("clean", image[0], distances[index]),
        (f"{method} / {loss}, eps {eps:g}/255", attacked[0], attacked_distances),
    ]
    return tuple(
        _ranking_list(title, query_image, row, matches[index], dataset, gallery, top_k)
        for title, query_image, row in ranked
    )


def _default_query(distances: torch.Tensor, matches: torch.Tensor) -> int:
    top1_is_match = matches.gather(1, distances.argmin(dim=1, keepdim=True))[:, 0]
    candidates = top1_is_match.nonzero()
    if len(candidates) == 0:
        candidates = matches.any(dim=1).nonzero()
    if len(candidates) == 0:
        raise InputError("no query has a true match in the gallery (same person, another camera)")
    return int(candidates[0, 0])


def _ranking_list(
    title: str,
    query: torch.Tensor,
    distances: torch.Tensor,
    matches: torch.Tensor,
    dataset: ReIDImageDataset,
    gallery: Sequence[int],
    top_k: int,
) -> RankingList:
    order = [int(i) for i in distances.argsort()[:top_k] if distances[i].isfinite()]
    return RankingList(
        title,
        query,
        _images(dataset, [gallery[i] for i in order]),
        [bool(matches[i]) for i in order],
        [float(distances[i]) for i in order],
    )
