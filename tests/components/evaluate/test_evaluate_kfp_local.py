"""The evaluate component run for real by kfp.local (SubprocessRunner): artifacts staged by a tiny
upstream step (the data step's tiny dataset, a random-weight train-step model, stand-in variants),
then the component writes report.json/html/md, its HTML and Markdown outputs and KFP Metrics."""
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from kfp import dsl
from kfp.dsl import Artifact, Dataset, Model, Output

data = pytest.importorskip("components.data.core")
detector = pytest.importorskip("edgeship.detection.model")

from components.evaluate.component import evaluate
from edgeship.cli.main_job import task_outputs
from pipelines.local import run_local

pytestmark = pytest.mark.slow  # two subprocess steps, each importing TensorFlow


@dsl.component(base_image="python:3.11", install_kfp_package=False)
def stage(dataset_dir: str, model_dir: str, variants_dir: str, dataset: Output[Dataset],
          model: Output[Model], variants: Output[Artifact]):
    import shutil

    shutil.copytree(dataset_dir, dataset.path)
    shutil.copytree(model_dir, model.path)
    shutil.copytree(variants_dir, variants.path)


@dsl.pipeline(name="evaluate-test")
def evaluate_pipeline(dataset_dir: str, model_dir: str, variants_dir: str):
    staged = stage(dataset_dir=dataset_dir, model_dir=model_dir, variants_dir=variants_dir)
    evaluate(dataset=staged.outputs["dataset"], float_model=staged.outputs["model"],
             variants=staged.outputs["variants"], latency_runs=3)


def test_evaluate_component_in_kfp_local(tmp_path, standin_variants):
    info = data.generate_dataset(tmp_path / "data", seed=2, train=1, val=3, calibration=1, image_size=64)
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    config = detector.ModelConfig(input_size=(64, 64), num_classes=len(info.class_names), labels=info.class_names)
    detector.build_detector(config).save_weights(str(model_dir / "weights.h5"))
    config.save(model_dir / "model_config.json")
    np.save(model_dir / "anchors.npy", detector.make_anchors(config))
    variants = tmp_path / "variants"
    shutil.copytree(standin_variants, variants)
    (variants / "labels.txt").write_text("\n".join(info.class_names) + "\n")

    result = run_local({"dataset_dir": str(tmp_path / "data"), "model_dir": str(model_dir),
                        "variants_dir": str(variants)},
                       pipeline_root=tmp_path / "root", pipeline_func=evaluate_pipeline)
    outputs = task_outputs(result.run_dir, "evaluate")
    report = json.loads((Path(outputs["evaluation"]) / "report.json").read_text())
    assert set(report["variants"]) == {"fp32", "full_int8"}
    assert report["float_keras"] is not None and report["float_reference"] == "float_keras"
    assert "data:image/png;base64," in open(outputs["report_html"]).read()
    assert "| full_int8 |" in open(outputs["report_md"]).read()
    metrics = json.loads((result.run_dir / "evaluate" / "executor_output.json").read_text())
    logged = json.dumps(metrics)
    assert "fp32_map" in logged and "full_int8_latency_1t_ms" in logged
