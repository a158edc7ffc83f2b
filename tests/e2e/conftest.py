"""Fixtures shared by the delivery end-to-end tests (real local stack)."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def support():
    """tests/functions/delivery_support.py, loaded by path (tests/ is not a package)."""
    if "delivery_support" not in sys.modules:
        spec = importlib.util.spec_from_file_location("delivery_support",
                                                      ROOT / "tests/functions/delivery_support.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules["delivery_support"] = module
        spec.loader.exec_module(module)
    return sys.modules["delivery_support"]


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory, support):
    """A variants dir holding a tiny real .tflite, and its evaluation dir."""
    root = tmp_path_factory.mktemp("delivery")
    tflite = support.build_tiny_tflite(root / "tiny.tflite")
    vdir = support.make_variants_dir(root / "art", tflite)
    return vdir, vdir.parent / "evaluation"
