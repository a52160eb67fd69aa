"""ImageNet weights fetched the libraries' way: from a server on 127.0.0.1 into the torch hub
cache (hash checked, nothing partial left), the cached file reused, and one clear line offline."""

import functools
import hashlib
import http.server
import io
import socket
import threading
from pathlib import Path

import pytest
import torch
from helpers import TINY_TRAIN, run_entry_point

from lfm.errors import InputError
from lfm.models import weights
from lfm.models.backbones import build_backbone
from lfm.models.reid import ReIDNet
from lfm.models.weights import WeightsSource, hub_checkpoint_path, imagenet_weights_source


class WeightsServer:
    """A file server on 127.0.0.1 that counts the requests it answered."""

    def __init__(self, folder: Path):
        self.requests = 0
        server = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def do_GET(self):
                server.requests += 1
                super().do_GET()

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=folder))
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def served(tmp_path):
    folder = tmp_path / "served"
    folder.mkdir()
    server = WeightsServer(folder)
    yield folder, server
    server.close()


@pytest.fixture
def torch_home(tmp_path, monkeypatch) -> Path:
    """An empty TORCH_HOME, the network allowed (the tests only reach their own server)."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    return tmp_path / "torch"


def resnet18_state() -> dict:
    torch.manual_seed(0)
    return build_backbone("resnet18").state_dict()


def publish(folder: Path, state: dict) -> str:
    """Save `state` as torchvision names its files: <name>-<first 8 hex digits of its SHA-256>.pth."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    data = buffer.getvalue()
    name = f"resnet18-{hashlib.sha256(data).hexdigest()[:8]}.pth"
    (folder / name).write_bytes(data)
    return name


def serve_as_imagenet_weights(monkeypatch, url: str) -> Path:
    """resnet18's ImageNet weights come from `url` (hash checked, as torchvision's)."""
    cache_path = hub_checkpoint_path(url)
    monkeypatch.setattr(weights, "imagenet_weights_source", lambda name: WeightsSource(url, cache_path, True))
    return cache_path


def test_sources_are_the_libraries_own(torch_home):
    torchvision_source = imagenet_weights_source("resnet50")
    assert torchvision_source.url == "https://download.pytorch.org/models/resnet50-0676ba61.pth"
    assert torchvision_source.cache_path == torch_home / "hub" / "checkpoints" / "resnet50-0676ba61.pth"
    assert torchvision_source.check_hash and torchvision_source.hf_repo is None
    ibn = imagenet_weights_source("resnet50_ibn_a")
    assert ibn.url == "https://github.com/XingangPan/IBN-Net/releases/download/v1.0/resnet50_ibn_a-d9d0bb7b.pth"
    assert ibn.cache_path == torch_home / "hub" / "checkpoints" / "resnet50_ibn_a-d9d0bb7b.pth"
    timm_source = imagenet_weights_source("timm:resnet18d")
    assert timm_source.hf_repo == "timm/resnet18d.ra2_in1k"
    assert timm_source.url == "https://huggingface.co/timm/resnet18d.ra2_in1k/resolve/main/model.safetensors"


def test_download_into_the_torch_hub_cache_then_reuse_it(served, torch_home, monkeypatch, capfd):
    folder, server = served
    state = resnet18_state()
    name = publish(folder, state)
    cache_path = serve_as_imagenet_weights(monkeypatch, f"{server.url}/{name}")
    assert cache_path == torch_home / "hub" / "checkpoints" / name
    net = ReIDNet("resnet18", num_classes=3, pretrained=True)
    assert torch.equal(net.backbone.layer4[1].conv2.weight, state["layer4.1.conv2.weight"])
    assert cache_path.read_bytes() == (folder / name).read_bytes()
    assert f"Downloading {server.url}/{name} to {cache_path}" in capfd.readouterr().out
    ReIDNet("resnet18", num_classes=3, pretrained=True)
    assert server.requests == 1  # the second network came from the cache


