"""Fixtures for the train tests: a tiny generated dataset (96x96) and a tiny detector config."""
from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """16 train / 8 val / 4 calibration images at 96x96, written by the data step's generator."""
    from components.data.core import generate_dataset

    root = tmp_path_factory.mktemp("train_data") / "dataset"
    generate_dataset(root, seed=3, train=16, val=8, calibration=4, image_size=96)
    return root


@pytest.fixture()
def tiny_config():
    from edgeship.detection.model import ModelConfig

    return ModelConfig(input_size=(96, 96), alpha=0.35)
