"""The train step's real detector (MobileNetV2 alpha 0.35 @64, untrained, seeded) through
fp32 and full_int8: converts, parity holds, full int8 computes in int8 end to end."""
from __future__ import annotations

import json

import pytest

import quantize_testlib as ql
from components.quantize import core

pytestmark = pytest.mark.slow


def test_real_detector_fp32_and_full_int8(tmp_path, q_dataset):
    model_dir = ql.write_detector_model(tmp_path / "model", 64)
    result = core.quantize(model_dir, tmp_path / "out", calibration=str(q_dataset), num_calibration=8,
                           schemes=["fp32", "full_int8"], coreml=False, progress=False, strict_parity=False)
    by = {v["name"]: v for v in result.variants}
    assert by["fp32"]["parity"]["passed"]
    # untrained weights: int8 box parity is not meaningful, but scores must stay close
    assert by["full_int8"]["parity"]["score_max_abs"] <= core.PARITY_TOLERANCES["full_int8"]["score_max_abs"]
    assert by["full_int8"]["size_bytes"] < 0.5 * by["fp32"]["size_bytes"]
    report = json.loads((tmp_path / "out/full_int8.ops.json").read_text())
    assert report["int8_compute"] and not report["float_ops_outside_postprocess"]
    assert report["op_counts"]["DEPTHWISE_CONV_2D"] >= 17  # the MobileNetV2 backbone is all there
    assert json.loads((tmp_path / "out/fp32.ops.json").read_text())["int8_compute"] is False
