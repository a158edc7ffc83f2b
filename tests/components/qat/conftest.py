"""Fixtures for the qat tests: a tiny dataset and a briefly trained tiny float model."""
from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def qat_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from components.data.core import generate_dataset

    root = tmp_path_factory.mktemp("qat_data") / "dataset"
    generate_dataset(root, seed=5, train=16, val=8, calibration=4, image_size=96)
    return root


@pytest.fixture(scope="session")
def float_model_dir(qat_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A float Model artifact (1 epoch on 16 images, no SavedModel export: fast)."""
    from components.train.core import train

    out = tmp_path_factory.mktemp("qat_float") / "model"
    train(str(qat_dataset), out, epochs=1, batch_size=8, input_size=(96, 96), seed=0,
          evaluate=False, saved_model=False, progress=False)
    return out
