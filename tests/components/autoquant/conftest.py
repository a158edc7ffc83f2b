"""Fixtures for the autoquant tests (helpers in autoquant_testlib.py)."""
from __future__ import annotations

import pytest

from tests.support.autoquant_models import accuracy_measure, outlier_model, representative


@pytest.fixture(scope="module")
def tiny():
    """(model, builder, measure) for the outlier model, shared by a module's tests."""
    from components.autoquant.core import ConverterBuilder, keras_converter_maker

    model = outlier_model()
    rep = representative()
    builder = ConverterBuilder(keras_converter_maker(model, rep), rep)
    return model, builder, accuracy_measure(model)
