"""The train step's real detector (MobileNetV2 alpha 0.35 @64, untrained, seeded) and the qat
step's QAT wrapper of it, through fp32, full_int8 and qat_int8: they convert, fp32 parity holds,
and both int8 variants compute in int8 end to end (one quantize run: conversions are the cost)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from components.quantize import core
from edgeship.detection import convert
from tests.support import quantize_models as ql

pytestmark = pytest.mark.slow


def test_real_detector_fp32_full_int8_and_qat_int8(tmp_path, q_dataset):
    from edgeship.detection.model import load_model
    from edgeship.detection.qat import calibrate_ranges, quantize_detector

    model_dir = ql.write_detector_model(tmp_path / "model", 64)
    qat_dir = tmp_path / "qat"  # the qat step's layout: qat_weights.h5 + the float artifact's files
    qat_dir.mkdir()
    for name in ("model_config.json", "anchors.npy", "weights.h5"):
        (qat_dir / name).write_bytes((model_dir / name).read_bytes())
    float_model = load_model(model_dir)[0]
    qat_model = quantize_detector(float_model)
    images, _ = convert.load_calibration_images(str(q_dataset), (64, 64), 8)
    calibrate_ranges(qat_model, float_model, np.stack(images))  # as the qat step does (input 0..255)
    qat_model.save_weights(str(qat_dir / "qat_weights.h5"))

    out = tmp_path / "out"
    result = core.quantize(model_dir, out, qat_model_dir=qat_dir, calibration=str(q_dataset),
                           num_calibration=8, schemes=["fp32", "full_int8", "qat_int8"], coreml=False,
                           progress=False, strict_parity=False)
    by = {v["name"]: v for v in result.variants}
    assert by["fp32"]["parity"]["passed"]
    assert by["full_int8"]["size_bytes"] < 0.5 * by["fp32"]["size_bytes"]
    for name in ("full_int8", "qat_int8"):
        # untrained weights: int8 box parity is not meaningful, but scores must stay close
        assert by[name]["parity"]["score_max_abs"] <= convert.PARITY_TOLERANCES[name]["score_max_abs"]
        assert by[name]["input"] == {**by[name]["input"], "dtype": "uint8", "scale": 1.0, "zero_point": 0}
        report = json.loads((out / f"{name}.ops.json").read_text())
        assert report["int8_compute"] and not report["float_ops_outside_postprocess"], report["float_ops_outside_postprocess"]
        assert report["op_counts"]["DEPTHWISE_CONV_2D"] >= 17  # the MobileNetV2 backbone is all there
    assert by["qat_int8"]["source"] == "qat" and by["qat_int8"]["parity"]["reference"] == "qat_keras"
    assert json.loads((out / "fp32.ops.json").read_text())["int8_compute"] is False
