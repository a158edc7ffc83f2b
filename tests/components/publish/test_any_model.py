"""Publishing any model (components/publish/any_model.py, edgeship/delivery/model_files.py): the
manifest of a classifier, a segmenter and a standalone detector, and every class of bad input
named before anything remote happens."""
from __future__ import annotations

import hashlib
import json
import zipfile

import pytest

from components.publish import any_model
from edgeship.contracts import manifest as mf
from edgeship.delivery import model_files
from tests.components.publish import tiny_models


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """Real tiny .tflite files: a 3-class classifier, a 2-class segmenter, a fused detector."""
    root = tmp_path_factory.mktemp("any-models")
    return {"classifier": tiny_models.build_classifier(root / "classifier.tflite", classes=3),
            "segmenter": tiny_models.build_segmenter(root / "segmenter.tflite", classes=2),
            "detector": tiny_models.build_fused_detector(root / "detector.tflite", classes=3)}


def _labels(tmp_path, n: int, name: str = "labels.txt"):
    path = tmp_path / name
    path.write_text("\n".join(f"class{i}" for i in range(n)) + "\n")
    return path


def _build(paths, tmp_path, **kw):
    args = {"task": "classifier", "model": "flowers", "channel": "stable", "version": mf.new_version(),
            "created_at": "2026-11-24T12:00:00.000000Z", "work_dir": tmp_path}
    args.update(kw)
    return any_model.build_model_manifest(paths, **args)


def test_classifier_manifest_records_task_outputs_labels_and_names(models, tmp_path):
    manifest, uploads = _build([models["classifier"]], tmp_path, labels_path=_labels(tmp_path, 3),
                               tags=["flowers", "v2"], display_name="Flower classifier", version_name="v1.2.0")
    mf.validate(manifest)
    assert manifest["task"] == "classifier" and manifest["variant"] == "standalone"
    assert manifest["input"] == {"name": "image", "shape": [1, 8, 8, 3], "dtype": "float32", "scale": None,
                                 "zero_point": None, "normalization": ""}
    [out] = manifest["outputs"]
    assert out["shape"] == [1, 3] and out["dtype"] == "float32" and out["position"] == 0
    assert manifest["labels"] == ["class0", "class1", "class2"]
    assert (manifest["tags"], manifest["display_name"], manifest["version_name"]) == (
        ["flowers", "v2"], "Flower classifier", "v1.2.0")
    assert [u.name for u in uploads] == ["model.tflite", "labels.txt"]
    # published byte for byte: no TFLite Model Metadata written into a non-detector
    assert uploads[0].local == models["classifier"]
    assert manifest["files"][0]["sha256"] == hashlib.sha256(models["classifier"].read_bytes()).hexdigest()
    assert manifest["metrics"]["size_bytes"] == models["classifier"].stat().st_size


def test_segmenter_and_other_tasks_list_every_output(models, tmp_path):
    seg, _ = _build([models["segmenter"]], tmp_path, task="segmenter", labels_path=_labels(tmp_path, 2))
    assert seg["outputs"][0]["shape"] == [1, 8, 8, 2] and seg["labels"] == ["class0", "class1"]
    other, uploads = _build([models["detector"]], tmp_path, task="other")
    assert len(other["outputs"]) == 4 and other["labels"] == [] and [u.name for u in uploads] == ["model.tflite"]


def test_standalone_detector_maps_the_fused_op_outputs_and_is_not_retagged(models, tmp_path):
    from edgeship.detection import op_report

    manifest, uploads = _build([models["detector"]], tmp_path, task="detector", labels_path=_labels(tmp_path, 3))
    want = op_report.output_map(op_report._interpreter(models["detector"]))
    assert manifest["outputs"] == want
    assert "task" in manifest and manifest["task"] == "detector"
    assert uploads[0].local == models["detector"]  # the user's file as it is


def test_core_ml_package_folder_is_zipped_and_a_zip_is_checked(models, tmp_path):
    pkg = tiny_models.make_mlpackage(tmp_path / "src", "flowers")
    manifest, uploads = _build([models["classifier"], pkg], tmp_path)
    assert [(u.name, u.format) for u in uploads] == [("model.tflite", "tflite"), ("flowers.mlpackage.zip", "coreml")]
    with zipfile.ZipFile(uploads[1].local) as zf:
        assert "flowers.mlpackage/Manifest.json" in zf.namelist()
    zipped = tiny_models.zip_mlpackage(pkg, tmp_path)
    manifest, uploads = _build([zipped, models["classifier"]], tmp_path)
    assert [f["format"] for f in manifest["files"]] == ["tflite", "coreml"]


def _not_flatbuffer(tmp_path, models):
    bad = tmp_path / "model.tflite"
    bad.write_bytes(b"<html>not a model</html>" * 10)
    return [bad], {}


def _tfl3_garbage(tmp_path, models):
    bad = tmp_path / "model.tflite"
    bad.write_bytes(b"\x1c\0\0\0TFL3" + b"\xff" * 200)
    return [bad], {}


def _zip_without_manifest(tmp_path, models):
    z = tmp_path / "flowers.mlpackage.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("flowers.mlpackage/Data/com.apple.CoreML/model.mlmodel", b"x")
    return [models["classifier"], z], {}


