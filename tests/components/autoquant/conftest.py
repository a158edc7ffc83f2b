"""Fixtures for the autoquant tests (helpers in autoquant_testlib.py)."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from autoquant_testlib import accuracy_measure, outlier_model, representative  # noqa: E402


@pytest.fixture(scope="module")
def tiny():
    """(model, builder, measure) for the outlier model, shared by a module's tests."""
    from components.autoquant.core import ConverterBuilder, keras_converter_maker

    model = outlier_model()
    rep = representative()
    builder = ConverterBuilder(keras_converter_maker(model, rep), rep)
    return model, builder, accuracy_measure(model)
