"""ImageNet weights of the backbones: where each library keeps them, fetching them the library's
way on first use, and reading a weights file.

- torchvision (IMAGENET1K_V1) and the IBN-Net authors' release files: the torch hub cache
  (`$TORCH_HOME/hub/checkpoints`), fetched by `torch.hub.download_url_to_file`, as torchvision's
  weights API and `torch.hub.load_state_dict_from_url` do: a progress bar, a temporary
  `.partial` file moved into place only when complete, and for torchvision the SHA-256 prefix
  in the file name checked.
- timm: the Hugging Face hub cache (`$HF_HOME/hub`), fetched by `huggingface_hub.hf_hub_download`
  as timm's `pretrained=True` does (weights timm fetches by URL: the torch hub cache).

With `HF_HUB_OFFLINE=1`, or when the host cannot be reached, nothing is fetched: the error names
the URL, where the file belongs, and `model.pretrained=/path`.
"""

import os
from dataclasses import dataclass
from pathlib import Path
from urllib.error import URLError

import torch
import torchvision

from lfm.errors import InputError
from lfm.models.ibn import IBN_A_RELEASE_URL, IBN_A_RESNETS

TIMM_PREFIX = "timm:"
HF_WEIGHTS_FILES = ("model.safetensors", "pytorch_model.bin")  # timm's order of preference
OFFLINE_VALUES = ("1", "on", "yes", "true")


def import_timm():
    # imported on first use: importing timm takes seconds, and only timm backbones need it
    import timm

    return timm


@dataclass(frozen=True)
class WeightsSource:
    """Where the ImageNet weights of one backbone come from and where they are kept.

    `hf_repo` set: a Hugging Face hub repository (timm), fetched into the hub cache.
    Otherwise `url` is fetched into `cache_path` (the torch hub cache); `check_hash`: the
    SHA-256 of the file starts with the hex digits after the last '-' of its name.
    """

    url: str
    cache_path: Path
    check_hash: bool = False
    hf_repo: str | None = None


def hub_checkpoint_path(url: str) -> Path:
    """Where torch.hub keeps the file of `url` (honours TORCH_HOME)."""
    return Path(torch.hub.get_dir()) / "checkpoints" / url.rsplit("/", 1)[-1]


def _timm_source(name: str) -> WeightsSource:
    from huggingface_hub import constants, hf_hub_url, try_to_load_from_cache

    config = import_timm().models.get_pretrained_cfg(name)
    if config is None or not (config.hf_hub_id or config.url):
        raise InputError(
            f"timm has no pretrained weights for {name} (key model.pretrained); set model.pretrained=false"
        )
    if not config.hf_hub_id:
        return WeightsSource(config.url, hub_checkpoint_path(config.url))
    for filename in HF_WEIGHTS_FILES:
        cached = try_to_load_from_cache(config.hf_hub_id, filename)
        if isinstance(cached, str):
            return WeightsSource(hf_hub_url(config.hf_hub_id, filename), Path(cached), hf_repo=config.hf_hub_id)
    if config.url and hub_checkpoint_path(config.url).is_file():
        return WeightsSource(config.url, hub_checkpoint_path(config.url))
    repo_folder = "models--" + config.hf_hub_id.replace("/", "--")
    expected = Path(constants.HF_HUB_CACHE) / repo_folder / "snapshots" / "<revision>" / HF_WEIGHTS_FILES[0]
    return WeightsSource(hf_hub_url(config.hf_hub_id, HF_WEIGHTS_FILES[0]), expected, hf_repo=config.hf_hub_id)


def imagenet_weights_source(name: str) -> WeightsSource:
    """The URL and cache path of backbone `name`'s ImageNet weights (timm: the cached file if
    there is one, else the path the download will have)."""
    if name.startswith(TIMM_PREFIX):
        return _timm_source(name.removeprefix(TIMM_PREFIX))
    if name in IBN_A_RESNETS:
        # the authors' loader fetches without a hash check; their file names carry no documented hash
        url = f"{IBN_A_RELEASE_URL}/{IBN_A_RESNETS[name][1]}"
        return WeightsSource(url, hub_checkpoint_path(url))
    url = torchvision.models.get_model_weights(name)["IMAGENET1K_V1"].url
    return WeightsSource(url, hub_checkpoint_path(url), check_hash=True)