def _folder_without_manifest(tmp_path, models):
    pkg = tmp_path / "flowers.mlpackage"
    (pkg / "Data").mkdir(parents=True)
    return [models["classifier"], pkg], {}


def _zip_not_a_zip(tmp_path, models):
    z = tmp_path / "flowers.mlpackage.zip"
    z.write_bytes(b"PK not really")
    return [models["classifier"], z], {}


def _labels_count(tmp_path, models):
    return [models["classifier"]], {"labels_path": _labels(tmp_path, 5)}


def _segmenter_labels_count(tmp_path, models):
    return [models["segmenter"]], {"task": "segmenter", "labels_path": _labels(tmp_path, 3)}


def _classifier_as_detector(tmp_path, models):
    return [models["classifier"]], {"task": "detector", "labels_path": _labels(tmp_path, 3)}


def _segmenter_as_classifier(tmp_path, models):
    return [models["segmenter"]], {}


def _classifier_as_segmenter(tmp_path, models):
    return [models["classifier"]], {"task": "segmenter"}


def _coreml_only(tmp_path, models):
    return [tiny_models.make_mlpackage(tmp_path, "flowers")], {}


def _two_tflites(tmp_path, models):
    return [models["classifier"], models["segmenter"]], {}


def _detector_without_labels(tmp_path, models):
    return [models["detector"]], {"task": "detector"}


BAD_INPUTS = [
    (_not_flatbuffer, "is not a TFLite model"),
    (_tfl3_garbage, "LiteRT cannot load"),
    (_zip_without_manifest, "has no flowers.mlpackage/Manifest.json"),
    (_folder_without_manifest, "has no Manifest.json"),
    (_zip_not_a_zip, "is not a zip"),
    (_labels_count, "has 5 labels, but .* has 3 classes"),
    (_segmenter_labels_count, "has 3 labels, but .* has 2 classes"),
    (_classifier_as_detector, "--task detector, but its outputs"),
    (_segmenter_as_classifier, "--task classifier, but its first output"),
    (_classifier_as_segmenter, "--task segmenter, but its first output"),
    (_coreml_only, "a version needs a .tflite"),
    (_two_tflites, "one .tflite per version"),
    (_detector_without_labels, "a detector needs --labels"),
]


@pytest.mark.parametrize("make, message", BAD_INPUTS, ids=[m.__name__.strip("_") for m, _ in BAD_INPUTS])
def test_bad_model_input_is_named(models, tmp_path, make, message):
    paths, kw = make(tmp_path, models)
    with pytest.raises(model_files.ModelFileError, match=message):
        _build(paths, tmp_path, **kw)


@pytest.mark.parametrize("kw, message", [
    ({"task": "regressor"}, "--task 'regressor' is not one of"),
    ({"tags": ["ok", "no spaces"]}, "tag 'no spaces' is not allowed"),
    ({"tags": ["a", "a"]}, "lists a tag twice"),
    ({"version_name": "../v1"}, "--version-name '../v1' is not allowed"),
    ({"version_name": "v" * 65}, "is not allowed"),
    ({"model": "Flowers"}, "model name 'Flowers'"),
    ({"display_name": ""}, "display name '' must be"),
])
def test_bad_parameters_are_named(models, tmp_path, kw, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(".", r"\.")):
        _build([models["classifier"]], tmp_path, **kw)


def test_schema_keeps_old_detector_manifests_valid_and_refuses_mixed_ones(models, tmp_path):
    manifest, _ = _build([models["detector"]], tmp_path, task="detector", labels_path=_labels(tmp_path, 3))
    old = {k: v for k, v in manifest.items() if k != "task"}  # a manifest written before tasks
    mf.validate(old)
    with pytest.raises(ValueError, match="outputs"):
        mf.validate({**old, "outputs": [{"index": 0, "name": "x", "shape": [1], "dtype": "float32"}]})
    with pytest.raises(ValueError, match="labels"):
        mf.validate({**old, "labels": []})
    classifier, _ = _build([models["classifier"]], tmp_path)
    with pytest.raises(ValueError, match="outputs"):  # a classifier's outputs are a tensor list
        mf.validate({**classifier, "outputs": manifest["outputs"]})
    with pytest.raises(ValueError, match="task"):
        mf.validate({**classifier, "task": "regressor"})
    mf.validate({**classifier, "labels": []})


def test_cli_refuses_mixed_forms_and_missing_task(models, capsys):
    from edgeship.cli import main

    code = main(["publish", str(models["classifier"]), "--variants", "x", "--model", "m"])
    assert code == 2 and "not both" in capsys.readouterr().err
    code = main(["publish", str(models["classifier"]), "--model", "m"])
    assert code == 2 and "--task is required with PATH" in capsys.readouterr().err
    code = main(["publish", str(models["classifier"]), "--model", "m", "--task", "classifier", "--report", "r"])
    assert code == 2 and "--report: only with --variants" in capsys.readouterr().err
    code = main(["publish", "--model", "m"])
    assert code == 2 and "give the model to publish" in capsys.readouterr().err


def test_tags_split_on_commas():
    from edgeship.cli.commands.publish import split_tags

    assert split_tags(["a,b", " c ", ""]) == ["a", "b", "c"]


def test_manifest_is_json_serialisable(models, tmp_path):
    manifest, _ = _build([models["segmenter"]], tmp_path, task="segmenter")
    assert json.loads(json.dumps(manifest)) == manifest
