"""Print the dataset summary of a re-ID data config, without training.

    python -m lfm.data data=market1501 /path/to/Market-1501-v15.09.15
    python -m lfm.data data=synthetic_market1501        (the config's own data.root)

The counts found at the root (file names, MSMT17's list files; no image is decoded) beside the
published counts of data.published_counts, and a warning line for each count that differs.
"""

import argparse
import sys
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.errors import HydraException
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from lfm.data.datamodule import ReIDDataModule
from lfm.errors import InputError
from lfm.project import CONF_DIR


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m lfm.data", description=__doc__.splitlines()[0])
    parser.add_argument("data", help="data=NAME, a config of conf/data/ (e.g. data=market1501)")
    parser.add_argument("root", nargs="?", type=Path, help="the dataset folder (default: the config's data.root)")
    return parser.parse_args(argv)


def data_settings(option: str, root: Path | None) -> dict:
    """The resolved settings of `data=NAME`, its root replaced by `root` if given; paths.data_dir is ./data."""
    name = option.removeprefix("data=")
    if not option.startswith("data=") or not (CONF_DIR / "data" / f"{name}.yaml").is_file():
        names = sorted(path.stem for path in (CONF_DIR / "data").glob("*.yaml"))
        raise InputError(f"expected data=NAME with NAME one of {names}, got {option!r}")
    try:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            data = compose(config_name=f"data/{name}").data
        if root is not None:
            data.root = str(root)
        config = OmegaConf.merge({"paths": {"data_dir": str(Path.cwd() / "data")}}, {"data": data})
        return OmegaConf.to_container(config.data, resolve=True)
    except (HydraException, OmegaConfBaseException) as error:
        raise InputError(f"data={name} does not compose: {' '.join(str(error).split())}") from None


def summarize(option: str, root: Path | None) -> None:
    """Print the summary of the re-ID dataset that the data config `option` reads."""
    settings = data_settings(option, root)
    name = settings.pop("name")
    settings.pop("test_sets", None)
    try:
        datamodule = ReIDDataModule(**settings)
    except TypeError:
        raise InputError(f"data={name} is not a re-ID data config; the summary reads re-ID datasets") from None
    datamodule.layout.check_layout(datamodule.root)
    datamodule.print_summary()


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    try:
        summarize(args.data, args.root)
    except InputError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
