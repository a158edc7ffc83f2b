"""Fixtures for the evaluate tests (helpers in evaluate_testlib.py)."""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.evaluate_data import make_example, write_standin_variants


@pytest.fixture
def examples() -> list:
    """Six images with one to three objects of three classes."""
    return [
        make_example(0, [[0.1, 0.1, 0.5, 0.5]], [1]),
        make_example(1, [[0.2, 0.3, 0.6, 0.9], [0.6, 0.1, 0.95, 0.4]], [2, 3]),
        make_example(2, [[0.05, 0.05, 0.3, 0.3], [0.4, 0.4, 0.8, 0.8], [0.5, 0.0, 1.0, 0.3]], [1, 1, 2]),
        make_example(3, [[0.3, 0.3, 0.7, 0.7]], [3]),
        make_example(4, [[0.0, 0.5, 0.4, 1.0], [0.55, 0.55, 0.9, 0.9]], [2, 3]),
        make_example(5, [[0.25, 0.1, 0.75, 0.6]], [1]),
    ]


@pytest.fixture(scope="session")
def standin_variants(tmp_path_factory) -> Path:
    """A variants artifact with two stand-in .tflite variants (fp32 float input, full_int8 uint8 input)."""
    return write_standin_variants(tmp_path_factory.mktemp("variants"))
