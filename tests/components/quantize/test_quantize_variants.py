"""Every scheme converts, loads in LiteRT, has the 4 contract outputs mapped from the graph, and
its op report says what computes in int8 and what stays float."""
from __future__ import annotations

import json

import numpy as np
import pytest
from ai_edge_litert.interpreter import Interpreter

from components.quantize import core
from edgeship.detection import convert, verify
from edgeship.detection.op_report import build_op_report, output_map

ALL = ["fp32", "dynamic_int8", "float16", "full_int8", "full_int8_pt", "int16x8", "qat_int8"]


def test_every_variant_written_and_indexed(q_run):
    result, out = q_run
    index = json.loads((out / "variants.json").read_text())
    names = [v["name"] for v in index["variants"]] + [s["name"] for s in index["skipped"]]
    assert sorted(names) == sorted(ALL)
    assert [v["name"] for v in index["variants"]] == [v["name"] for v in result.variants]
    assert (out / "labels.txt").read_text().split() == ["circle", "square", "triangle"]
    for v in index["variants"]:
        assert (out / v["file"]).stat().st_size == v["size_bytes"] > 0
        assert (out / v["op_report"]).is_file() and (out / f"{v['name']}.ops.txt").is_file()
        assert set(v["outputs"]) == {"boxes", "classes", "scores", "count"}
        assert v["parity"]["passed"] and v["parity"]["tolerance"] == convert.PARITY_TOLERANCES[v["name"]]
    # every scheme but the experimental 16x8 must succeed on this model
    assert {s["name"] for s in index["skipped"]} <= {"int16x8"}


@pytest.mark.parametrize("name", ALL)
def test_variant_runs_in_litert_with_contract_outputs(q_run, name):
    result, out = q_run
    entry = {v["name"]: v for v in result.variants}.get(name)
    if entry is None:
        pytest.skip(f"{name} was skipped: {[s['error'] for s in result.skipped]}")
    interp = Interpreter(model_path=str(out / entry["file"]))
    interp.allocate_tensors()
    inp = interp.get_input_details()[0]
    want_dtype = np.uint8 if name in convert.INT8_SCHEMES else np.float32
    assert inp["dtype"] == want_dtype and entry["input"]["dtype"] == np.dtype(want_dtype).name
    assert list(inp["shape"]) == [1, 64, 64, 3]
    if want_dtype == np.uint8:  # raw pixels go in unchanged
        assert entry["input"]["scale"] == pytest.approx(1.0) and entry["input"]["zero_point"] == 0
    rng = np.random.default_rng(5)
    interp.set_tensor(inp["index"], rng.integers(0, 256, (1, 64, 64, 3)).astype(want_dtype))
    interp.invoke()
    get = {k: interp.get_tensor(m["index"]) for k, m in entry["outputs"].items()}
    assert get["boxes"].shape == (1, 100, 4) and get["classes"].shape == (1, 100)
    assert get["scores"].shape == (1, 100) and get["count"].shape == (1,)
    n = int(get["count"][0])
    assert 0 < n <= 100
    assert np.all(np.diff(get["scores"][0, :n]) <= 1e-6)  # sorted by score, as the op returns


def test_output_map_comes_from_the_postprocess_op(q_run):
    result, out = q_run
    for v in result.variants:
        interp = Interpreter(model_path=str(out / v["file"]))
        ops = [op for op in interp._get_ops_details() if op["op_name"] == "TFLite_Detection_PostProcess"]
        assert len(ops) == 1
        op_outputs = [int(t) for t in ops[0]["outputs"]]
        assert [v["outputs"][k]["index"] for k in ("boxes", "classes", "scores", "count")] == op_outputs
        names = {d["index"]: d["name"] for d in interp.get_output_details()}
        assert all(names[m["index"]] == m["name"] for m in v["outputs"].values())
        # and the output list is not in boxes/classes/scores/count order (why the map exists)
        positions = [v["outputs"][k]["position"] for k in ("boxes", "classes", "scores", "count")]
        assert positions != [0, 1, 2, 3]


