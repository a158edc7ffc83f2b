"""Helpers for the evaluate tests: tiny examples and a tiny stand-in .tflite detector.

The stand-in is a tf.function converted to .tflite whose four outputs follow the contract
(boxes [1, D, 4] normalized, classes [1, D] 0-based, scores [1, D], count [1]): fixed boxes and
classes, scores that scale with the image's mean brightness (so the model computes something from
its input). Built once per session; conversion takes a few seconds.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

try:
    from edgeship.detection.dataset import Example
except ImportError:  # the data step's module not landed yet: same shape as the contract's
    @dataclass(frozen=True)
    class Example:  # type: ignore[no-redef]
        image_id: str
        image: np.ndarray
        boxes: np.ndarray
        labels: np.ndarray

CLASSES = ["circle", "square", "triangle"]
# what the stand-in detects on every image: (box, 0-based class, base score)
STANDIN_BOXES = np.array([[0.10, 0.10, 0.45, 0.50], [0.50, 0.55, 0.90, 0.95], [0.05, 0.60, 0.30, 0.90],
                          [0.60, 0.05, 0.95, 0.40]], np.float32)
STANDIN_CLASSES = np.array([0, 1, 2, 0], np.float32)
STANDIN_SCORES = np.array([0.9, 0.8, 0.7, 0.05], np.float32)
STANDIN_COUNT = 3  # the 4th detection is padding past `count`


def make_example(i: int, boxes, labels, size=(48, 64), seed=0) -> Example:
    rng = np.random.default_rng([seed, i])
    image = rng.integers(40, 220, size=(*size, 3), dtype=np.uint8)
    return Example(image_id=f"{i:06d}", image=image, boxes=np.asarray(boxes, np.float32).reshape(-1, 4),
                   labels=np.asarray(labels, np.int32).reshape(-1))


def standin_examples(n: int = 4) -> list:
    """Images whose ground truth is exactly what the stand-in detects (mAP 1.0 for it)."""
    count = STANDIN_COUNT
    return [make_example(i, STANDIN_BOXES[:count], STANDIN_CLASSES[:count].astype(int) + 1, size=(40, 40))
            for i in range(n)]


def _convert(input_dtype, size: int) -> tuple[bytes, dict]:
    from edgeship.base.tfcompat import tf

    tf_dtype = tf.uint8 if input_dtype == "uint8" else tf.float32

    @tf.function(input_signature=[tf.TensorSpec([1, size, size, 3], tf_dtype, name="image")])
    def detect(image):
        x = tf.cast(image, tf.float32)
        brightness = tf.reduce_mean(x) / 255.0
        scores = tf.constant(STANDIN_SCORES)[None] * (0.5 + 0.5 * brightness)
        boxes = tf.constant(STANDIN_BOXES)[None] + 0.0 * brightness
        classes = tf.constant(STANDIN_CLASSES)[None] + 0.0 * brightness
        count = tf.constant([float(STANDIN_COUNT)]) + 0.0 * brightness
        # deliberately not in boxes/classes/scores/count order, like the fused op's outputs
        return {"scores": scores, "count": count, "boxes": boxes, "classes": classes}

    import tempfile

    module = tf.Module()
    module.detect = detect
    with tempfile.TemporaryDirectory() as saved:
        tf.saved_model.save(module, saved, signatures={"serving_default": detect.get_concrete_function()})
        blob = tf.lite.TFLiteConverter.from_saved_model(saved).convert()
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_content=blob)
    # the signature maps each output key to its tensor index; record index and name, as quantize does
    outputs = interp._get_full_signature_list()["serving_default"]["outputs"]
    names = {d["index"]: d["name"] for d in interp.get_output_details()}
    output_map = {k: {"index": int(v), "name": names[int(v)]} for k, v in outputs.items()}
    return blob, output_map


def write_standin_variants(root: Path, classes=CLASSES) -> Path:
    """A variants artifact with two stand-in variants: fp32 (float32 input) and full_int8 (uint8 input)."""
    entries = []
    for name, dtype in (("fp32", "float32"), ("full_int8", "uint8")):
        blob, output_map = _convert(dtype, 32)
        (root / f"{name}.tflite").write_bytes(blob)
        entries.append({"name": name, "source": "float", "scheme": name, "file": f"{name}.tflite",
                        "size_bytes": len(blob),
                        "input": {"name": "image", "shape": [1, 32, 32, 3], "dtype": dtype,
                                  "scale": None, "zero_point": None, "normalization": "raw RGB 0..255"},
                        "outputs": output_map})
    (root / "variants.json").write_text(json.dumps({"variants": entries, "coreml": []}, indent=1))
    (root / "labels.txt").write_text("\n".join(classes) + "\n")
    return root
