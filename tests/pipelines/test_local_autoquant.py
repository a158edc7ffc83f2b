"""The real pipeline's auto-quantize branch, run for real with kfp.local on a tiny dataset and
model: data → train → qat → autoquant → evaluate → select → publish to the local Cloud Storage
server. Checks that the search is the source of select's candidates (quantize never runs), that
its curve lands in the evaluation report, and that publish ships the searched model."""
import json

import pytest

from pipelines.local import run_local

# the whole pipeline in kfp.local subprocesses: ~4-6 min here, more on a busy machine
pytestmark = [pytest.mark.slow, pytest.mark.stack, pytest.mark.timeout(1500)]


@pytest.fixture(scope="module")
def tiny_dataset(tmp_path_factory):
    from components.data.core import generate_dataset

    out = tmp_path_factory.mktemp("dataset")
    generate_dataset(out, seed=5, train=8, val=4, calibration=4, image_size=64)
    return out


def test_auto_quantize_branch_feeds_select_and_publish(clean_stack, tiny_dataset, tmp_path, monkeypatch):
    from edgeship.base import storage

    for key, value in clean_stack.env().items():
        monkeypatch.setenv(key, value)
    params = {"data_uri": str(tiny_dataset), "model_name": "aq-branch", "input_size": 64, "epochs": 1,
              "qat_epochs": 1, "auto_quantize": True, "accuracy_budget": "none",
              "autoquant_max_candidates": 4, "bucket": clean_stack.buckets[0]}
    result = run_local(params, pipeline_root=tmp_path)

    assert "quantize" not in result.statuses  # the fixed-variants branch was not taken
    for step in ("data", "train", "qat", "autoquant", "evaluate", "select", "publish"):
        assert result.task(step), f"{step} did not run: {result.statuses}"
    assert result.task("evaluate") == "evaluate-2" and result.task("publish") == "publish-2"

    # with no accuracy limit the search stops at its first int8 candidate that fits: QAT int8
    search = json.loads((result.output("autoquant", "result") / "autoquant.json").read_text())
    assert search["chosen"] == "qat_int8" and search["met_budget"] is True
    decision = json.loads(result.output("select-2", "decision").read_text())
    assert decision["chosen"] == "qat_int8" and decision["publish"] is True
    assert [c["name"] for c in decision["candidates"]] == ["qat_int8"]

    report = json.loads((result.output("evaluate-2", "evaluation") / "report.json").read_text())
    assert set(report["variants"]) == {"qat_int8"}
    assert [c["name"] for c in report["autoquant"]["candidates"]] == [c["name"] for c in search["candidates"]]
    assert (result.output("evaluate-2", "evaluation") / "autoquant_tradeoff.png").is_file()
    assert "Auto-quantize" in result.output("autoquant", "tradeoff_md").read_text()
    metrics = json.loads(result.output("autoquant", "metrics").read_text())
    assert metrics["candidates"] == len(search["candidates"])

    out = json.loads((result.run_dir / "publish-2" / "executor_output.json").read_text())
    version = out["parameterValues"]["version"]
    uri = f"gs://{clean_stack.buckets[0]}/models/aq-branch/{version}/manifest.json"
    manifest = json.loads(storage.read_bytes(uri))
    assert manifest["variant"] == "qat_int8"
