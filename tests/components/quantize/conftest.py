"""Fixtures for the quantize tests: a tiny stand-in detector (float + QAT), a tiny real dataset,
and one quantize run over every scheme and Core ML, shared by the session (conversions are the
slow part: a few seconds each for the stand-in)."""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.support import quantize_models as ql

SIZE = 64


@pytest.fixture(scope="session")
def q_dataset(tmp_path_factory) -> Path:
    """A real Dataset artifact (data step's generator): 8 calibration images at 64x64."""
    from components.data.core import generate_dataset

    root = tmp_path_factory.mktemp("q_dataset")
    generate_dataset(root, train=1, val=2, calibration=8, image_size=SIZE, seed=3)
    return root


@pytest.fixture(scope="session")
def q_models(tmp_path_factory) -> dict[str, Path]:
    """Model artifact dirs of the stand-in detector: float and QAT (tfmot)."""
    root = tmp_path_factory.mktemp("q_models")
    return {"float": ql.write_standin_model(root / "float", SIZE),
            "qat": ql.write_standin_model(root / "qat", SIZE, qat=True)}


@pytest.fixture(scope="session")
def q_run(tmp_path_factory, q_models, q_dataset):
    """quantize() over every scheme + Core ML on the stand-in: (VariantsResult, out dir)."""
    from components.quantize import core

    out = tmp_path_factory.mktemp("q_variants")
    result = core.quantize(q_models["float"], out, qat_model_dir=q_models["qat"], calibration=str(q_dataset),
                           num_calibration=8, coreml=True, progress=False)
    return result, out