def test_full_int8_op_report_shows_int8_compute(q_run):
    _, out = q_run
    report = json.loads((out / "full_int8.ops.json").read_text())
    assert report["int8_compute"] is True
    assert report["float_ops_outside_postprocess"] == []
    assert report["has_postprocess"] and report["input"]["dtype"] == "uint8"
    conv = report["by_type"]["CONV_2D"]
    assert conv["status"] == {"integer": conv["count"]}
    assert all(sig.endswith("-> int8") for sig in conv["dtypes"])
    # only boundaries and the post-processing op see float
    float_rows = [r for r in report["ops"] if set(r["outputs"]) & {"float32"}]
    assert {r["status"] for r in float_rows} <= {"boundary", "postprocess"}
    text = (out / "full_int8.ops.txt").read_text()
    assert "int8 compute: yes" in text and "No float ops outside post-processing." in text


def test_float_variants_are_flagged_float(q_run):
    _, out = q_run
    fp32 = json.loads((out / "fp32.ops.json").read_text())
    assert fp32["int8_compute"] is False and fp32["integer_compute"] is False
    n_compute = sum(1 for r in fp32["ops"] if r["status"] in ("float", "hybrid"))
    assert len(fp32["float_ops_outside_postprocess"]) == n_compute > 5
    assert any(n.startswith("CONV_2D ") for n in fp32["float_ops_outside_postprocess"])
    assert "Ops that stay float outside post-processing" in (out / "fp32.ops.txt").read_text()
    dyn = json.loads((out / "dynamic_int8.ops.json").read_text())
    assert dyn["int8_compute"] is False and dyn["status_counts"].get("hybrid", 0) > 0


def test_qat_int8_is_integer_and_from_the_qat_model(q_run):
    result, out = q_run
    qat = {v["name"]: v for v in result.variants}["qat_int8"]
    assert qat["source"] == "qat" and qat["parity"]["reference"] == "qat_keras"
    assert json.loads((out / "qat_int8.ops.json").read_text())["int8_compute"] is True


def test_sizes_shrink_as_expected(q_run):
    result, _ = q_run
    s = result.sizes()
    assert s["dynamic_int8"] < s["fp32"] and s["float16"] < s["fp32"] and s["full_int8"] < s["fp32"]
    m = core.size_metrics(result)
    assert m["fp32_size_vs_fp32"] == 1.0 and 0 < m["full_int8_size_vs_fp32"] < 1


def test_fp32_parity_with_keras_within_tolerance(q_run, q_models, q_dataset):
    """Recompute fp32 parity independently: raw head outputs at the post-process op's inputs."""
    result, out = q_run
    loaded = convert.load_model_artifact(q_models["float"])
    images, _ = convert.load_calibration_images(str(q_dataset), (64, 64), 3)
    spec = verify.inspect_tflite(out / "fp32.tflite")
    runs = verify.run_detection(out / "fp32.tflite", images, spec)
    par = verify.parity(loaded, runs, images, "fp32")
    assert par["passed"], par
    assert par["score_max_abs"] <= convert.PARITY_TOLERANCES["fp32"]["score_max_abs"]
    # the map from the graph agrees with op_report.output_map
    assert output_map(Interpreter(model_path=str(out / "fp32.tflite"))) == spec["outputs"]
    assert build_op_report(out / "fp32.tflite")["has_postprocess"]


def _weight_scales(path) -> dict[str, int]:
    """Number of quantization scales of each int8 conv weight tensor."""
    interp = Interpreter(model_path=str(path))
    counts = {}
    for op in interp._get_ops_details():
        if op["op_name"] in ("CONV_2D", "DEPTHWISE_CONV_2D"):
            w = interp.get_tensor_details()[int(op["inputs"][1])]
            counts[w["name"]] = len(w["quantization_parameters"]["scales"])
    return counts


def test_per_tensor_full_int8_has_one_scale_per_weight_and_is_smaller(q_run):
    result, out = q_run
    per_channel = _weight_scales(out / "full_int8.tflite")
    per_tensor = _weight_scales(out / "full_int8_pt.tflite")
    assert len(per_tensor) == len(per_channel) > 5
    assert set(per_tensor.values()) == {1}
    assert max(per_channel.values()) > 1
    s = result.sizes()
    assert s["full_int8_pt"] < s["full_int8"]
    report = json.loads((out / "full_int8_pt.ops.json").read_text())
    assert report["int8_compute"] is True and report["float_ops_outside_postprocess"] == []
