"""`edgeship run`'s main job end to end on the local stack, with the model steps replaced by one
stand-in step that hands over a prepared variants artifact (a real tiny .tflite) and an
evaluation report. Everything after it is real: select (champion from the Firestore emulator),
dsl.If, publish to the GCS server, the relay's CloudEvent, the register_model function, the
Firestore release record, and the listening client downloading, verifying and swapping.
The full pipeline with the real model steps is the main job itself (minutes; not a test)."""
import io
import json
from pathlib import Path

import pytest
from kfp import dsl
from kfp.dsl import Artifact, Dataset, Output

from components.publish.component import publish
from components.select.component import not_published, select
from edgeship.cli.main_job import main_job

pytestmark = pytest.mark.stack
ROOT = Path(__file__).resolve().parents[2]


def _support():
    from tests.support import delivery

    return delivery


@dsl.component(base_image="python:3.11", install_kfp_package=False)
def upstream(dataset: Output[Dataset], variants: Output[Artifact], evaluation: Output[Artifact]):
    """Stand-in for data → train → qat → quantize → evaluate: copies prepared artifacts."""
    import os  # noqa: F811 - a KFP component body runs alone: it imports what it uses
    import shutil

    source = os.environ["EDGESHIP_TEST_UPSTREAM"]
    shutil.copytree(os.path.join(source, "variants"), variants.path)
    shutil.copytree(os.path.join(source, "evaluation"), evaluation.path)
    os.makedirs(dataset.path)
    with open(os.path.join(dataset.path, "dataset.json"), "w") as fh:
        fh.write('{"fingerprint": "sha256:test"}')


@dsl.pipeline(name="edgeship-standin")
def standin_pipeline(data_uri: str = "", model_name: str = "edgeship-detector",
                     channel: str = "stable", bucket: str = "edgeship", input_size: int = 160,
                     epochs: int = 12, qat_epochs: int = 2, accuracy_budget: str = "1.0",
                     latency_budget_ms: float = 0.0, tolerance: float = 0.5,
                     force_promote: bool = False, min_app_version: str = "1.0.0"):
    up = upstream()
    up.set_caching_options(False)
    sel = select(evaluation=up.outputs["evaluation"], model_name=model_name, channel=channel,
                 bucket=bucket, accuracy_budget=accuracy_budget,
                 latency_budget_ms=latency_budget_ms, tolerance=tolerance,
                 force_promote=force_promote)
    sel.set_caching_options(False)
    with dsl.If(sel.outputs["publish"] == True, name="gate-passed"):  # noqa: E712
        pub = publish(variants=up.outputs["variants"], evaluation=up.outputs["evaluation"],
                      dataset=up.outputs["dataset"], decision=sel.outputs["decision"],
                      variant=sel.outputs["variant"], model_name=model_name, channel=channel,
                      bucket=bucket, min_app_version=min_app_version)
        pub.set_caching_options(False)
    with dsl.Else(name="gate-refused"):
        nop = not_published(decision=sel.outputs["decision"])
        nop.set_caching_options(False)


@pytest.fixture
def upstream_dir(tmp_path, monkeypatch):
    support = _support()
    tflite = support.build_tiny_tflite(tmp_path / "tiny.tflite")
    src = tmp_path / "upstream"
    support.make_variants_dir(src, tflite)
    monkeypatch.setenv("EDGESHIP_TEST_UPSTREAM", str(src))
    return src


def set_map(src: Path, value: float) -> None:
    path = src / "evaluation" / "report.json"
    report = json.loads(path.read_text())
    report["variants"]["fp32"]["map"] = value
    path.write_text(json.dumps(report))


def test_main_job_publishes_then_refuses_a_worse_model(clean_stack, upstream_dir, tmp_path):
    from components.data import core as data_core

    # the main job stages the embedded dataset in the local bucket; a small one stands in for it
    data_core.generate_dataset(tmp_path / "runs" / "data" / "edgeship-shapes-160", seed=1,
                               train=4, val=2, calibration=2, image_size=160)
    out = io.StringIO()
    rc = main_job({"model_name": "standin"}, root=tmp_path / "runs", stream=out,
                  stack_config=clean_stack, pipeline_func=standin_pipeline, client_timeout=30)
    text = out.getvalue()
    assert rc == 0, text
    assert "client holds the verified new model" in text, text
    assert "first release" in text and "CHOSEN (published)" in text, text
    assert "peak memory" in text and "wall time" in text
    assert "dataset: uploaded 16 files to gs://edgeship/datasets/edgeship-shapes-" in text, text
    held = (tmp_path / "runs" / "client" / "standin" / "current")  # one client cache per model
    assert held.exists()

    set_map(upstream_dir, 0.30)  # 20 pt below the champion just published
    out = io.StringIO()
    rc = main_job({"model_name": "standin"}, root=tmp_path / "runs", stream=out,
                  stack_config=clean_stack, pipeline_func=standin_pipeline, client_timeout=30)
    text = out.getvalue()
    assert rc == 0, text
    assert "NOT PUBLISHED" in text and "worse than champion" in text, text
    assert "(already in the local bucket)" in text, text
    assert "CHOSEN (not published)" in text
    assert "▶ not-published" in text and "▶ publish" not in text


@pytest.mark.parametrize("name", ["../escape", "a/b", "", ".hidden", "x" * 65])
def test_a_model_name_that_is_not_a_folder_name_is_refused_before_the_client_starts(name, tmp_path):
    from edgeship.cli.main_job import _start_client

    with pytest.raises(ValueError, match="model_name"):
        _start_client(name, "stable", tmp_path)
    assert not (tmp_path / "client").exists()
