"""autoquant() end to end on a stand-in detector (post-processing op inside) and the data step's
tiny dataset; the debugger on the full detection graph; the CLI and the KFP component interface."""
from __future__ import annotations

import json

import pytest

from edgeship import cli
from tests.support.quantize_models import write_standin_model

data = pytest.importorskip("components.data.core")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("dataset")
    info = data.generate_dataset(out, seed=3, train=1, val=4, calibration=6, image_size=48)
    return out, info


@pytest.fixture(scope="module")
def model_dir(dataset, tmp_path_factory):
    _, info = dataset
    return write_standin_model(tmp_path_factory.mktemp("model"), input_size=64,
                               num_classes=len(info.class_names))


@pytest.fixture(scope="module")
def nothing_fits(dataset, model_dir, tmp_path_factory):
    """A run where no candidate can meet the limits (max latency 0 ms): every stage gets tried."""
    from components.autoquant.core import autoquant

    out = tmp_path_factory.mktemp("aq")
    result = autoquant(model_dir, None, str(dataset[0]), out, budget_pt=0.0, max_latency_ms=0.0,
                       num_calibration=4, latency_runs=2, step=2, progress=False)
    return result, out


@pytest.mark.slow
def test_no_candidate_meets_limits_returns_most_accurate_with_figures(nothing_fits):
    result, out = nothing_fits
    assert not result.met_budget and not result.partial
    names = [c.name for c in result.candidates]
    assert names[:3] == ["fp32", "full_int8", "selective_int8_f2"]
    assert names[-2:] == ["int16x8", "float16"]
    assert all(c.latency_ms > 0 and c.size_bytes > 0 for c in result.candidates if c.error is None)
    best = max(c.metric for c in result.candidates if c.metric is not None)
    assert result.chosen.metric == best
    saved = json.loads((out / "autoquant.json").read_text())
    assert saved["met_budget"] is False and "NO candidate meets the budget" in saved["message"]


@pytest.mark.slow
def test_selective_candidate_on_the_detection_graph(nothing_fits):
    """The debugger runs on the model *with* TFLite_Detection_PostProcess; its names denylist there."""
    from edgeship.detection.verify import inspect_tflite

    result, out = nothing_fits
    ranking = result.layer_ranking
    assert len(ranking) > 5 and all(s.name for s in ranking)
    sel = next(c for c in result.candidates if c.scheme == "selective_int8")
    assert sel.error is None and sel.float_layers == [s.name for s in ranking[:2]]
    info = inspect_tflite(out / "candidates" / f"{sel.name}.tflite")
    assert set(info["outputs"]) == {"boxes", "classes", "scores", "count"}
    full = next(c for c in result.candidates if c.name == "full_int8")
    from components.autoquant.core import count_int8_ops

    assert count_int8_ops(sel.tflite) < count_int8_ops(full.tflite)


@pytest.mark.slow
def test_outputs_are_usable_by_evaluate_and_publish(nothing_fits, dataset):
    result, out = nothing_fits
    doc = json.loads((out / "variants.json").read_text())
    entry = doc["variants"][0]
    assert entry["name"] == result.chosen.name and (out / entry["file"]).is_file()
    assert set(entry["outputs"]) == {"boxes", "classes", "scores", "count"}
    assert entry["autoquant"]["met_budget"] is False
    assert (out / "labels.txt").read_text().split() == list(dataset[1].class_names)
    from edgeship.contracts.variants import load_variants

    specs, _ = load_variants(out)
    assert [s.name for s in specs] == [entry["name"]]
    for f in ("tradeoff.json", "tradeoff.md", "tradeoff.png", "layers.csv", "layers.json", "layers.md"):
        assert (out / f).is_file(), f


