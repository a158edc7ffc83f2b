"""The auto-quantize branch's steps run for real with kfp.local on a tiny dataset and model:
autoquant → evaluate → select → publish to the local Cloud Storage server, wired by the real
pipeline's ``evaluate_gate_publish`` (the function both branches of edgeship_pipeline call).

One stand-in step hands over the data, train and qat steps' artifacts, made in this process by
the same cores (a 1-epoch float model and a 1-epoch QAT model): running those steps in kfp.local
too cost ~4 of this test's 6 minutes, and the main job runs them every time. Which branch the real
pipeline takes and how its tasks are wired is checked on the compiled spec (test_compile.py).

Checks that the search's result is select's only candidate, that its curve lands in the
evaluation report, and that publish ships the searched model."""
import json

import pytest
from kfp import dsl
from kfp.dsl import Dataset, Model, Output

from components.autoquant.component import autoquant
from pipelines import resources
from pipelines.edgeship_pipeline import Placement, evaluate_gate_publish
from pipelines.local import run_local

# kfp.local subprocesses, each importing TensorFlow: ~2 min here, more on a busy machine
pytestmark = [pytest.mark.slow, pytest.mark.stack, pytest.mark.timeout(1800)]


@dsl.component(base_image="python:3.11", install_kfp_package=False)
def upstream(dataset: Output[Dataset], float_model: Output[Model], qat_model: Output[Model]):
    """Stand-in for data → train → qat: copies the artifacts the test prepared."""
    import os  # noqa: F811 - a KFP component body runs alone: it imports what it uses
    import shutil

    source = os.environ["EDGESHIP_TEST_UPSTREAM"]
    for name, out in (("dataset", dataset), ("float_model", float_model), ("qat_model", qat_model)):
        shutil.copytree(os.path.join(source, name), out.path)


@dsl.pipeline(name="edgeship-autoquant-standin")
def autoquant_pipeline(bucket: str = "edgeship", model_name: str = "aq-branch"):
    step = Placement(resources.resolve(), "python:3.11", "python:3.11")
    up = upstream()
    up.set_caching_options(False)
    search = step("autoquant", dataset=up.outputs["dataset"], float_model=up.outputs["float_model"],
                  qat_model=up.outputs["qat_model"], accuracy_budget="none", max_latency_ms=0.0,
                  max_candidates=4, max_seconds=0.0)
    search.set_caching_options(False)
    evaluate_gate_publish(step, variants=search.outputs["result"], dataset=up.outputs["dataset"],
                          float_model=up.outputs["float_model"], model_name=model_name,
                          channel="stable", bucket=bucket, accuracy_budget="none",
                          latency_budget_ms=0.0, tolerance=0.5, force_promote=False,
                          min_app_version="1.0.0", min_map=0.0, min_map50=0.0)


@pytest.fixture(scope="module")
def upstream_dir(tmp_path_factory):
    """dataset/, float_model/ and qat_model/ as the data, train and qat steps write them."""
    from components.data.core import generate_dataset
    from components.qat.core import qat
    from components.train.core import train

    root = tmp_path_factory.mktemp("upstream")
    generate_dataset(root / "dataset", seed=5, train=8, val=4, calibration=4, image_size=64)
    train(str(root / "dataset"), root / "float_model", epochs=1, input_size=(64, 64),
          evaluate=False, saved_model=False, progress=False)
    qat(root / "float_model", str(root / "dataset"), root / "qat_model", epochs=1, min_steps=0, timing_steps=0,
        evaluate=False, saved_model=False, progress=False)
    return root


def test_auto_quantize_branch_feeds_select_and_publish(clean_stack, upstream_dir, tmp_path, monkeypatch):
    from edgeship.base import storage

    for key, value in clean_stack.env().items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("EDGESHIP_TEST_UPSTREAM", str(upstream_dir))
    result = run_local({"bucket": clean_stack.buckets[0]}, pipeline_root=tmp_path,
                       pipeline_func=autoquant_pipeline)

    for step in ("upstream", "autoquant", "evaluate", "select", "publish"):
        assert result.task(step), f"{step} did not run: {result.statuses}"

    # with no accuracy limit the search stops at its first int8 candidate that fits: QAT int8
    search = json.loads((result.output("autoquant", "result") / "autoquant.json").read_text())
    assert search["chosen"] == "qat_int8" and search["met_budget"] is True
    decision = json.loads(result.output("select", "decision").read_text())
    assert decision["chosen"] == "qat_int8" and decision["publish"] is True
    assert [c["name"] for c in decision["candidates"]] == ["qat_int8"]

    report = json.loads((result.output("evaluate", "evaluation") / "report.json").read_text())
    assert set(report["variants"]) == {"qat_int8"}
    assert [c["name"] for c in report["autoquant"]["candidates"]] == [c["name"] for c in search["candidates"]]
    assert (result.output("evaluate", "evaluation") / "autoquant_tradeoff.png").is_file()
    assert "Auto-quantize" in result.output("autoquant", "tradeoff_md").read_text()
    metrics = json.loads(result.output("autoquant", "metrics").read_text())
    assert metrics["candidates"] == len(search["candidates"])

    out = json.loads((result.run_dir / result.task("publish") / "executor_output.json").read_text())
    version = out["parameterValues"]["version"]
    uri = f"gs://{clean_stack.buckets[0]}/models/aq-branch/{version}/manifest.json"
    manifest = json.loads(storage.read_bytes(uri))
    assert manifest["variant"] == "qat_int8"