def test_a_corrupt_download_is_refused_by_its_hash_and_not_kept(served, torch_home, monkeypatch):
    folder, server = served
    name = publish(folder, resnet18_state())
    (folder / name).write_bytes((folder / name).read_bytes()[:-10] + b"0123456789")  # same size, other bytes
    cache_path = serve_as_imagenet_weights(monkeypatch, f"{server.url}/{name}")
    with pytest.raises(InputError, match=r"the downloaded file is corrupt: invalid hash value") as error:
        ReIDNet("resnet18", num_classes=3, pretrained=True)
    assert str(cache_path) in str(error.value) and "model.pretrained=/path/to/weights" in str(error.value)
    assert list(cache_path.parent.iterdir()) == []  # neither the file nor a .partial one stays


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_no_connection_names_the_url_the_cache_path_and_the_override(torch_home, monkeypatch):
    url = f"http://127.0.0.1:{closed_port()}/resnet18-01234567.pth"
    cache_path = serve_as_imagenet_weights(monkeypatch, url)
    with torch.device("meta"), pytest.raises(InputError) as error:
        ReIDNet("resnet18", num_classes=3, pretrained=True)
    message = str(error.value)
    assert "\n" not in message
    for fragment in ("no connection", f"download {url} to {cache_path}", "model.pretrained=/path/to/weights"):
        assert fragment in message, message
    assert not cache_path.exists()


def test_offline_fetches_nothing(served, torch_home, monkeypatch):
    folder, server = served
    name = publish(folder, resnet18_state())
    serve_as_imagenet_weights(monkeypatch, f"{server.url}/{name}")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(InputError, match="HF_HUB_OFFLINE is set and the file is not cached"):
        ReIDNet("resnet18", num_classes=3, pretrained=True)
    assert server.requests == 0


def test_timm_offline_says_how_to_fill_the_hugging_face_cache(tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    with torch.device("meta"), pytest.raises(InputError) as error:
        ReIDNet("timm:resnet18d", num_classes=3, pretrained=True)
    assert "hf download timm/resnet18d.ra2_in1k model.safetensors" in str(error.value)
    assert "https://huggingface.co/timm/resnet18d.ra2_in1k/resolve/main/model.safetensors" in str(error.value)


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (["not", "a", "state", "dict"], "holds a list, not a state dict of tensors"),
        ({"epoch": 3, "model": {"conv1.weight": torch.zeros(1)}}, "holds a dict, not a state dict of tensors"),
        (b"plain bytes that torch cannot unpickle", "cannot read pretrained weights"),
    ],
)
def test_a_file_that_is_not_a_state_dict_names_the_file_and_the_key(tmp_path, content, problem):
    path = tmp_path / "weights.pth"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        torch.save(content, path)
    with pytest.raises(InputError) as error:
        ReIDNet("resnet18", num_classes=3, pretrained=str(path))
    message = str(error.value)
    assert "\n" not in message
    assert problem in message and str(path) in message and "model.pretrained" in message


def test_train_from_the_cached_weights_then_evaluate_without_them(tiny_market, tmp_path, monkeypatch):
    """With the file in the torch hub cache, model.pretrained=true trains from it (no network);
    evaluating the checkpoint needs no ImageNet weights at all."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    state = resnet18_state()
    cache_path = imagenet_weights_source("resnet18").cache_path
    cache_path.parent.mkdir(parents=True)
    torch.save(state, cache_path)
    run_dir = tmp_path / "run"
    trained = run_entry_point(
        "train.py", *TINY_TRAIN, "model.pretrained=true", f"data.root={tiny_market}", f"hydra.run.dir={run_dir}"
    )
    assert trained.returncode == 0, trained.stderr[-3000:]
    checkpoint = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    start, after_two_steps = state["conv1.weight"], checkpoint["state_dict"]["net.backbone.conv1.weight"]
    assert (after_two_steps - start).norm() < 0.1 * start.norm()  # trained from the cached file, not a new draw
    cache_path.unlink()
    evaluated = run_entry_point(
        "eval.py", f"ckpt_path={run_dir / 'checkpoints' / 'best.ckpt'}", f"hydra.run.dir={tmp_path / 'eval'}"
    )
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    assert not cache_path.exists()