@pytest.mark.slow
def test_budget_met_by_first_int8_candidate_and_deterministic(dataset, model_dir, tmp_path):
    from components.autoquant.core import autoquant

    runs = []
    for i in range(2):
        r = autoquant(model_dir, None, str(dataset[0]), tmp_path / f"r{i}", budget_pt=100.0,
                      num_calibration=4, latency_runs=1, seed=7, progress=False)
        runs.append(r)
    assert [c.name for c in runs[0].candidates] == ["fp32", "full_int8"]
    assert runs[0].chosen.name == "full_int8" and runs[0].met_budget
    assert (tmp_path / "r0" / "full_int8.tflite").read_bytes() == (tmp_path / "r1" / "full_int8.tflite").read_bytes()
    assert runs[0].chosen.metric == runs[1].chosen.metric


def test_cli_negative_budget_is_a_clear_error(capsys, tmp_path):
    rc = cli.main(["autoquant", "--model", str(tmp_path), "--data", str(tmp_path), "--out",
                   str(tmp_path / "o"), "--budget", "-0.5"])
    assert rc == 2
    assert "budget_pt must be >= 0" in capsys.readouterr().err and "-0.5" in capsys.readouterr().err + "-0.5"


def test_cli_missing_model_dir_names_it(capsys, dataset, tmp_path):
    rc = cli.main(["autoquant", "--model", str(tmp_path / "nope"), "--data", str(dataset[0]), "--out",
                   str(tmp_path / "o"), "--budget", "1"])
    assert rc == 2 and str(tmp_path / "nope") in capsys.readouterr().err


@pytest.mark.slow
def test_qat_int8_is_tried_first_and_chosen_when_it_fits(dataset, model_dir, tmp_path_factory):
    from components.autoquant.core import autoquant

    qat_dir = write_standin_model(tmp_path_factory.mktemp("qat"), input_size=64,
                                  num_classes=len(dataset[1].class_names), qat=True)
    out = tmp_path_factory.mktemp("aq_qat")
    r = autoquant(model_dir, qat_dir, str(dataset[0]), out, budget_pt=100.0, num_calibration=2,
                  latency_runs=1, progress=False)
    assert [c.name for c in r.candidates] == ["fp32", "qat_int8"]
    assert r.chosen.name == "qat_int8" and r.chosen.error is None and r.met_budget
    entry = json.loads((out / "variants.json").read_text())["variants"][0]
    assert entry["source"] == "qat" and entry["input"]["dtype"] == "uint8"


@pytest.mark.slow
def test_cli_runs_and_exits_1_when_budget_missed(capsys, dataset, model_dir, tmp_path):
    rc = cli.main(["autoquant", "--model", str(model_dir), "--data", str(dataset[0]), "--out",
                   str(tmp_path / "o"), "--budget", "0", "--max-latency-ms", "0", "--max-candidates", "1",
                   "--calibration-images", "2", "--latency-runs", "1"])
    out = capsys.readouterr().out
    assert rc == 1 and "partial search: max_candidates=1 reached" in out
    assert json.loads((tmp_path / "o" / "autoquant.json").read_text())["partial"] is True


def test_kfp_component_interface():
    from components.autoquant.component import autoquant

    spec = autoquant.component_spec
    assert set(spec.inputs) >= {"dataset", "float_model", "qat_model", "accuracy_budget", "max_seconds",
                                "seed"}
    assert spec.inputs["accuracy_budget"].type == "String"  # the pipeline's budget, "none" allowed
    assert set(spec.outputs) >= {"result", "metrics", "tradeoff_md", "chosen", "met_budget", "partial"}
    assert spec.inputs["qat_model"].optional  # pipelines without a QAT step can still call it


@pytest.mark.parametrize("text, points", [("1.0", 1.0), (" 0.3 ", 0.3), ("0", 0.0), ("none", 100.0), (2, 2.0)])
def test_pipeline_budget_text_to_points(text, points):
    from edgeship.contracts.budget import budget_points

    assert budget_points(text) == points


@pytest.mark.parametrize("text", ["-1", "abc", "nan"])
def test_bad_pipeline_budget_is_named(text):
    from edgeship.contracts.budget import budget_points

    with pytest.raises(ValueError, match=repr(text).replace("(", r"\(")):
        budget_points(text)
