"""A tiny stand-in detector with the Model artifact contract (docs/contracts.md), for the quantize tests.

Input `image` float32 [B, H, W, 3] raw pixels 0..255 (normalized inside); outputs box_encodings
[B, A, 4] and class_logits [B, A, K+1]; anchors [A, 4] (ycenter, xcenter, h, w). Two feature
scales, a few convolutions: small enough to convert in a second or two. Used when the train
step's `build_detector` is not available, and to keep the tests independent of its size.
"""
from __future__ import annotations

import dataclasses

import json
from pathlib import Path

import numpy as np

LABELS = ["circle", "square", "triangle"]


def make_anchors(input_size: int, strides=(8, 16), sizes=(0.2, 0.45)) -> np.ndarray:
    rows = []
    for stride, size in zip(strides, sizes):
        n = input_size // stride
        for i in range(n):
            for j in range(n):
                for ar in (1.0, 2.0):
                    rows.append([(i + 0.5) / n, (j + 0.5) / n, size / np.sqrt(ar), size * np.sqrt(ar)])
    return np.asarray(rows, np.float32)


def build_standin(input_size: int = 64, num_classes: int = 3, seed: int = 0):
    """A functional tf_keras detector: conv backbone, heads at strides 8 and 16, 2 anchors per cell."""
    from edgeship.base.tfcompat import keras, tf

    tf.random.set_seed(seed)
    L = keras.layers
    image = keras.Input([input_size, input_size, 3], name="image")
    x = L.Rescaling(1 / 127.5, offset=-1.0, name="normalize")(image)
    x = L.Conv2D(8, 3, strides=2, padding="same", use_bias=False)(x)
    x = L.BatchNormalization()(x)
    x = L.ReLU(6.0)(x)
    x = L.DepthwiseConv2D(3, strides=2, padding="same", use_bias=False)(x)
    x = L.BatchNormalization()(x)
    x = L.ReLU(6.0)(x)
    f8 = L.Conv2D(16, 1, strides=2, padding="same", activation="relu")(x)
    f16 = L.Conv2D(16, 3, strides=2, padding="same", activation="relu")(f8)
    boxes, logits = [], []
    for k, f in enumerate((f8, f16)):
        b = L.Conv2D(2 * 4, 3, padding="same", name=f"box_{k}")(f)
        c = L.Conv2D(2 * (num_classes + 1), 3, padding="same", name=f"cls_{k}")(f)
        boxes.append(L.Reshape([-1, 4])(b))
        logits.append(L.Reshape([-1, num_classes + 1])(c))
    box_encodings = L.Concatenate(axis=1, name="box_encodings")(boxes)
    class_logits = L.Concatenate(axis=1, name="class_logits")(logits)
    return keras.Model(image, [box_encodings, class_logits], name="standin_detector")


def write_standin_model(root: Path, input_size: int = 64, num_classes: int = 3, *, qat: bool = False) -> Path:
    """Write a Model artifact dir (model_config.json, anchors.npy, weights.h5, saved_model/)."""
    from edgeship.base.tfcompat import keras

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    model = build_standin(input_size, num_classes)
    anchors = make_anchors(input_size)
    assert model.outputs[0].shape[1] == len(anchors), (model.outputs[0].shape, anchors.shape)
    if qat:
        import tensorflow_model_optimization as tfmot

        q = tfmot.quantization.keras
        # tfmot has no QuantizeConfig for Rescaling: annotate every other layer, as QAT code does
        def annotate(layer):
            if isinstance(layer, keras.layers.Rescaling):
                return layer.__class__.from_config(layer.get_config())
            return q.quantize_annotate_layer(layer.__class__.from_config(layer.get_config()))
        annotated = keras.models.clone_model(model, clone_function=annotate)
        annotated.set_weights(model.get_weights())
        model = q.quantize_apply(annotated)
        # let the fake-quant ranges see a few batches of pixels (as QAT fine-tuning would)
        rng = np.random.default_rng(0)
        model.compile(optimizer=keras.optimizers.SGD(0.0), loss=["mse", "mse"])
        x = rng.integers(0, 256, size=(8, input_size, input_size, 3)).astype(np.float32)
        y = model.predict(x, verbose=0)
        model.fit(x, list(y), epochs=1, batch_size=4, verbose=0)
    labels = LABELS[:num_classes]
    config = {"input_size": [input_size, input_size], "alpha": 0.35, "num_classes": num_classes,
              "labels": labels, "anchors": {"kind": "standin", "strides": [8, 16]},
              "box_scales": [10, 10, 5, 5], "input": "raw RGB 0..255 float32; the model normalizes inside"}
    (root / "model_config.json").write_text(json.dumps(config, indent=1))
    np.save(root / "anchors.npy", anchors)
    model.save_weights(str(root / "weights.h5"))
    model.save(str(root / "saved_model"), include_optimizer=False)
    (root / "history.json").write_text("{}")
    return root


