"""Fixtures shared by the delivery end-to-end tests (real local stack)."""
from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def support():
    """tests/support/delivery.py: servers, events and artifacts shared by the delivery tests."""
    from tests.support import delivery

    return delivery


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory, support):
    """A variants dir holding a tiny real .tflite, and its evaluation dir."""
    root = tmp_path_factory.mktemp("delivery")
    tflite = support.build_tiny_tflite(root / "tiny.tflite")
    vdir = support.make_variants_dir(root / "art", tflite)
    return vdir, vdir.parent / "evaluation"
