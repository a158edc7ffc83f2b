"""The evaluation end to end on stand-in .tflite variants: figures, report.json, md, html, png."""
import base64
import json

import pytest

from components.evaluate import core
from components.evaluate.report import render_markdown
from edgeship.contracts import variants as variants_contract
from edgeship.detection import runners
from tests.support.evaluate_data import CLASSES, make_example, standin_examples


@pytest.fixture(scope="module")
def evaluated(standin_variants, tmp_path_factory):
    specs, labels = variants_contract.load_variants(standin_variants)
    assert labels == CLASSES
    examples = standin_examples(4)
    report = core.evaluate_examples(specs, examples, CLASSES, dataset_fingerprint="sha256:test",
                                    latency_runs=8, latency_warmup=1, threads=2, show_progress=False)
    out = tmp_path_factory.mktemp("evaluation")
    core.write_report(report, out)
    return report, out


def test_every_variant_is_measured(evaluated):
    report, _ = evaluated
    assert set(report.variants) == {"fp32", "full_int8"}
    assert report.float_reference == "fp32"  # no Keras model given
    for name, row in report.variants.items():
        assert row.map == pytest.approx(1.0), name  # the stand-in detects exactly the ground truth
        assert set(row.robustness) == {"dark", "bright", "blurred", "occluded"}
        assert row.latency_1.threads == 1 and row.latency_n.threads == 2
        assert row.latency_1.runs == 8 and row.latency_1.median <= row.latency_1.p90
        assert row.delta_map_vs_float == pytest.approx(0.0)
        assert row.calibration is not None and row.shift is not None
    fp32 = report.variants["fp32"]
    assert fp32.size_ratio_vs_fp32 == 1.0 and fp32.latency_ratio_vs_fp32 == 1.0
    assert report.variants["full_int8"].input_dtype == "uint8"


def test_report_json_follows_the_contract(evaluated):
    _, out = evaluated
    doc = json.loads((out / "report.json").read_text())
    assert doc["dataset_fingerprint"] == "sha256:test" and doc["split"] == "val"
    assert doc["float_keras"] is None
    for row in doc["variants"].values():
        for key in ("size_bytes", "map", "map50", "per_class_ap", "delta_map_vs_float", "latency_ms",
                    "robustness", "calibration"):
            assert key in row
        assert set(row["latency_ms"]) >= {"threads_1", "threads_N", "N"}
        assert set(row["latency_ms"]["threads_1"]) == {"median", "p90", "ci"}
        low, high = row["latency_ms"]["threads_1"]["ci"]
        assert low <= row["latency_ms"]["threads_1"]["median"] <= high
        assert row["latency_ms"]["N"] == 2
        for key in ("map_ci", "map50_ci", "delta_map_ci", "per_class_ap50", "calibration_set"):
            assert key in row
        assert row["map_ci"][0] <= row["map"] <= row["map_ci"][1]
        assert row["delta_map_ci"] == [0.0, 0.0]  # identical detections: every resample agrees
        assert set(row["robustness"]["dark"]) == {"map", "map50"}
        assert set(row["calibration"]) >= {"ece", "score_shift"}
        assert set(row["per_class_ap"]) == set(CLASSES)
    assert doc["intervals"]["resamples"] == 200 and doc["intervals"]["confidence"] == 0.95
    assert doc["intervals"]["images"] == 4 and "paired" in doc["intervals"]["method"]
    assert "in turns" in doc["intervals"]["latency"]


def test_markdown_html_and_plot(evaluated):
    _, out = evaluated
    md = (out / "report.md").read_text()
    table = [line for line in md.splitlines() if line.startswith("| ")]
    assert any(line.startswith("| fp32 |") for line in table)
    assert any(line.startswith("| full_int8 |") for line in table)
    assert "ΔmAP vs float (pt)" in md and "Robustness" in md
    assert "## AP@.5 per class" in md and "95% intervals" in md
    assert "| fp32 | " in md and "1.0000 [1.0000, 1.0000]" in md
    png = (out / "tradeoff.png").read_bytes()
    assert png.startswith(b"\x89PNG")
    page = (out / "report.html").read_text()
    assert "data:image/png;base64," + base64.b64encode(png).decode() in page
    assert "full_int8" in page and "<table>" in page


def test_key_metrics_per_variant(evaluated):
    report, _ = evaluated
    metrics = core.key_metrics(report)
    for name in ("fp32", "full_int8"):
        assert metrics[f"{name}_map"] == pytest.approx(1.0)
        assert metrics[f"{name}_latency_1t_ms"] > 0
        assert metrics[f"{name}_map_lo"] <= metrics[f"{name}_map"] <= metrics[f"{name}_map_hi"]
        assert metrics[f"{name}_latency_1t_ms_lo"] <= metrics[f"{name}_latency_1t_ms_hi"]
        assert f"{name}_delta_map_pt_hi" in metrics and f"{name}_map50_lo" in metrics
    assert all(isinstance(v, float) for v in metrics.values())


def test_degraded_variant_shows_a_drop_and_keras_row_renders():
    doc = {"dataset_fingerprint": "x", "split": "val", "float_reference": "float_keras",
           "float_keras": {"map": 0.6, "map50": 0.9, "delta_map_vs_float": 0.0, "latency_ms": None},
           "variants": {"fp32": {"map": 0.6, "map50": 0.9, "size_bytes": 4096, "delta_map_vs_float": 0.0,
                                 "latency_ms": {"threads_1": {"median": 2.0, "p90": 2.5}, "threads_N": None, "N": 2}}}}
    md = render_markdown(doc)
    assert "| float (Keras) |" in md and "| fp32 | 4.0 |" in md


def test_bad_inputs(standin_variants, tmp_path, examples):
    specs, _ = variants_contract.load_variants(standin_variants)
    with pytest.raises(ValueError, match="no images"):
        core.evaluate_examples(specs, [], CLASSES, show_progress=False)
    bad = [make_example(0, [[0.1, 0.1, 0.4, 0.4]], [5])]
    with pytest.raises(ValueError, match=r"label\(s\) \[5\] outside the label map"):
        core.evaluate_examples(specs, bad, CLASSES, show_progress=False)
    with pytest.raises(ValueError, match="disagrees with the dataset's classes"):
        runners.check_label_maps(CLASSES, ["circle", "square"], "variants/labels.txt")
    with pytest.raises(FileNotFoundError, match="variants.json"):
        variants_contract.load_variants(tmp_path)
    (tmp_path / "variants.json").write_text('{"variants": []}')
    with pytest.raises(ValueError, match="lists no variants"):
        variants_contract.load_variants(tmp_path)
    with pytest.raises(ValueError, match="'int4'"):
        variants_contract.load_variants(standin_variants, only=["int4"])
    with pytest.raises(ValueError, match="'foggy'"):
        core.evaluate_examples(specs, examples, CLASSES, slices=["foggy"], show_progress=False)


def test_variants_set_aside_by_quantize_are_named_in_the_report(evaluated):
    report, _ = evaluated
    doc = report.to_dict()
    assert doc["set_aside"] == [] and "set aside" not in render_markdown(doc)
    doc["set_aside"] = [{"name": "full_int8_pt", "stage": "validate-after",
                         "error": "quantize [validate-after] full_int8_pt: parity outside tolerance"}]
    text = render_markdown(doc)
    assert "set aside by quantize, not evaluated**: full_int8_pt (quantize [validate-after]" in text
