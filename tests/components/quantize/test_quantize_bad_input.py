"""Bad input gets a clear error naming the stage, the variant and the bad value."""
from __future__ import annotations

import shutil

import numpy as np
import pytest

from components.quantize import core
from edgeship.detection import convert, verify
from edgeship.detection.op_report import build_op_report
from edgeship.detection.postprocess import detection_module
from tests.support import quantize_models as ql


def test_full_int8_without_calibration_data(q_models, tmp_path):
    with pytest.raises(convert.QuantizeError, match=r"full_int8 needs calibration data: split 'calibration' "
                                                  r"in None is empty/missing") as err:
        core.quantize(q_models["float"], tmp_path, schemes=["full_int8"], coreml=False, progress=False)
    assert err.value.stage == "validate-before" and err.value.variant == "full_int8"
    missing = tmp_path / "no_dataset"
    with pytest.raises(convert.QuantizeError, match=rf"int16x8 needs calibration data: split 'calibration' in "
                                                  rf"{missing} is empty/missing"):
        core.quantize(q_models["float"], tmp_path, calibration=str(missing), schemes=["int16x8"],
                      coreml=False, progress=False)
    assert not list(tmp_path.glob("*.tflite"))  # failed before converting anything


def test_dataset_without_calibration_split(q_models, q_dataset, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(q_dataset, data)
    (data / "coco/annotations/calibration.json").unlink()
    with pytest.raises(convert.QuantizeError, match=r"full_int8 needs calibration data: split 'calibration'"):
        core.quantize(q_models["float"], tmp_path / "out", calibration=str(data), schemes=["full_int8"],
                      coreml=False, progress=False)


def test_corrupt_tflite(tmp_path):
    bad = tmp_path / "broken.tflite"
    bad.write_bytes(b"TFL3 this is not a flatbuffer" * 10)
    with pytest.raises(convert.QuantizeError, match=r"\[validate-after\] broken: LiteRT cannot load .*broken.tflite"):
        verify.inspect_tflite(bad)
    with pytest.raises(ValueError, match="LiteRT cannot read the model"):
        build_op_report(bad, name="broken")
    with pytest.raises(FileNotFoundError, match="not found"):
        verify.inspect_tflite(tmp_path / "missing.tflite")


def test_corrupt_saved_model(q_models, tmp_path):
    bad = tmp_path / "model"
    shutil.copytree(q_models["float"], bad)
    (bad / "saved_model/saved_model.pb").write_bytes(b"\x00garbage")
    (bad / "weights.h5").write_bytes(b"garbage")
    with pytest.raises(convert.QuantizeError, match=r"\[validate-before\] float model: .*cannot load the model "
                                                  r"\(corrupt SavedModel\?\)"):
        core.quantize(bad, tmp_path / "out", schemes=["fp32"], coreml=False, progress=False)


def test_missing_or_inconsistent_model_dir(q_models, tmp_path):
    with pytest.raises(convert.QuantizeError, match="float model directory not found"):
        core.quantize(tmp_path / "nope", tmp_path / "out", schemes=["fp32"], coreml=False, progress=False)
    bad = tmp_path / "model"
    shutil.copytree(q_models["float"], bad)
    np.save(bad / "anchors.npy", np.zeros([7, 4], np.float32))
    with pytest.raises(convert.QuantizeError, match=r"box_encodings shape \(1, 160, 4\), expected \(1, 7, 4\)"):
        core.quantize(bad, tmp_path / "out", schemes=["fp32"], coreml=False, progress=False)


def test_unknown_scheme_and_qat_without_model(q_models, tmp_path):
    with pytest.raises(ValueError, match=r"unknown scheme\(s\) \['int4'\]"):
        core.quantize(q_models["float"], tmp_path, schemes=["int4"], coreml=False, progress=False)
    with pytest.raises(convert.QuantizeError, match=r"qat_int8: needs a QAT model"):
        core.quantize(q_models["float"], tmp_path, schemes=["qat_int8"], coreml=False, progress=False)


def test_converter_failure_names_stage_and_variant(q_models, tmp_path):
    def broken_factory(module, scheme, representative):
        raise RuntimeError("converter exploded")

    with pytest.raises(convert.QuantizeError, match=r"quantize \[convert\] dynamic_int8: RuntimeError: converter exploded"):
        core.quantize(q_models["float"], tmp_path, schemes=["dynamic_int8"], coreml=False, progress=False,
                      converter_factory=broken_factory)


def test_parity_miss_fails_validate_after(q_models, tmp_path):
    """A converter that converts a *different* model (other weights) is caught by the parity check."""
    other = ql.build_standin(64, seed=7)

    def wrong_model_factory(module, scheme, representative):
        anchors = module.anchors.numpy()
        return convert.make_converter(detection_module(other, anchors, 3, (64, 64)), scheme, representative)

    with pytest.raises(convert.QuantizeError, match=r"\[validate-after\] fp32: parity outside tolerance"):
        core.quantize(q_models["float"], tmp_path, schemes=["fp32"], coreml=False, progress=False,
                      converter_factory=wrong_model_factory)
    result = core.quantize(q_models["float"], tmp_path, schemes=["fp32"], coreml=False, progress=False,
                           converter_factory=wrong_model_factory, strict_parity=False)
    assert result.variants[0]["parity"]["passed"] is False and result.errors


def test_a_parity_miss_sets_one_variant_aside_and_the_step_goes_on(q_models, tmp_path):
    """Real photos can push one scheme past its tolerance while the others are fine (raccoon,
    seed 2: full_int8_pt 0.258 > 0.25): that variant is set aside, recorded, never evaluated."""
    from components.evaluate.outputs import set_aside
    from edgeship.contracts.variants import load_variants, read_variants

    other = ql.build_standin(64, seed=7)

    def float16_is_wrong(module, scheme, representative):
        if scheme == "float16":
            module = detection_module(other, module.anchors.numpy(), 3, (64, 64))
        return convert.make_converter(module, scheme, representative)

    result = core.quantize(q_models["float"], tmp_path, schemes=["fp32", "float16", "dynamic_int8"],
                           coreml=False, progress=False, converter_factory=float16_is_wrong)
    assert [v["name"] for v in result.variants] == ["fp32", "dynamic_int8"]
    assert [(s["name"], s["stage"]) for s in result.skipped] == [("float16", "validate-after")]
    assert "parity outside tolerance" in result.skipped[0]["error"]
    assert not (tmp_path / "float16.tflite").exists()
    assert read_variants(tmp_path)["skipped"][0]["name"] == "float16"
    specs, _ = load_variants(tmp_path)
    assert [s.name for s in specs] == ["fp32", "dynamic_int8"]
    aside = set_aside(tmp_path)
    assert aside[0]["name"] == "float16" and "parity outside tolerance" in aside[0]["error"]
