"""Fixtures for the publish step's tests (helpers shared with tests/functions, loaded by path)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.support import delivery as support

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture()
def variants(tmp_path):
    """(variants_dir, evaluation_dir) with one fp32 variant of opaque bytes."""
    fake = tmp_path / "model.bin"
    fake.write_bytes(b"TFL3" + os.urandom(1024))
    vdir = support.make_variants_dir(tmp_path / "art", fake)
    return vdir, vdir.parent / "evaluation"


@pytest.fixture(autouse=True)
def _drain_stack_after_test(request):
    """Let the relay deliver what a stack test published before the next test resets the stack:
    an event still inside the function during the reset would land in the next test's Firestore."""
    stack = request.getfixturevalue("clean_stack") if "clean_stack" in request.fixturenames else None
    yield
    if stack is not None:
        from edgeship.localcloud import stack as local_stack

        local_stack.drain(stack, timeout=30)
