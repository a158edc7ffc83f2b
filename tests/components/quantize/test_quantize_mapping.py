"""The output map is right: a model with known detections gives them back through the map
(boxes equal to the anchors, the known class, the known score, count = their number)."""
from __future__ import annotations

import numpy as np
import pytest
from ai_edge_litert.interpreter import Interpreter

from components.quantize import core
from tests.support import quantize_models as ql


@pytest.fixture(scope="module")
def oracle(tmp_path_factory):
    root, expected = ql.write_oracle_model(tmp_path_factory.mktemp("oracle") / "m", 64, cls=1)
    out = tmp_path_factory.mktemp("oracle_out")
    rng = np.random.default_rng(0)
    calib = [rng.integers(0, 256, (64, 64, 3), dtype=np.uint8) for _ in range(4)]
    result = core.quantize(root, out, calibration=calib, schemes=["fp32", "full_int8"], coreml=False,
                           progress=False, strict_parity=False)
    return result, out, expected


@pytest.mark.parametrize("name", ["fp32", "full_int8"])
def test_known_detections_come_back_through_the_map(oracle, name):
    result, out, expected = oracle
    entry = {v["name"]: v for v in result.variants}[name]
    interp = Interpreter(model_path=str(out / entry["file"]))
    interp.allocate_tensors()
    inp = interp.get_input_details()[0]
    interp.set_tensor(inp["index"], np.full((1, 64, 64, 3), 128, inp["dtype"]))
    interp.invoke()
    o = {k: interp.get_tensor(m["index"]) for k, m in entry["outputs"].items()}
    n = int(o["count"][0])
    assert n == len(expected) == 64  # one detection per stride-8 cell, none suppressed
    boxes, classes, scores = o["boxes"][0, :n], o["classes"][0, :n], o["scores"][0, :n]
    # normalized ymin, xmin, ymax, xmax: centres inside the image, min < max (the op does not clip
    # edge anchors to [0, 1]; clients clip)
    centres = (boxes[:, :2] + boxes[:, 2:]) / 2
    assert np.all((centres > 0) & (centres < 1)) and np.all(boxes[:, 2:] > boxes[:, :2])
    assert np.all(classes == 1.0)  # 0-based class index, integral
    assert np.allclose(scores, 1 / (1 + np.exp(-5.0)), atol=0.02)
    # each returned box is one of the expected anchors (order is NMS's), and all are there
    tol = 0.02 if name == "full_int8" else 1e-4
    got = np.sort(boxes, axis=0)
    want = np.sort(expected, axis=0)
    assert np.allclose(got, want, atol=tol)
    # entries past `count` are uninitialized memory in LiteRT 2.3 (not zeros): read only [:count]