def imagenet_weights_path(name: str) -> Path:
    """Where the ImageNet weights of backbone `name` are kept on this machine (or will be)."""
    return imagenet_weights_source(name).cache_path


def hub_offline() -> bool:
    """HF_HUB_OFFLINE is set: use the caches, fetch nothing."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in OFFLINE_VALUES


def _unavailable(name: str, source: WeightsSource, reason: str) -> InputError:
    place = (
        f"into the Hugging Face cache {source.cache_path.parents[2]} with `hf download {source.hf_repo} {HF_WEIGHTS_FILES[0]}`"
        if source.hf_repo
        else f"to {source.cache_path}"
    )
    return InputError(
        f"cannot fetch the ImageNet weights of {name} (key model.pretrained=true): {reason}; "
        f"download {source.url} {place}, or set model.pretrained=/path/to/weights, "
        f"or model.pretrained=false to train from scratch"
    )


def _download_to_hub_cache(source: WeightsSource) -> None:
    hash_prefix = None
    if source.check_hash:
        match = torch.hub.HASH_REGEX.search(source.cache_path.name)
        hash_prefix = match.group(1) if match else None
    source.cache_path.parent.mkdir(parents=True, exist_ok=True)
    print(f"Downloading {source.url} to {source.cache_path}", flush=True)
    torch.hub.download_url_to_file(source.url, str(source.cache_path), hash_prefix, progress=True)


def _download_from_hf_hub(source: WeightsSource) -> Path:
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError

    for filename in HF_WEIGHTS_FILES:
        try:
            return Path(hf_hub_download(source.hf_repo, filename, library_name="timm"))
        except EntryNotFoundError:
            continue
    raise InputError(f"{source.hf_repo} on the Hugging Face hub holds none of {list(HF_WEIGHTS_FILES)}")


def fetch_imagenet_weights(name: str) -> Path:
    """The cached ImageNet weights file of backbone `name`, downloaded first if it is not cached."""
    source = imagenet_weights_source(name)
    if source.cache_path.is_file():
        return source.cache_path
    if hub_offline():
        raise _unavailable(name, source, "HF_HUB_OFFLINE is set and the file is not cached")
    try:
        if source.hf_repo:
            return _download_from_hf_hub(source)
        _download_to_hub_cache(source)
    except InputError:
        raise
    except (URLError, OSError) as error:
        raise _unavailable(name, source, f"no connection ({getattr(error, 'reason', error)})") from None
    except RuntimeError as error:  # torch.hub's hash check; the partial file is already removed
        raise _unavailable(name, source, f"the downloaded file is corrupt: {error}") from None
    except Exception as error:  # the Hugging Face client's errors: offline, not found, no connection
        raise _unavailable(name, source, f"{type(error).__name__}: {str(error).splitlines()[0]}") from None
    return source.cache_path


def read_weights(path: Path, device: str) -> dict:
    """The state dict in a .pth / .bin (torch) or .safetensors file; on the meta device only
    names and shapes. A training checkpoint's `state_dict` entry and DataParallel's `module.`
    prefixes (as in the IBN-Net authors' first release) are unwrapped."""
    if path.suffix == ".safetensors":
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as file:
            if device == "meta":
                return {key: torch.empty(file.get_slice(key).get_shape(), device="meta") for key in file.keys()}
            return {key: file.get_tensor(key) for key in file.keys()}
    state = torch.load(path, map_location=device, weights_only=True)
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(value, torch.Tensor) for value in state.values()):
        raise InputError(
            f"{path} holds a {type(state).__name__}, not a state dict of tensors (key model.pretrained); "
            f"pass a file saved with torch.save(model.state_dict(), path)"
        )
    return {key.removeprefix("module."): value for key, value in state.items()}
