"""Fixtures for the delivery client tests: a real tiny .tflite (built once per session with TF),
variants artifacts to publish, and helpers shared with tests/functions (loaded by path)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.support import delivery as support

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def tiny_tflite(tmp_path_factory) -> Path:
    """A real .tflite LiteRT can load and run (input [1, 8, 8, 3] float32)."""
    return support.build_tiny_tflite(tmp_path_factory.mktemp("tflite") / "tiny.tflite")


@pytest.fixture()
def make_variants(tmp_path, tiny_tflite):
    """Factory: make_variants(model_bytes=None) -> (variants_dir, evaluation_dir)."""
    counter = iter(range(1000))

    def make(model_bytes: bytes | None = None):
        src = tiny_tflite
        if model_bytes is not None:
            src = tmp_path / f"custom-{os.urandom(4).hex()}.bin"
            src.write_bytes(model_bytes)
        vdir = support.make_variants_dir(tmp_path / f"art{next(counter)}", src)
        return vdir, vdir.parent / "evaluation"

    return make


@pytest.fixture(autouse=True)
def _drain_stack_after_test(request):
    """Let the relay deliver what a stack test published before the next test resets the stack:
    an event still inside the function during the reset would land in the next test's Firestore."""
    stack = request.getfixturevalue("clean_stack") if "clean_stack" in request.fixturenames else None
    yield
    if stack is not None:
        from edgeship.localcloud import stack as local_stack

        local_stack.drain(stack, timeout=30)
