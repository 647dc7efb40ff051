"""Shared fixtures. Real data comes from ../shared/data (see ../shared/README.md)."""

import os
from pathlib import Path

import pytest
import torch

pytest_plugins = ["tests.fixtures.fake_exchange", "tests.fixtures.postgres"]

# Tests share 2 cores with everything else; one intra-op thread keeps them fast and deterministic.
torch.set_num_threads(1)
os.environ.setdefault("MARKETSYNTH_NO_PROGRESS", "1")

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def shared_file(name: str) -> Path:
    path = SHARED_DATA / name
    if not path.exists():
        pytest.fail(f"test data {path} is missing; it comes with the project's shared/ folder (../shared/data)")
    return path


@pytest.fixture(scope="session")
def btc_csv() -> Path:
    return shared_file("BTCUSDT_1h.csv")