def tiny_config(input_size: int = 64, num_classes: int = 3):
    """A tiny real detector config (edgeship.detection.model): MobileNetV2 alpha 0.35, 2 heads."""
    from edgeship.detection.model import ModelConfig

    return ModelConfig(input_size=(input_size, input_size), alpha=0.35, num_classes=num_classes,
                       labels=LABELS[:num_classes], strides=(16, 32), anchor_scales=((0.25,), (0.5,)),
                       aspect_ratios=(1.0, 2.0))


def write_detector_model(root: Path, input_size: int = 64, num_classes: int = 3, seed: int = 0,
                         labels: list[str] | None = None) -> Path:
    """A Model artifact dir of the train step's real (untrained, seeded) detector; ``labels``
    (any number of names) overrides ``num_classes`` and the default names."""
    from edgeship.base.tfcompat import tf
    from edgeship.detection.model import build_detector
    from edgeship.detection.model import make_anchors as det_anchors

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    tf.random.set_seed(seed)
    config = tiny_config(input_size, num_classes)
    if labels is not None:
        config = dataclasses.replace(tiny_config(input_size, 1), num_classes=len(labels), labels=list(labels))
    model = build_detector(config)
    config.save(root / "model_config.json")
    np.save(root / "anchors.npy", det_anchors(config))
    model.save_weights(str(root / "weights.h5"))
    model.save(str(root / "saved_model"), include_optimizer=False)
    (root / "history.json").write_text("{}")
    return root


def write_oracle_model(root: Path, input_size: int = 64, num_classes: int = 3, *, cls: int = 1,
                       anchor_slot: int = 0, logit: float = 5.0) -> tuple[Path, np.ndarray]:
    """A stand-in whose detections are known: zero box encodings (boxes = anchors) and one class
    (0-based ``cls``) firing with sigmoid(logit) on every stride-8 cell's anchor ``anchor_slot``.

    Returns (model dir, the expected boxes [N, 4] as ymin, xmin, ymax, xmax).
    """
    from edgeship.base.tfcompat import keras

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    model = build_standin(input_size, num_classes)
    k1 = num_classes + 1
    for layer in model.layers:
        if layer.name in ("box_0", "box_1", "cls_0", "cls_1"):
            kernel, bias = layer.get_weights()
            bias = np.zeros_like(bias)
            if layer.name.startswith("cls_"):
                bias[:] = -logit
                if layer.name == "cls_0":
                    bias[anchor_slot * k1 + cls + 1] = logit
            layer.set_weights([np.zeros_like(kernel), bias])
    anchors = make_anchors(input_size)
    n0 = (input_size // 8) ** 2 * 2
    a = anchors[:n0][anchor_slot::2]
    expected = np.stack([a[:, 0] - a[:, 2] / 2, a[:, 1] - a[:, 3] / 2, a[:, 0] + a[:, 2] / 2,
                         a[:, 1] + a[:, 3] / 2], axis=1)
    config = {"input_size": [input_size, input_size], "alpha": 0.35, "num_classes": num_classes,
              "labels": LABELS[:num_classes], "anchors": {"kind": "standin"}, "box_scales": [10, 10, 5, 5]}
    (root / "model_config.json").write_text(json.dumps(config))
    np.save(root / "anchors.npy", anchors)
    model.save(str(root / "saved_model"), include_optimizer=False)
    del keras
    return root, expected
