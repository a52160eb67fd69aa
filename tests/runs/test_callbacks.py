"""The Lightning callback form of LFM and the masked-fraction monitor."""

from types import SimpleNamespace

import lightning as L
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lfm.errors import InputError
from lfm.masking import LocalFeatureMasking
from lfm.models.backbones import ResNetFeatures
from lfm.runs.callbacks import LocalFeatureMaskingCallback, MaskedFractionMonitor, TrainingSpeedMonitor, insertion_label


class TinyClassifier(L.LightningModule):
    """A model that knows nothing about LFM: a backbone under `net.backbone` and a linear head."""

    def __init__(self):
        super().__init__()
        self.net = nn.Module()
        self.net.backbone = ResNetFeatures("resnet18")
        self.head = nn.Linear(512, 3)
        self.logged: dict[str, list[float]] = {}

    def training_step(self, batch, batch_idx):
        images, labels = batch
        logits = self.head(self.net.backbone(images).mean(dim=(2, 3)))
        return nn.functional.cross_entropy(logits, labels)

    def log(self, name, value, **kwargs):
        self.logged.setdefault(name, []).append(float(value))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)


def fit(model, callbacks, epochs=1, batches=4):
    torch.manual_seed(0)
    data = TensorDataset(torch.rand(batches * 4, 3, 64, 32), torch.randint(3, (batches * 4,)))
    trainer = L.Trainer(
        max_epochs=epochs,
        callbacks=callbacks,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
    )
    trainer.fit(model, DataLoader(data, batch_size=4))
    return trainer


def test_callback_attaches_lfm_at_fit_start_without_changing_the_model():
    model = TinyClassifier()
    state_keys = list(model.state_dict())
    callback = LocalFeatureMaskingCallback(after="layer1", p=1.0, mask_ratio=0.5, fill="zero")
    fit(model, [callback])
    assert list(callback.modules) == ["layer1"]
    assert list(model.state_dict()) == state_keys
    seen = {}
    model.net.backbone.layer2.register_forward_pre_hook(lambda _m, inputs: seen.__setitem__("x", inputs[0]))
    images = torch.rand(2, 3, 64, 32)
    model.eval()
    model.net.backbone(images)
    plain = seen["x"]
    model.lfm_callback.train()
    model.net.backbone(images)
    changed = seen["x"] != plain
    assert changed.any() and (seen["x"][changed] == 0).all()


def test_warm_up_grows_p_and_mask_ratio_linearly():
    seen = []

    class Record(L.Callback):
        def on_train_epoch_start(self, trainer, pl_module):
            module = pl_module.lfm_callback["conv1"]
            seen.extend([module.p, module.mask_ratio])

    callback = LocalFeatureMaskingCallback(after="conv1", p=0.8, mask_ratio=0.4, warmup_epochs=2)
    fit(TinyClassifier(), [callback, Record()], epochs=4, batches=1)
    assert seen == pytest.approx([0.0, 0.0, 0.4, 0.2, 0.8, 0.4, 0.8, 0.4])


def test_monitor_logs_realised_and_expected_fractions_that_agree():
    model = TinyClassifier()
    callback = LocalFeatureMaskingCallback(after=["conv1", "layer2.1"], p=0.5, mask_ratio=0.25)
    fit(model, [callback, MaskedFractionMonitor()], batches=12)
    for label in ("conv1", "layer2.1"):
        realised = model.logged[f"train/lfm_masked_fraction/{label}"]
        expected = model.logged[f"train/lfm_expected_fraction/{label}"]
        assert len(realised) == 12
        k = round(0.25 * (64 if label == "conv1" else 128))
        assert expected[0] == pytest.approx(0.5 * k / (64 if label == "conv1" else 128) * 0.21)
        assert sum(realised) / len(realised) == pytest.approx(expected[0], rel=0.5)


def test_monitor_sees_the_models_own_lfm_too():
    model = TinyClassifier()
    model.net.lfm = nn.ModuleDict({"conv1": LocalFeatureMasking(p=1.0)})
    model.net.backbone.conv1.register_forward_hook(lambda _m, _i, out: model.net.lfm["conv1"](out))
    fit(model, [MaskedFractionMonitor()], batches=2)
    assert len(model.logged["train/lfm_masked_fraction/conv1"]) == 2


def test_band_regions_realise_less_than_expected():
    module = LocalFeatureMasking(p=1.0, mask_ratio=1.0, region="band").train()
    fractions = []
    for _ in range(10):
        module(torch.rand(16, 8, 128, 64))
        fractions.append(module.masked_fraction)
    assert torch.stack(fractions).mean() < 0.7 * module.expected_fraction


def test_insertion_label():
    assert insertion_label("net.lfm.layer2__1") == "layer2.1"
    assert insertion_label("lfm_callback.conv1") == "conv1"


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"after": "conv1", "mask_ratio": 2.0}, "invalid callbacks.lfm setting: mask_ratio"),
        ({"after": "conv1", "warmup_epochs": -1}, "callbacks.lfm.warmup_epochs"),
    ],
)
def test_bad_callback_settings_name_the_key(kwargs, fragment):
    with pytest.raises(InputError, match=fragment):
        LocalFeatureMaskingCallback(**kwargs)


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"after": "conv9"}, "callbacks.lfm.after: unknown insertion point 'conv9'"),
        ({"after": "conv1", "backbone": "net.trunk"}, "callbacks.lfm.backbone='net.trunk'"),
    ],
)
def test_bad_insertion_is_reported_at_fit_start(kwargs, fragment):
    with pytest.raises(InputError, match=fragment):
        fit(TinyClassifier(), [LocalFeatureMaskingCallback(**kwargs)])


def test_training_speed_counts_the_images_after_the_skipped_batches_over_their_time(monkeypatch):
    clock = iter(float(second) for second in range(100))
    monkeypatch.setattr("lfm.runs.callbacks.time.perf_counter", lambda: next(clock))
    logged = {}
    module = SimpleNamespace(
        device=torch.device("cpu"), log=lambda name, value, **kwargs: logged.__setitem__(name, value)
    )
    trainer = SimpleNamespace(num_training_batches=6)
    monitor = TrainingSpeedMonitor(skip_batches=2)
    monitor.on_train_epoch_start(trainer, module)  # clock 0
    for index in range(6):
        batch = {"image": torch.zeros(8, 3, 4, 4)}
        monitor.on_train_batch_start(trainer, module, batch, index)  # clock 1 at batch 2
        monitor.on_train_batch_end(trainer, module, None, batch, index)  # clocks 2, 3, 4, 5 at batches 2..5
    monitor.on_train_epoch_end(trainer, module)
    assert logged == {"train/images_per_second": 4 * 8 / (5 - 1), "train/epoch_seconds": 5 - 0}
