"""The channel's champion re-scored on the evaluation's own images: downloaded from the local
stack's real GCS server (size and sha256 checked), run in LiteRT with its own input size, and
compared with every variant by a paired bootstrap; and every way it cannot be, with the reason."""
import hashlib
import json

import numpy as np
import pytest

from components.evaluate import champion as champ
from components.evaluate import core
from components.evaluate.report import render_markdown
from components.select.core import decide
from edgeship.contracts import evaluation
from edgeship.contracts import variants as variants_contract
from edgeship.contracts.decision import Champion, GateConfig
from tests.support import evaluate_data
from tests.support.evaluate_data import CLASSES, make_example, standin_examples

VERSION = "20261203t120000000000z-c0ffee"


@pytest.fixture(scope="module")
def weaker_tflite(tmp_path_factory):
    """A stand-in that reports only its first detection, at a 48-pixel input (the variants take
    32): the champion is another model, with another input size."""
    saved = evaluate_data.STANDIN_COUNT
    evaluate_data.STANDIN_COUNT = 1
    try:
        blob, outputs = evaluate_data._convert("float32", 48)
    finally:
        evaluate_data.STANDIN_COUNT = saved
    return blob, outputs


def upload_version(bucket_name: str, blob: bytes, outputs: dict, *, labels=CLASSES, corrupt=False) -> None:
    """A published version folder (model.tflite + manifest.json) as publish lays it out."""
    from edgeship.base import storage

    bucket = storage.gcs_client().bucket(bucket_name)
    prefix = f"models/det/{VERSION}/"
    bucket.blob(prefix + "model.tflite").upload_from_string(blob[:-8] + b"\0" * 8 if corrupt else blob)
    manifest = {"version": VERSION, "channel": "stable", "variant": "fp32", "labels": list(labels),
                "files": [{"path": "model.tflite", "format": "tflite", "size": len(blob),
                           "sha256": hashlib.sha256(blob).hexdigest(), "quantization": "fp32"}],
                "input": {"name": "image", "shape": [1, 48, 48, 3], "dtype": "float32", "scale": None,
                          "zero_point": None, "normalization": "raw RGB 0..255", "resize": "stretch"},
                "outputs": outputs, "metrics": {"map": 0.99}}
    bucket.blob(prefix + "manifest.json").upload_from_string(json.dumps(manifest))


def lookup(labels=CLASSES):
    return lambda model, channel: Champion(version=VERSION, map=0.99, labels=list(labels), source="test")


def mixed_examples():
    """Stand-in images (the variants find all three objects) and others they partly miss."""
    others = [make_example(10 + i, [[0.1, 0.1, 0.45, 0.5], [0.3, 0.3, 0.6, 0.6]], [1, 2], size=(40, 40))
              for i in range(3)]
    return [*standin_examples(4), *others]


@pytest.mark.stack
def test_the_champion_is_rescored_on_the_same_images_with_a_paired_delta(clean_stack, standin_variants,
                                                                        weaker_tflite, tmp_path,
                                                                        monkeypatch, capsys):
    from edgeship.base import progress

    monkeypatch.setenv(progress.ENV, "1")
    upload_version(clean_stack.buckets[0], *weaker_tflite)
    found = champ.find(clean_stack.buckets[0], "det", "stable", CLASSES, tmp_path, threads=2, lookup=lookup())
    assert found.detector is not None and found.detector.input_size == (48, 48)
    specs, _ = variants_contract.load_variants(standin_variants)
    report = core.evaluate_examples(specs, mixed_examples(), CLASSES, latency_runs=4, latency_warmup=1,
                                    threads=2, show_progress=False, slices=(), champion=found,
                                    bootstrap_resamples=100)
    lines = [progress.parse(line) for line in capsys.readouterr().out.splitlines()]
    scored = {(e["item"], e["index"], e["count"]) for e in lines if e and "map" in e and "phase" not in e}
    assert scored == {("fp32", 1, 3), ("full_int8", 2, 3), (f"champion {VERSION}", 3, 3)}  # the champion last
    record = report.champion
    assert record["rescored"] and record["version"] == VERSION and record["resize"] == "stretch"
    assert record["file"] == f"gs://{clean_stack.buckets[0]}/models/det/{VERSION}/model.tflite"
    assert record["size_bytes"] == len(weaker_tflite[0]) and record["latency_ms"]["threads_1"]["median"] > 0
    assert record["map"] < 0.9  # it reports one object per image
    # 7 photos × 4 views (small split: views on by default), drawn by photo like the gate's ΔmAP
    assert record["delta_scored_on"] == "photos and their views" and record["delta_images"] == 28
    for name, row in report.variants.items():
        assert row.delta_map_vs_champion == pytest.approx(
            (record["delta_champion_map"] - row.views_coco.map) * 100.0, abs=1e-3), name
        assert row.delta_map_vs_champion < 0  # the variants find more: better than the champion
        lo, hi = row.delta_map_vs_champion_ci
        assert lo <= row.delta_map_vs_champion <= hi and hi < 0, (name, lo, hi)
    doc = report.to_dict()
    evaluation.EvaluationReport(doc).validate()
    assert set(report.variants) == {"fp32", "full_int8"}  # the champion is no candidate
    assert f"champion (the model `det/stable` serves now): {VERSION}" in render_markdown(doc)
    d = decide(doc, GateConfig(accuracy_budget=1.0, tolerance=0.5), lookup()("det", "stable"))
    assert d.publish and any("paired, chosen − champion" in r for r in d.reasons)


