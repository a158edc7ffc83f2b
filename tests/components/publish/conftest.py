"""Fixtures for the publish step's tests (helpers shared with tests/functions, loaded by path)."""
from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
# tests/ is on sys.path (rootdir conftest, no __init__.py), and tests/components/ would shadow the
# real `components` package as a namespace package: put the repository first.
if str(ROOT) not in sys.path[:1]:
    sys.path.insert(0, str(ROOT))
for _name in [m for m in sys.modules if m == "components" or m.startswith("components.")]:
    if getattr(sys.modules[_name], "__file__", None) is None:  # a namespace shadow got imported
        del sys.modules[_name]

if "delivery_support" not in sys.modules:
    _spec = importlib.util.spec_from_file_location("delivery_support", ROOT / "tests/functions/delivery_support.py")
    _mod = importlib.util.module_from_spec(_spec)
    sys.modules["delivery_support"] = _mod
    _spec.loader.exec_module(_mod)
support = sys.modules["delivery_support"]


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
        from edgeship import local_stack

        local_stack.drain(stack, timeout=30)
