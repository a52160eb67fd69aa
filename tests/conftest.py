"""Shared fixtures: small generated datasets. No test fetches weights from the network: the
hub caches are offline for the whole session (tests/models/test_weights.py serves its own)."""

import os
from pathlib import Path

import pytest
from helpers import TINY_SCALE

from lfm.data.synthetic import SYNTHETIC_PRESETS, generate_synthetic_reid

os.environ["HF_HUB_OFFLINE"] = "1"


@pytest.fixture(scope="session")
def tiny_market(tmp_path_factory) -> Path:
    """A small synthetic Market-1501-layout dataset (read-only: copy it before changing it)."""
    root = tmp_path_factory.mktemp("data") / "tiny_market"
    return generate_synthetic_reid(root, SYNTHETIC_PRESETS["market_style"].scaled(TINY_SCALE), seed=0)


@pytest.fixture(scope="session")
def tiny_duke(tmp_path_factory) -> Path:
    """A small synthetic DukeMTMC-reID-layout dataset."""
    root = tmp_path_factory.mktemp("data") / "tiny_duke"
    return generate_synthetic_reid(root, SYNTHETIC_PRESETS["duke_style"].scaled(TINY_SCALE), seed=0)
