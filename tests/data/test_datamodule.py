"""The re-ID DataModule: batches, splits, the P x K sampler, and its errors."""

from collections import Counter

import pytest
import torch

from lfm.data.datamodule import ReIDDataModule
from lfm.data.samplers import IdentityBalancedSampler
from lfm.errors import InputError


def make_datamodule(root, **overrides):
    settings = dict(root=str(root), image_size=(64, 32), batch_size=8, eval_batch_size=16, num_workers=0, val_ids=2)
    return ReIDDataModule(**{**settings, **overrides})


@pytest.mark.parametrize("pipeline", ["tensor", "pil"])
def test_train_batches_are_images_in_unit_range_with_labels(tiny_market, pipeline):
    datamodule = make_datamodule(tiny_market, pipeline=pipeline)
    datamodule.setup("fit")
    batch = next(iter(datamodule.train_dataloader()))
    assert batch["image"].shape == (8, 3, 64, 32)
    assert batch["image"].dtype == torch.float32
    assert 0.0 <= batch["image"].min() and batch["image"].max() <= 1.0
    assert batch["label"].min() >= 0 and batch["label"].max() < datamodule.num_classes


def test_num_classes_counts_training_identities_minus_held_out(tiny_market):
    datamodule = make_datamodule(tiny_market, val_ids=2)
    datamodule.setup("fit")
    all_ids = {sample.pid for sample in datamodule.train_set.samples}
    assert datamodule.num_classes == len(all_ids)
    val_ids = {sample.pid for sample in datamodule.val_set.samples}
    assert len(val_ids) == 2 and val_ids.isdisjoint(all_ids)


@pytest.mark.parametrize("pipeline", ["tensor", "pil"])
def test_test_set_puts_queries_first(tiny_market, pipeline):
    datamodule = make_datamodule(tiny_market, pipeline=pipeline)
    datamodule.setup("test")
    batch = next(iter(datamodule.test_dataloader()))
    test_set = datamodule.test_set
    assert test_set.num_query > 0
    assert batch["is_query"].tolist() == [i < test_set.num_query for i in range(len(batch["is_query"]))]
    assert batch["index"].tolist() == list(range(len(batch["index"])))


def test_no_validation_without_held_out_ids(tiny_market):
    datamodule = make_datamodule(tiny_market, val_ids=0)
    datamodule.setup("fit")
    assert datamodule.val_set is None and datamodule.val_dataloader() == []


@pytest.mark.parametrize("pipeline", ["tensor", "pil"])
def test_identity_balanced_batches_hold_p_identities_of_k_images(tiny_market, pipeline):
    datamodule = make_datamodule(
        tiny_market, sampler="identity_balanced", batch_size=8, num_instances=4, pipeline=pipeline
    )
    datamodule.setup("fit")
    for batch, _ in zip(datamodule.train_dataloader(), range(3)):
        counts = Counter(batch["label"].tolist())
        assert sorted(counts.values()) == [4, 4]


