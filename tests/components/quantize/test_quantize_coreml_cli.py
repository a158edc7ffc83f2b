"""Core ML packages are written and reload; the CLI and the KFP component expose the step."""
from __future__ import annotations

import json
import zipfile

import pytest

from components.quantize.coreml import CoreMLError, validate_package


def test_coreml_packages_written_and_reloadable(q_run):
    result, out = q_run
    by_name = {c["name"]: c for c in result.coreml}
    assert set(by_name) == {"coreml_fp16", "coreml_int8w"}
    for name, weights in (("coreml_fp16", "fp16"), ("coreml_int8w", "int8")):
        path = out / by_name[name]["file"]
        assert path.name == f"{name}.mlpackage.zip" and path.stat().st_size == by_name[name]["size_bytes"]
        with zipfile.ZipFile(path) as z:
            assert any(n.endswith("Manifest.json") for n in z.namelist())
        summary = validate_package(path, num_anchors=160, num_classes=3, input_size=(64, 64), weights=weights)
        assert summary["outputs"] == {"boxes": [1, 160, 4], "scores": [1, 160, 4]}
    assert by_name["coreml_int8w"]["weight_dtypes"].get("int8", 0) > 0
    assert by_name["coreml_fp16"]["weight_dtypes"].get("int8", 0) == 0
    assert by_name["coreml_int8w"]["size_bytes"] < by_name["coreml_fp16"]["size_bytes"]
    index = json.loads((out / "variants.json").read_text())
    assert [c["name"] for c in index["coreml"]] == ["coreml_fp16", "coreml_int8w"]


def test_corrupt_coreml_package(tmp_path):
    bad = tmp_path / "coreml_fp16.mlpackage.zip"
    bad.write_bytes(b"not a zip")
    with pytest.raises(CoreMLError, match=r"\[validate-after\] coreml_fp16: cannot re-load"):
        validate_package(bad, num_anchors=1, num_classes=1, input_size=(64, 64), weights="fp16")


def test_cli_quantize_fp32(q_models, q_dataset, tmp_path, capsys):
    from edgeship.cli import main

    out = tmp_path / "variants"
    rc = main(["quantize", "--model", str(q_models["float"]), "--data", str(q_dataset), "--out", str(out),
               "--schemes", "fp32", "--no-coreml", "--num-calibration", "4"])
    assert rc == 0
    index = json.loads((out / "variants.json").read_text())
    assert [v["name"] for v in index["variants"]] == ["fp32"] and index["coreml"] == []
    assert "fp32" in capsys.readouterr().out


def test_cli_bad_input_exits_2(q_models, tmp_path, capsys):
    from edgeship.cli import main

    rc = main(["quantize", "--model", str(q_models["float"]), "--out", str(tmp_path), "--schemes", "full_int8",
               "--no-coreml"])
    assert rc == 2
    assert "full_int8 needs calibration data" in capsys.readouterr().err


def test_kfp_component_interface():
    from components.quantize.component import quantize

    spec = quantize.component_spec
    assert set(spec.inputs) >= {"float_model", "qat_model", "dataset", "num_calibration", "schemes", "coreml"}
    assert set(spec.outputs) == {"variants", "sizes"}
    assert spec.outputs["sizes"].type == "system.Metrics@0.0.1"
