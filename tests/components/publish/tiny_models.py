"""Tiny real models built with TensorFlow for the publish-any-model tests (each converts in a
second or two): a classifier ([1, 8, 8, 3] -> [1, K] softmax), a segmenter ([1, 8, 8, 3] ->
[1, 8, 8, C]), and a Core ML package folder/zip (the layout only: a Manifest.json and a Data dir;
Core ML itself cannot run here)."""
from __future__ import annotations

import json
import shutil
from pathlib import Path


def _convert(fn, path: Path) -> Path:
    from edgeship.base.tfcompat import tf

    conv = tf.lite.TFLiteConverter.from_concrete_functions([fn.get_concrete_function()], fn)
    path.write_bytes(conv.convert())
    return path


def build_classifier(path: Path, classes: int = 3, seed: int = 0) -> Path:
    """A real .tflite classifier: mean colour -> dense -> softmax over ``classes``."""
    from edgeship.base.tfcompat import tf

    w = tf.constant(tf.random.stateless_normal([3, classes], seed=[seed, 1]))

    @tf.function(input_signature=[tf.TensorSpec([1, 8, 8, 3], tf.float32)])
    def classify(image):
        return {"probabilities": tf.nn.softmax(tf.matmul(tf.reduce_mean(image, axis=[1, 2]), w))}

    return _convert(classify, path)


def build_segmenter(path: Path, classes: int = 2) -> Path:
    """A real .tflite segmenter: per-pixel softmax over ``classes``."""
    from edgeship.base.tfcompat import tf

    w = tf.constant(tf.random.stateless_normal([1, 1, 3, classes], seed=[2, 3]))

    @tf.function(input_signature=[tf.TensorSpec([1, 8, 8, 3], tf.float32)])
    def segment(image):
        return {"mask": tf.nn.softmax(tf.nn.conv2d(image, w, 1, "SAME"))}

    return _convert(segment, path)


def make_mlpackage(folder: Path, name: str = "classifier") -> Path:
    """A folder NAME.mlpackage with the package layout (Manifest.json + Data/)."""
    pkg = folder / f"{name}.mlpackage"
    (pkg / "Data" / "com.apple.CoreML").mkdir(parents=True, exist_ok=True)
    (pkg / "Data" / "com.apple.CoreML" / "model.mlmodel").write_bytes(b"\x08\x07" + b"\0" * 64)
    (pkg / "Manifest.json").write_text(json.dumps({
        "fileFormatVersion": "1.0.0", "itemInfoEntries": {"A": {
            "author": "com.apple.CoreML", "description": "CoreML Model Specification",
            "name": "model.mlmodel", "path": "com.apple.CoreML/model.mlmodel"}},
        "rootModelIdentifier": "A"}))
    return pkg


def zip_mlpackage(pkg: Path, dest_dir: Path) -> Path:
    """``NAME.mlpackage.zip`` holding ``NAME.mlpackage/`` (the pipeline's layout)."""
    archive = shutil.make_archive(str(dest_dir / pkg.name), "zip", root_dir=pkg.parent, base_dir=pkg.name)
    return Path(archive)


def build_fused_detector(path: Path, classes: int = 3) -> Path:
    """A tiny detector ending in the fused TFLite_Detection_PostProcess op (the pipeline's
    post-processing module on a 2-layer tf_keras model), converted to fp32 .tflite."""
    import tempfile

    import numpy as np

    from edgeship.base.tfcompat import keras, tf
    from edgeship.detection import postprocess

    anchors = np.array([[0.3, 0.3, 0.4, 0.4], [0.7, 0.7, 0.3, 0.3], [0.5, 0.2, 0.2, 0.2]], np.float32)
    image = keras.Input([32, 32, 3], name="image")
    pooled = keras.layers.GlobalAveragePooling2D()(image)
    boxes = keras.layers.Reshape([len(anchors), 4])(keras.layers.Dense(len(anchors) * 4)(pooled))
    logits = keras.layers.Reshape([len(anchors), classes + 1])(keras.layers.Dense(len(anchors) * (classes + 1))(pooled))
    module = postprocess.detection_module(keras.Model(image, [boxes, logits]), anchors, classes, (32, 32))
    with tempfile.TemporaryDirectory() as saved:
        tf.saved_model.save(module, saved, signatures={"serving_default": module.detect.get_concrete_function()})
        converter = tf.lite.TFLiteConverter.from_saved_model(saved)
        converter.allow_custom_ops = True
        path.write_bytes(converter.convert())
    return path


def firebase_export(root: Path, models: list[dict]) -> tuple[Path, Path]:
    """A Firebase ML export as docs/firebase-migration.md makes it: ``models.json`` (each model as
    ``firebase_admin.ml.Model.as_dict()`` returns it, REST field names) and ``files/`` holding
    ``{model_id}.tflite``. Each item of ``models``: {id, display_name, tags, published, tflite}."""
    import hashlib

    files = root / "files"
    files.mkdir(parents=True, exist_ok=True)
    entries = []
    for m in models:
        data = Path(m["tflite"]).read_bytes()
        (files / f"{m['id']}.tflite").write_bytes(data)
        entries.append({
            "name": f"projects/demo-project/models/{m['id']}", "displayName": m["display_name"],
            "tags": m.get("tags", []), "state": {"published": m.get("published", True)},
            "createTime": "2024-05-01T10:00:00.000000Z", "updateTime": "2024-05-02T10:00:00.000000Z",
            "etag": "AAAAAAAAAAA=", "modelHash": hashlib.sha256(data).hexdigest(),
            "tfliteModel": {"gcsTfliteUri": f"gs://demo-project.appspot.com/Firebase/ML/Models/{m['display_name']}.tflite",
                            "sizeBytes": str(len(data))}})
    export = root / "models.json"
    export.write_text(json.dumps({"models": entries}, indent=2))
    return export, files