def test_identity_balanced_sampler_is_reproducible_and_changes_per_epoch():
    labels = [i // 3 for i in range(30)]
    sampler = IdentityBalancedSampler(labels, num_instances=4, seed=1)
    first = list(sampler)
    assert first == list(IdentityBalancedSampler(labels, num_instances=4, seed=1))
    sampler.set_epoch(1)
    assert list(sampler) != first
    assert len(first) == len(sampler)
    groups = [first[i : i + 4] for i in range(0, len(first), 4)]
    assert all(len({labels[index] for index in group}) == 1 for group in groups)


def test_both_pipelines_give_identical_evaluation_batches(tiny_market):
    batches = {}
    for pipeline in ("tensor", "pil"):
        datamodule = make_datamodule(tiny_market, pipeline=pipeline)
        datamodule.setup("fit")
        datamodule.setup("test")
        batches[pipeline] = [list(datamodule.val_dataloader()), list(datamodule.test_dataloader())]
    for tensor_loader, pil_loader in zip(batches["tensor"], batches["pil"]):
        assert len(tensor_loader) == len(pil_loader)
        for tensor_batch, pil_batch in zip(tensor_loader, pil_loader):
            for key in ("image", "pid", "camid", "is_query", "index"):
                assert torch.equal(tensor_batch[key], pil_batch[key]), key


def test_tensor_training_epochs_cover_the_training_set_without_repeats(tiny_market):
    datamodule = make_datamodule(tiny_market, batch_size=8)
    datamodule.setup("fit")
    loader = datamodule.train_dataloader()
    labels = [datamodule.train_set.labels[sample.pid] for sample in datamodule.train_set.samples]
    assert len(loader) == len(labels) // 8
    epoch = torch.cat([batch["label"] for batch in loader])
    assert len(epoch) == len(loader) * 8
    assert Counter(epoch.tolist()) <= Counter(labels)
    loader.sampler.set_epoch(1)
    assert not torch.equal(torch.cat([batch["label"] for batch in loader]), epoch)


@pytest.mark.parametrize("split", ["train", "test"])
def test_ddp_ranks_take_disjoint_shares_of_each_epoch(tiny_market, split):
    datamodule = make_datamodule(tiny_market, batch_size=8, eval_batch_size=16)
    datamodule.setup("fit")
    datamodule.setup("test")
    single = datamodule.train_dataloader() if split == "train" else datamodule.test_dataloader()
    shares = []
    for rank in (0, 1):
        loader = datamodule.train_dataloader() if split == "train" else datamodule.test_dataloader()
        loader.rank, loader.world_size = rank, 2
        shares.append(list(loader))
    if split == "train":
        assert len(shares[0]) == len(shares[1]) == len(single) // 2
        images = [image for share in shares for batch in share for image in batch["image"]]
        assert len({image.sum().item() for image in images}) > 0.9 * len(images)
    else:
        indices = [torch.cat([batch["index"] for batch in share]) for share in shares]
        assert sorted(torch.cat(indices).tolist()) == list(range(len(datamodule.test_set)))
        expected = torch.cat([batch["image"] for batch in single])
        for share, share_indices in zip(shares, indices):
            assert torch.equal(torch.cat([batch["image"] for batch in share]), expected[share_indices])


def test_augmentation_draws_continue_from_a_saved_state(tiny_market):
    datamodule = make_datamodule(tiny_market, batch_size=8)
    datamodule.setup("fit")
    loader = datamodule.train_dataloader()
    next(iter(loader))
    state = datamodule.state_dict()
    expected = next(iter(loader))["image"]
    restored = make_datamodule(tiny_market, batch_size=8)
    restored.setup("fit")
    restored.load_state_dict(state)
    assert torch.equal(next(iter(restored.train_dataloader()))["image"], expected)


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        ({"sampler": "balanced"}, "data.sampler"),
        ({"image_size": (8, 4)}, "data.image_size"),
        ({"batch_size": 0}, "data.batch_size"),
        ({"sampler": "identity_balanced", "batch_size": 10, "num_instances": 4}, "data.batch_size=10"),
        ({"pipeline": "dali"}, "data.pipeline"),
        ({"cache_max_memory": 0}, "data.cache_max_memory"),
        ({"random_erasing": {"p": 2}}, "data.random_erasing.p"),
    ],
)
def test_bad_settings_name_the_key(tiny_market, overrides, key):
    with pytest.raises(InputError, match=key):
        make_datamodule(tiny_market, **overrides)


def test_synthetic_dataset_is_generated_on_first_use(tmp_path):
    root = tmp_path / "generated"
    datamodule = make_datamodule(root, synthetic={"preset": "duke_style", "seed": 3, "scale": 0.05})
    datamodule.prepare_data()
    datamodule.setup("test")
    assert (root / "synthetic.json").is_file()
    assert max(sample.camid for sample in datamodule.test_set.samples) <= 8


def test_synthetic_root_holding_other_files_is_refused(tmp_path):
    root = tmp_path / "mine"
    root.mkdir()
    (root / "notes.txt").write_text("my work")
    datamodule = make_datamodule(root, synthetic={"preset": "market_style", "seed": 0, "scale": 0.05})
    with pytest.raises(InputError, match="data.root"):
        datamodule.prepare_data()
    assert (root / "notes.txt").read_text() == "my work"
