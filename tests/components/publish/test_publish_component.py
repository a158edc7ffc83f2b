"""The publish KFP component's body, called with artifact stand-ins (kfp's python_func), on the
local stack: it publishes, returns the version and URI, and writes the manifest artifact."""
from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

pytestmark = pytest.mark.stack


def test_component_body_publishes_and_outputs_version(clean_stack, variants, tmp_path):
    from components.publish.component import publish

    vdir, edir = variants
    decision = tmp_path / "decision.json"
    decision.write_text(json.dumps({"publish": True, "chosen": "fp32"}))
    dataset = tmp_path / "dataset"
    dataset.mkdir()
    out = SimpleNamespace(path=str(tmp_path / "manifest-artifact"), metadata={}, uri="")
    art = lambda p: SimpleNamespace(path=str(p), metadata={}, uri="")  # noqa: E731
    result = publish.python_func(
        variants=art(vdir), evaluation=art(edir), dataset=art(dataset), decision=art(decision),
        variant="fp32", model_name="detector", channel="beta", bucket="edgeship",
        min_app_version="2.0", manifest=out)
    assert result.version and result.uri == f"gs://edgeship/models/detector/{result.version}/"
    written = json.loads((tmp_path / "manifest-artifact" / "manifest.json").read_text())
    assert written["version"] == result.version and written["channel"] == "beta"
    assert written["min_app_version"] == "2.0"
    assert {f["path"] for f in written["files"]} == {"model.tflite", "labels.txt", "report.json",
                                                     "decision.json"}
    assert out.metadata["version"] == result.version
