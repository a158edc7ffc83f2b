"""Detection post-processing inside the .tflite: the fused ``TFLite_Detection_PostProcess`` op.

TensorFlow has no kernel for TFLite's detection post-processing op. A ``tf.function`` whose
``experimental_implements`` names the op (and carries its attributes) is legalized to the fused
custom op by the MLIR converter (``allow_custom_ops=True``); its body is a placeholder that never
runs in TensorFlow. The op takes box encodings [1, A, 4] (ty, tx, th, tw, TF OD API encoding,
divided by y/x/h/w_scale), class *scores* [1, A, K+1] (after the sigmoid, column 0 = background,
which the op skips) and anchors [A, 4] (ycenter, xcenter, h, w), and returns, in this order,
boxes [1, D, 4] (ymin, xmin, ymax, xmax), classes [1, D] (0-based), scores [1, D], count [1].
The converted graph names those outputs ``StatefulPartitionedCall:0..3`` in an order that is not
that one, so :mod:`edgeship.detection.op_report` maps them from the op's own output tensors.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Sequence

import numpy as np

POSTPROCESS_OP = "TFLite_Detection_PostProcess"
OUTPUT_KEYS = ("boxes", "classes", "scores", "count")  # the op's output order (detection_postprocess.cc)


@dataclass(frozen=True)
class PostprocessConfig:
    """Attributes of the fused op (defaults match the evaluator's needs: low threshold, 100 boxes)."""

    max_detections: int = 100
    max_classes_per_detection: int = 1
    use_regular_nms: bool = False
    nms_score_threshold: float = 0.01
    nms_iou_threshold: float = 0.5
    box_scales: tuple[float, float, float, float] = (10.0, 10.0, 5.0, 5.0)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["box_scales"] = list(self.box_scales)
        return d


def implements_signature(num_classes: int, cfg: PostprocessConfig) -> str:
    """The ``experimental_implements`` string (a NameAttrList in proto text) naming the fused op."""
    y, x, h, w = (float(v) for v in cfg.box_scales)
    attrs = [
        f'name: "{POSTPROCESS_OP}"',
        f'attr {{ key: "max_detections" value {{ i: {int(cfg.max_detections)} }} }}',
        f'attr {{ key: "max_classes_per_detection" value {{ i: {int(cfg.max_classes_per_detection)} }} }}',
        f'attr {{ key: "use_regular_nms" value {{ b: {str(bool(cfg.use_regular_nms)).lower()} }} }}',
        f'attr {{ key: "nms_score_threshold" value {{ f: {float(cfg.nms_score_threshold):f} }} }}',
        f'attr {{ key: "nms_iou_threshold" value {{ f: {float(cfg.nms_iou_threshold):f} }} }}',
        f'attr {{ key: "y_scale" value {{ f: {y:f} }} }}',
        f'attr {{ key: "x_scale" value {{ f: {x:f} }} }}',
        f'attr {{ key: "h_scale" value {{ f: {h:f} }} }}',
        f'attr {{ key: "w_scale" value {{ f: {w:f} }} }}',
        f'attr {{ key: "num_classes" value {{ i: {int(num_classes)} }} }}',
    ]
    return " ".join(attrs)


def detection_module(model: Any, anchors: np.ndarray, num_classes: int, input_size: Sequence[int],
                     cfg: PostprocessConfig | None = None) -> Any:
    """A ``tf.Module`` whose ``detect(image)`` runs ``model``, a sigmoid, then the fused op.

    ``model`` maps float32 raw pixels [1, H, W, 3] to (box_encodings [1, A, 4],
    class_logits [1, A, K+1]). ``detect`` is only meant for conversion: in TensorFlow the
    post-processing placeholder returns zeros. Returns the module; ``module.detect`` has a fixed
    input signature ``image`` float32 [1, H, W, 3].
    """
    from edgeship.base.tfcompat import tf

    cfg = cfg or PostprocessConfig()
    anchors = np.asarray(anchors, np.float32)
    if anchors.ndim != 2 or anchors.shape[1] != 4:
        raise ValueError(f"anchors must be [A, 4] (ycenter, xcenter, h, w), got shape {anchors.shape}")
    h, w = (int(v) for v in input_size)
    signature = implements_signature(num_classes, cfg)

    @tf.function(experimental_implements=signature)
    def postprocess(box_encodings, class_scores, anchor_boxes):  # noqa: ARG001 (placeholder body)
        boxes = tf.constant(0.0, dtype=tf.float32, name="boxes")
        classes = tf.constant(0.0, dtype=tf.float32, name="classes")
        scores = tf.constant(0.0, dtype=tf.float32, name="scores")
        count = tf.constant(0.0, dtype=tf.float32, name="num_detections")
        return boxes, classes, scores, count

    class DetectionModule(tf.Module):
        def __init__(self) -> None:
            super().__init__(name="detection_module")
            self.model = model
            self.anchors = tf.constant(anchors, name="anchors")

        @tf.function(input_signature=[tf.TensorSpec([1, h, w, 3], tf.float32, name="image")])
        def detect(self, image):
            outputs = self.model(image, training=False)
            if isinstance(outputs, dict):
                box_encodings, class_logits = outputs["box_encodings"], outputs["class_logits"]
            else:
                box_encodings, class_logits = outputs[0], outputs[1]
            box_encodings = tf.identity(box_encodings, name="box_encodings")
            class_scores = tf.identity(tf.sigmoid(class_logits), name="class_scores")
            return postprocess(box_encodings, class_scores, self.anchors)

    return DetectionModule()


def raw_module(model: Any, input_size: Sequence[int]) -> Any:
    """A ``tf.Module`` whose ``raw(image)`` returns the model's box_encodings and class scores.

    Used to convert the same scheme *without* post-processing, so parity can compare raw head
    outputs (NMS output order makes decoded comparisons brittle).
    """
    from edgeship.base.tfcompat import tf

    h, w = (int(v) for v in input_size)

    class RawModule(tf.Module):
        def __init__(self) -> None:
            super().__init__(name="raw_module")
            self.model = model

        @tf.function(input_signature=[tf.TensorSpec([1, h, w, 3], tf.float32, name="image")])
        def raw(self, image):
            outputs = self.model(image, training=False)
            if isinstance(outputs, dict):
                box_encodings, class_logits = outputs["box_encodings"], outputs["class_logits"]
            else:
                box_encodings, class_logits = outputs[0], outputs[1]
            return {"box_encodings": box_encodings, "class_scores": tf.sigmoid(class_logits)}

    return RawModule()


def decode_boxes(box_encodings: np.ndarray, anchors: np.ndarray,
                 box_scales: Sequence[float] = (10.0, 10.0, 5.0, 5.0)) -> np.ndarray:
    """Numpy decode of TF OD API box encodings → [.., A, 4] (ymin, xmin, ymax, xmax), as the op does."""
    enc = np.asarray(box_encodings, np.float32)
    a = np.asarray(anchors, np.float32)
    sy, sx, sh, sw = (float(s) for s in box_scales)
    yc = enc[..., 0] / sy * a[:, 2] + a[:, 0]
    xc = enc[..., 1] / sx * a[:, 3] + a[:, 1]
    hh = np.exp(enc[..., 2] / sh) * a[:, 2]
    ww = np.exp(enc[..., 3] / sw) * a[:, 3]
    return np.stack([yc - hh / 2, xc - ww / 2, yc + hh / 2, xc + ww / 2], axis=-1)
