"""The gate wired as in the pipeline (select → dsl.If publish / else not_published), run for real
with kfp.local's SubprocessRunner through pipelines.local.run_local. The upstream steps are
replaced by a step that writes a known evaluation report, so this runs in seconds."""
import json

import pytest
from kfp import dsl
from kfp.dsl import Artifact, Input, Output

from components.select.component import not_published, select
from pipelines.local import run_local

REPORT = {
    "dataset_fingerprint": "sha256:test",
    "float_keras": {"map": 0.50},
    "variants": {
        "fp32": {"map": 0.50, "size_bytes": 4000, "latency_ms": {"threads_1": {"median": 10.0}}},
        "full_int8": {"map": 0.49, "size_bytes": 1000, "latency_ms": {"threads_1": {"median": 4.0}}},
    },
}


@dsl.component(base_image="python:3.11", install_kfp_package=False)
def fake_evaluate(report_json: str, evaluation: Output[Artifact]):
    import os

    os.makedirs(evaluation.path, exist_ok=True)
    with open(os.path.join(evaluation.path, "report.json"), "w") as fh:
        fh.write(report_json)


@dsl.component(base_image="python:3.11", install_kfp_package=False)
def fake_publish(decision: Input[Artifact], variant: str) -> str:
    import json

    saved = json.load(open(decision.path))
    assert saved["chosen"] == variant
    print("PUBLISHED", variant)
    return variant


@dsl.pipeline(name="gate-test")
def gate_pipeline(report_json: str, accuracy_budget: str, force_promote: bool = False):
    ev = fake_evaluate(report_json=report_json)
    sel = select(evaluation=ev.outputs["evaluation"], model_name="m", channel="stable", bucket="",
                 accuracy_budget=accuracy_budget, latency_budget_ms=0.0, tolerance=0.5,
                 force_promote=force_promote)
    with dsl.If(sel.outputs["publish"] == True, name="gate-passed"):  # noqa: E712
        fake_publish(decision=sel.outputs["decision"], variant=sel.outputs["variant"])
    with dsl.Else(name="gate-refused"):
        not_published(decision=sel.outputs["decision"])


def run(tmp_path, budget, force=False):
    events = []
    result = run_local({"report_json": json.dumps(REPORT), "accuracy_budget": budget,
                        "force_promote": force},
                       pipeline_root=tmp_path, pipeline_func=gate_pipeline, on_event=events.append)
    return result, events


def test_gate_passes_and_publish_runs(tmp_path):
    result, events = run(tmp_path, "2.0")
    assert result.statuses["select"] == "SUCCESS"
    assert result.statuses.get("fake-publish") == "SUCCESS"
    assert "not-published" not in result.statuses
    decision = json.loads(result.output("select", "decision").read_text())
    assert decision["publish"] is True and decision["chosen"] == "full_int8"
    assert "PUBLISHED full_int8" in result.log_path.read_text()
    assert [e.task for e in events if e.kind == "start"][:2] == ["fake-evaluate", "select"]
    assert result.output("select", "decision_md").read_text().startswith("# Gate decision: PUBLISH")


def test_gate_refuses_and_says_why(tmp_path):
    result, _ = run(tmp_path, "0.5")  # full_int8 loses 1.0 pt, fp32 0 pt but is slower → fp32
    decision = json.loads(result.output("select", "decision").read_text())
    assert decision["chosen"] == "fp32"
    report = dict(REPORT, variants={"full_int8": REPORT["variants"]["full_int8"]})
    events = []
    result = run_local({"report_json": json.dumps(report), "accuracy_budget": "0.5",
                        "force_promote": False}, pipeline_root=tmp_path / "b",
                       pipeline_func=gate_pipeline, on_event=events.append)
    assert "fake-publish" not in result.statuses
    assert result.statuses["not-published"] == "SUCCESS"
    log = result.log_path.read_text()
    assert "NOT PUBLISHED" in log and "no variant within the budget" in log
    assert "# Not published" in result.output("not-published", "explanation").read_text()


def test_bad_budget_fails_the_select_step_with_the_value(tmp_path):
    with pytest.raises(RuntimeError, match="select") as info:
        run(tmp_path, "-3")
    assert "-3" in (tmp_path / "pipeline.log").read_text()
    assert "pipeline.log" in str(info.value)


def test_cached_rerun_reuses_upstream_but_reruns_the_gate(tmp_path):
    params = {"report_json": json.dumps(REPORT), "accuracy_budget": "2.0", "force_promote": False}
    first = run_local(params, pipeline_root=tmp_path, pipeline_func=gate_pipeline,
                      enable_caching=True, cache_root=tmp_path / "cache")
    assert first.statuses["fake-evaluate"] == "SUCCESS"
    events = []
    second = run_local(dict(params, accuracy_budget="0.5"), pipeline_root=tmp_path,
                       pipeline_func=gate_pipeline, enable_caching=True,
                       cache_root=tmp_path / "cache", on_event=events.append)
    assert second.statuses["fake-evaluate"] == "CACHED"
    assert second.statuses["select"] == "SUCCESS"  # a new budget: not a cache hit
    decision = json.loads(second.output("select", "decision").read_text())
    assert decision["config"]["accuracy_budget"] == 0.5
    assert decision["inputs"]["evaluation"] == str(first.output("fake-evaluate", "evaluation"))


def test_source_fingerprint_changes_with_the_code(tmp_path):
    from pipelines.local import source_fingerprint

    (tmp_path / "components").mkdir()
    (tmp_path / "pyproject.toml").write_text("x")
    (tmp_path / "components" / "core.py").write_text("a = 1\n")
    before = source_fingerprint(tmp_path)
    assert source_fingerprint(tmp_path) == before
    (tmp_path / "components" / "core.py").write_text("a = 2\n")
    assert source_fingerprint(tmp_path) != before