@pytest.mark.stack
def test_a_corrupt_champion_file_is_not_rescored_and_the_report_says_why(clean_stack, standin_variants,
                                                                         weaker_tflite, tmp_path):
    upload_version(clean_stack.buckets[0], *weaker_tflite, corrupt=True)
    found = champ.find(clean_stack.buckets[0], "det", "stable", CLASSES, tmp_path, lookup=lookup())
    assert found.detector is None and "sha256" in found.record["reason"] and VERSION in found.record["reason"]
    specs, _ = variants_contract.load_variants(standin_variants)
    report = core.evaluate_examples(specs[:1], standin_examples(2), CLASSES, latency_runs=2, latency_warmup=1,
                                    threads=1, show_progress=False, slices=(), champion=found)
    assert report.champion["rescored"] is False and report.variants["fp32"].delta_map_vs_champion is None
    d = decide(report.to_dict(), GateConfig(accuracy_budget=1.0), lookup()("det", "stable"))
    assert any("was not re-scored on this split" in r and "sha256" in r for r in d.reasons)


@pytest.mark.stack
def test_a_missing_version_folder_is_named(clean_stack, tmp_path):
    found = champ.find(clean_stack.buckets[0], "det", "stable", CLASSES, tmp_path, lookup=lookup())
    assert found.detector is None
    assert f"gs://{clean_stack.buckets[0]}/models/det/{VERSION}/manifest.json" in found.record["reason"]


def test_what_is_not_rescored_and_why(tmp_path):
    assert champ.find("", "det", "stable", CLASSES, tmp_path) is None  # no comparison asked for
    none = champ.find("b", "det", "stable", CLASSES, tmp_path, lookup=lambda m, c: None)
    assert none.detector is None and "first release" in none.record["reason"]
    other = champ.find("b", "det", "stable", CLASSES, tmp_path, lookup=lookup(["cat", "dog"]))
    assert other.detector is None and "other labels" in other.record["reason"]
    assert other.record["version"] == VERSION and not list(tmp_path.iterdir())  # nothing downloaded

    def broken(model, channel):
        raise RuntimeError("registry down")

    failed = champ.find("b", "det", "stable", CLASSES, tmp_path, lookup=broken)
    assert failed.detector is None and "lookup failed: RuntimeError: registry down" in failed.record["reason"]


def test_paired_deltas_against_a_champion_need_no_stack(standin_variants):
    """add_champion_deltas on rows scored in-process: the same model as champion gives exactly 0
    with a zero-width interval (pairing cancels what both get right or wrong)."""
    from components.evaluate.intervals import add_champion_deltas

    specs, _ = variants_contract.load_variants(standin_variants)
    report = core.evaluate_examples(specs[:1], mixed_examples(), CLASSES, latency_runs=2, latency_warmup=1,
                                    threads=1, show_progress=False, slices=())
    row = report.variants["fp32"]
    assert 0 < row.map < 1
    same = core.ModelEval(name="champion", coco=row.coco)
    add_champion_deltas({"fp32": row}, same, resamples=50, confidence=0.95, seed=0)
    assert row.delta_map_vs_champion == 0.0 and tuple(np.round(row.delta_map_vs_champion_ci, 6)) == (0.0, 0.0)


def test_the_report_warns_when_the_champion_came_from_other_data():
    from components.evaluate.report import champion_line

    record = {"model": "det", "channel": "stable", "version": VERSION, "rescored": True, "map": 0.4,
              "map50": 0.8, "size_bytes": 2048, "resize": "stretch", "input_shape": [1, 48, 48, 3],
              "dataset_fingerprint": "sha256:" + "1" * 64}
    report = {"dataset_fingerprint": "sha256:" + "2" * 64, "variants": {}, evaluation.CHAMPION: record}
    assert "trained on another dataset" in champion_line(report)
    report["dataset_fingerprint"] = record["dataset_fingerprint"]
    assert "another dataset" not in champion_line(report)


class _Failing:
    """A champion whose model fails on these images (e.g. a class index outside the label map)."""

    name = "champion v9"

    def __call__(self, image):
        raise ValueError("model returned class index 7 outside 0..2")


def test_a_champion_that_fails_on_the_images_does_not_fail_the_evaluation(standin_variants):
    specs, _ = variants_contract.load_variants(standin_variants)
    found = champ.ChampionFound(_Failing(), {"version": "v9", "rescored": False})
    report = core.evaluate_examples(specs[:1], standin_examples(2), CLASSES, latency_runs=2, latency_warmup=1,
                                    threads=1, show_progress=False, slices=(), champion=found)
    assert report.variants["fp32"].map == pytest.approx(1.0) and report.variants["fp32"].delta_map_vs_champion is None
    assert report.champion["rescored"] is False
    assert "scoring it on this split failed: ValueError: model returned class index 7" in report.champion["reason"]


@pytest.mark.stack
@pytest.mark.parametrize("damage, reason", [
    (lambda m: m["input"].pop("resize"), "does not say its resize policy"),
    (lambda m: m.update(files=3), "'files' must be a list, got 3"),
    (lambda m: m["files"][0].update(size="3"), "model file size '3'"),
])
def test_a_champion_manifest_that_cannot_be_trusted_is_not_rescored(clean_stack, weaker_tflite, tmp_path,
                                                                    damage, reason):
    from edgeship.base import storage

    upload_version(clean_stack.buckets[0], *weaker_tflite)
    blob = storage.gcs_client().bucket(clean_stack.buckets[0]).blob(f"models/det/{VERSION}/manifest.json")
    manifest = json.loads(blob.download_as_bytes())
    damage(manifest)
    blob.upload_from_string(json.dumps(manifest))
    found = champ.find(clean_stack.buckets[0], "det", "stable", CLASSES, tmp_path, lookup=lookup())
    assert found.detector is None and reason in found.record["reason"], found.record["reason"]
