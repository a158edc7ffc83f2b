"""The SSDLite-style MobileNetV2 detector: config, anchors, model, box coding and NMS.

Everything that the train, qat, quantize and evaluate steps must agree on lives here:

- :class:`ModelConfig` (``model_config.json``), the one description of a model;
- :func:`make_anchors` → float32 [A, 4] (ycenter, xcenter, h, w), normalized, in the order the
  heads emit their predictions (feature level, then row, column, anchor);
- :func:`build_detector` → a flat functional ``tf_keras`` model (tfmot's QAT needs one): input
  ``image`` float32 [B, H, W, 3] raw RGB 0..255 (normalized inside by a ``Rescaling`` layer),
  outputs ``box_encodings`` [B, A, 4] (ty, tx, th, tw; TF OD API encoding multiplied by
  ``box_scales``) and ``class_logits`` [B, A, K+1] (index 0 = background; sigmoid scores);
- :func:`encode_boxes` / :func:`decode_boxes` (TF OD API ``FasterRcnnBoxCoder`` semantics);
- :func:`decode_and_nms`: the same semantics as ``TFLite_Detection_PostProcess`` with
  ``use_regular_nms=False`` and ``max_classes_per_detection=1`` (the quantize step's default):
  sigmoid scores, each anchor keeps its best foreground class, then **class-agnostic** NMS;
  ``per_class=True`` gives per-class NMS (like ``use_regular_nms=True``) instead;
- :func:`load_model` rebuilds a model directory's Keras model from ``weights.h5``.

The graph uses only layers that full-int8 conversion quantizes: Conv2D/DepthwiseConv2D + BN +
ReLU6, Add, Reshape, Concatenate, and one Rescaling at the input.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from edgeship.contracts import model as model_contract

BOX_SCALES = (10.0, 10.0, 5.0, 5.0)
SUPPORTED_ALPHAS = (0.35, 0.5, 0.75, 1.0, 1.3, 1.4)
# MobileNetV2 layers whose outputs feed the heads, by stride. "expand_relu" layers are the wide
# activations just before a stride-2 depthwise conv (what SSDLite taps); out_relu is the last one.
FEATURE_LAYERS = {8: "block_6_expand_relu", 16: "block_13_expand_relu", 32: "out_relu"}
MIN_INPUT, MAX_INPUT = 64, 640


@dataclass
class ModelConfig:
    """Everything needed to rebuild a detector and decode its outputs (``model_config.json``)."""

    input_size: tuple[int, int] = (160, 160)
    alpha: float = 0.35
    num_classes: int = 5
    labels: list[str] = field(default_factory=lambda: ["circle", "square", "triangle", "star", "hexagon"])
    # one entry per head: the backbone stride it taps (8, 16, 32) or an extra stride (64, 128)
    strides: tuple[int, ...] = (16, 32)
    # anchor sizes (fraction of the image side) per head, and the aspect ratios (w/h) for each
    anchor_scales: tuple[tuple[float, ...], ...] = ((0.12, 0.19), (0.29, 0.42))
    aspect_ratios: tuple[float, ...] = (1.0, 2.0, 0.5)
    fpn_channels: int = 0           # FPN-lite top-down merge of the backbone levels (0 = none)
    head_channels: int = 0          # 1x1 conv before each head (0 = none)
    extra_channels: int = 128       # width of the extra stride-64+ layers
    box_scales: tuple[float, float, float, float] = BOX_SCALES
    prior_probability: float = 0.01
    bn_momentum: float = 0.97       # MobileNetV2's 0.999 lags far behind when training from scratch
    input: str = "raw RGB 0..255 float32; the model normalizes inside"
    resize: str = "stretch"         # how any image becomes input_size: stretch | letterbox

    def __post_init__(self) -> None:
        self.input_size = tuple(int(v) for v in self.input_size)  # type: ignore[assignment]
        self.strides = tuple(int(s) for s in self.strides)
        self.anchor_scales = tuple(tuple(float(v) for v in s) for s in self.anchor_scales)
        self.aspect_ratios = tuple(float(v) for v in self.aspect_ratios)
        self.box_scales = tuple(float(v) for v in self.box_scales)  # type: ignore[assignment]
        self.labels = [str(v) for v in self.labels]
        self.validate()

    def validate(self) -> None:
        """Raise ValueError naming the bad field when the backbone or heads cannot be built."""
        if len(self.input_size) != 2:
            raise ValueError(f"ModelConfig.input_size must be [H, W], got {list(self.input_size)}")
        for v in self.input_size:
            if v % 32 or not MIN_INPUT <= v <= MAX_INPUT:
                raise ValueError(
                    f"ModelConfig.input_size {list(self.input_size)}: MobileNetV2 needs each side a multiple "
                    f"of 32 between {MIN_INPUT} and {MAX_INPUT} (e.g. 96, 128, 160, 192, 224)")
        if float(self.alpha) not in SUPPORTED_ALPHAS:
            raise ValueError(f"ModelConfig.alpha {self.alpha} is not a MobileNetV2 width; "
                             f"use one of {list(SUPPORTED_ALPHAS)}")
        if self.num_classes < 1:
            raise ValueError(f"ModelConfig.num_classes must be >= 1, got {self.num_classes}")
        if len(self.labels) != self.num_classes:
            raise ValueError(f"ModelConfig.labels has {len(self.labels)} names but num_classes is "
                             f"{self.num_classes}: {self.labels}")
        if not self.strides or list(self.strides) != sorted(set(self.strides)):
            raise ValueError(f"ModelConfig.strides must be increasing and distinct, got {list(self.strides)}")
        for s in self.strides:
            if s not in FEATURE_LAYERS and (s < 64 or s & (s - 1)):
                raise ValueError(f"ModelConfig.strides: {s} is neither a backbone stride "
                                 f"{sorted(FEATURE_LAYERS)} nor an extra power-of-two stride >= 64")
        inner = [s for s in self.strides if s in FEATURE_LAYERS]
        if self.fpn_channels and any(b != 2 * a for a, b in zip(inner, inner[1:])):
            raise ValueError(f"ModelConfig.strides {list(self.strides)}: the FPN merges neighbouring "
                             f"levels, so backbone strides must be consecutive (8, 16, 32)")
        if self.strides[-1] >= 64 and 32 not in self.strides:
            raise ValueError(f"ModelConfig.strides {list(self.strides)}: extra strides need 32 as well")
        if len(self.anchor_scales) != len(self.strides) or any(not s for s in self.anchor_scales):
            raise ValueError(f"ModelConfig.anchor_scales needs one non-empty list per stride "
                             f"{list(self.strides)}, got {[list(s) for s in self.anchor_scales]}")
        if self.resize not in ("stretch", "letterbox"):
            raise ValueError(f"ModelConfig.resize must be 'stretch' or 'letterbox', got {self.resize!r}")
        if not self.aspect_ratios or any(r <= 0 for r in self.aspect_ratios):
            raise ValueError(f"ModelConfig.aspect_ratios must be positive, got {list(self.aspect_ratios)}")

    @property
    def anchors_per_location(self) -> list[int]:
        return [len(s) * len(self.aspect_ratios) for s in self.anchor_scales]

    def feature_shapes(self) -> list[tuple[int, int]]:
        """(rows, cols) of each head's feature map ('same' padding: ceil(size / stride))."""
        h, w = self.input_size
        return [(math.ceil(h / s), math.ceil(w / s)) for s in self.strides]

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["input_size"] = list(self.input_size)
        d["strides"] = list(self.strides)
        d["anchor_scales"] = [list(s) for s in self.anchor_scales]
        d["aspect_ratios"] = list(self.aspect_ratios)
        d["box_scales"] = list(self.box_scales)
        d["anchors"] = {"kind": "ssd_grid", "strides": d["strides"], "scales": d["anchor_scales"],
                        "aspect_ratios": d["aspect_ratios"], "layout": "ycenter, xcenter, h, w",
                        "order": "stride, row, col, scale, aspect_ratio",
                        "count": int(sum(r * c * n for (r, c), n in
                                         zip(self.feature_shapes(), self.anchors_per_location)))}
        return d

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> "ModelConfig":
        """Build from ``to_json()`` output (unknown keys, like the derived ``anchors``, are ignored)."""
        names = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in d.items() if k in names})

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_json(), indent=2) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> "ModelConfig":
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"model config not found: {path}")
        try:
            return cls.from_json(json.loads(path.read_text()))
        except (json.JSONDecodeError, TypeError) as exc:
            raise ValueError(f"bad model config {path}: {exc}") from exc


def as_config(config: ModelConfig | Mapping[str, Any]) -> ModelConfig:
    """Accept a ModelConfig or its JSON dict."""
    return config if isinstance(config, ModelConfig) else ModelConfig.from_json(config)


def make_anchors(config: ModelConfig | Mapping[str, Any]) -> np.ndarray:
    """Anchors float32 [A, 4] (ycenter, xcenter, h, w) normalized, in the heads' output order."""
    config = as_config(config)
    out = []
    for (rows, cols), scales in zip(config.feature_shapes(), config.anchor_scales):
        cy = (np.arange(rows, dtype=np.float64) + 0.5) / rows
        cx = (np.arange(cols, dtype=np.float64) + 0.5) / cols
        shapes = []
        for s in scales:
            for r in config.aspect_ratios:
                shapes.append((s / math.sqrt(r), s * math.sqrt(r)))  # (h, w), w/h = r
        shapes = np.asarray(shapes)
        yy, xx = np.meshgrid(cy, cx, indexing="ij")
        n = len(shapes)
        grid = np.stack([yy, xx], -1).reshape(rows * cols, 1, 2).repeat(n, axis=1)
        hw = np.broadcast_to(shapes[None], (rows * cols, n, 2))
        out.append(np.concatenate([grid, hw], -1).reshape(-1, 4))
    return np.concatenate(out, 0).astype(np.float32)


def build_detector(config: ModelConfig | Mapping[str, Any], *, name: str = "ssdlite_mobilenetv2") -> Any:
    """Build the (untrained) detector as a flat functional tf_keras model. See the module docstring."""
    from edgeship.base.tfcompat import keras

    config = as_config(config)
    L = keras.layers
    h, w = config.input_size
    image = keras.Input((h, w, 3), dtype="float32", name="image")
    x = L.Rescaling(1.0 / 127.5, offset=-1.0, name="normalize")(image)
    backbone = keras.applications.MobileNetV2(input_tensor=x, alpha=config.alpha, include_top=False,
                                              weights=None, input_shape=(h, w, 3))
    backbone_strides = [s for s in config.strides if s in FEATURE_LAYERS]
    levels = {s: backbone.get_layer(FEATURE_LAYERS[s]).output for s in backbone_strides}
    if config.fpn_channels and backbone_strides:
        # FPN-lite: 1x1 laterals, then top-down nearest upsampling + Add, so the shallower
        # (stride 8/16) heads also see the deepest features (shape classes need them)
        merged = {}
        top = None
        for s in sorted(backbone_strides, reverse=True):
            lat = _conv_bn_relu(L, levels[s], config.fpn_channels, 1, f"fpn_s{s}_lateral")
            if top is not None:
                lat = L.Add(name=f"fpn_s{s}_add")([lat, L.UpSampling2D(2, name=f"fpn_s{s}_up")(top)])
            merged[s] = top = lat
        levels = merged
    features = []
    prev = backbone.get_layer(FEATURE_LAYERS[32]).output
    for stride in config.strides:
        if stride in levels:
            features.append(levels[stride])
            continue
        t = f"extra_s{stride}"  # 1x1 reduce, 3x3 depthwise stride 2, 1x1 expand (SSDLite extras)
        y = _conv_bn_relu(L, prev, config.extra_channels // 2, 1, f"{t}_reduce")
        y = _dw_bn_relu(L, y, 2, f"{t}_dw")
        y = _conv_bn_relu(L, y, config.extra_channels, 1, f"{t}_expand")
        features.append(y)
        prev = y
    k1 = config.num_classes + 1
    bias = -math.log((1 - config.prior_probability) / config.prior_probability)
    box_outs, cls_outs = [], []
    for i, (feat, n, (rows, cols)) in enumerate(zip(features, config.anchors_per_location,
                                                     config.feature_shapes())):
        if config.head_channels:
            feat = _conv_bn_relu(L, feat, config.head_channels, 1, f"head{i}_proj")
        b = _dw_bn_relu(L, feat, 1, f"head{i}_box_dw")
        b = L.Conv2D(n * 4, 1, name=f"head{i}_box")(b)
        # static target shapes: no SHAPE/PACK ops in the converted graph
        box_outs.append(L.Reshape((rows * cols * n, 4), name=f"head{i}_box_flat")(b))
        c = _dw_bn_relu(L, feat, 1, f"head{i}_cls_dw")
        # prior: foreground columns start at p = prior_probability, background at 1 - p
        cls_bias = np.tile(np.r_[-bias, np.full(config.num_classes, bias)], n).astype(np.float32)
        c = L.Conv2D(n * k1, 1, name=f"head{i}_cls",
                     bias_initializer=keras.initializers.Constant(cls_bias))(c)
        cls_outs.append(L.Reshape((rows * cols * n, k1), name=f"head{i}_cls_flat")(c))
    # the last layer of each output carries the output's name (model.output_names)
    if len(box_outs) == 1:
        a = int(box_outs[0].shape[1])  # a no-op reshape: names the output
        box = L.Reshape((a, 4), name="box_encodings")(box_outs[0])
        cls = L.Reshape((a, k1), name="class_logits")(cls_outs[0])
    else:
        box = L.Concatenate(axis=1, name="box_encodings")(box_outs)
        cls = L.Concatenate(axis=1, name="class_logits")(cls_outs)
    model = keras.Model(image, [box, cls], name=name)
    for layer in model.layers:
        if isinstance(layer, L.BatchNormalization):
            layer.momentum = config.bn_momentum
    return model


def _conv_bn_relu(L: Any, x: Any, filters: int, kernel: int, name: str) -> Any:
    x = L.Conv2D(filters, kernel, padding="same", use_bias=False, name=f"{name}_conv")(x)
    x = L.BatchNormalization(momentum=0.99, epsilon=1e-3, name=f"{name}_bn")(x)
    return L.ReLU(6.0, name=f"{name}_relu")(x)


def _dw_bn_relu(L: Any, x: Any, stride: int, name: str) -> Any:
    x = L.DepthwiseConv2D(3, strides=stride, padding="same", use_bias=False, name=f"{name}_conv")(x)
    x = L.BatchNormalization(momentum=0.99, epsilon=1e-3, name=f"{name}_bn")(x)
    return L.ReLU(6.0, name=f"{name}_relu")(x)


def model_outputs(outputs: Any) -> tuple[Any, Any]:
    """(box_encodings, class_logits) from a model call's result (dict or list)."""
    if isinstance(outputs, Mapping):
        return outputs["box_encodings"], outputs["class_logits"]
    return outputs[0], outputs[1]


def _corners_to_center(boxes: Any, tf: Any) -> tuple[Any, Any, Any, Any]:
    ymin, xmin, ymax, xmax = tf.unstack(boxes, axis=-1)
    return (ymin + ymax) / 2, (xmin + xmax) / 2, ymax - ymin, xmax - xmin


def encode_boxes(boxes: Any, anchors: Any, box_scales: Sequence[float] = BOX_SCALES) -> Any:
    """Corner boxes [..., A, 4] (ymin, xmin, ymax, xmax) → encodings (ty, tx, th, tw) against
    anchors [A, 4] (ycenter, xcenter, h, w): ty = (y - ya) / ha * 10, th = log(h / ha) * 5, ..."""
    from edgeship.base.tfcompat import tf

    boxes = tf.convert_to_tensor(boxes, tf.float32)
    anchors = tf.convert_to_tensor(anchors, tf.float32)
    ya, xa, ha, wa = tf.unstack(anchors, axis=-1)
    y, x, h, w = _corners_to_center(boxes, tf)
    eps = 1e-8
    h, w = tf.maximum(h, eps), tf.maximum(w, eps)
    sy, sx, sh, sw = (float(v) for v in box_scales)
    return tf.stack([(y - ya) / ha * sy, (x - xa) / wa * sx,
                     tf.math.log(h / ha) * sh, tf.math.log(w / wa) * sw], axis=-1)


def decode_boxes(box_encodings: Any, anchors: Any, box_scales: Sequence[float] = BOX_SCALES) -> Any:
    """Inverse of :func:`encode_boxes`: encodings [..., A, 4] → corners (ymin, xmin, ymax, xmax)."""
    from edgeship.base.tfcompat import tf

    enc = tf.convert_to_tensor(box_encodings, tf.float32)
    anchors = tf.convert_to_tensor(anchors, tf.float32)
    ya, xa, ha, wa = tf.unstack(anchors, axis=-1)
    ty, tx, th, tw = tf.unstack(enc, axis=-1)
    sy, sx, sh, sw = (float(v) for v in box_scales)
    y, x = ty / sy * ha + ya, tx / sx * wa + xa
    h, w = tf.exp(th / sh) * ha, tf.exp(tw / sw) * wa
    return tf.stack([y - h / 2, x - w / 2, y + h / 2, x + w / 2], axis=-1)


def decode_and_nms(box_encodings: Any, class_logits: Any, anchors: Any = None,
                   config: ModelConfig | Mapping[str, Any] | None = None, *, max_detections: int = 100,
                   score_threshold: float = 0.01, iou_threshold: float = 0.5,
                   per_class: bool = False) -> dict[str, np.ndarray]:
    """Decode a batch and run NMS, as TFLite_Detection_PostProcess does (see module docstring).

    ``anchors`` default to ``make_anchors(config)``; ``box_scales`` come from ``config`` (default
    10, 10, 5, 5). Returns numpy ``{"boxes": [B, D, 4] (ymin, xmin, ymax, xmax) normalized,
    "classes": [B, D] float 0-based (class id - 1), "scores": [B, D], "count": [B]}`` with
    D = max_detections, padded with zeros after ``count``. Boxes are not clipped (nor are the op's).
    """
    from edgeship.base.tfcompat import tf

    cfg = as_config(config) if config is not None else None
    if anchors is None:
        if cfg is None:
            raise ValueError("decode_and_nms needs anchors or a model config to make them")
        anchors = make_anchors(cfg)
    scales = cfg.box_scales if cfg is not None else BOX_SCALES
    enc = tf.convert_to_tensor(box_encodings, tf.float32)
    logits = tf.convert_to_tensor(class_logits, tf.float32)
    if int(enc.shape[1]) != len(anchors) or int(logits.shape[1]) != len(anchors):
        raise ValueError(f"decode_and_nms: {len(anchors)} anchors but the model gave "
                         f"{enc.shape[1]} box encodings and {logits.shape[1]} class rows")
    boxes = decode_boxes(enc, anchors, scales)                 # [B, A, 4]
    scores = tf.sigmoid(logits[..., 1:])                       # [B, A, K]
    B, D = int(enc.shape[0]), int(max_detections)
    if per_class:
        res = tf.image.combined_non_max_suppression(
            boxes[:, :, None, :], scores, max_output_size_per_class=D, max_total_size=D,
            iou_threshold=iou_threshold, score_threshold=score_threshold, clip_boxes=False)
        return {"boxes": res.nmsed_boxes.numpy(), "classes": res.nmsed_classes.numpy(),
                "scores": res.nmsed_scores.numpy(), "count": res.valid_detections.numpy()}
    best = tf.reduce_max(scores, -1)
    cls = tf.cast(tf.argmax(scores, -1), tf.float32)
    out = {"boxes": np.zeros((B, D, 4), np.float32), "classes": np.zeros((B, D), np.float32),
           "scores": np.zeros((B, D), np.float32), "count": np.zeros((B,), np.int32)}
    for b in range(B):
        idx = tf.image.non_max_suppression(boxes[b], best[b], D, iou_threshold=iou_threshold,
                                           score_threshold=score_threshold).numpy()
        n = len(idx)
        out["boxes"][b, :n] = tf.gather(boxes[b], idx).numpy()
        out["classes"][b, :n] = tf.gather(cls[b], idx).numpy()
        out["scores"][b, :n] = tf.gather(best[b], idx).numpy()
        out["count"][b] = n
    return out


def load_model(model_dir: str | Path) -> tuple[Any, ModelConfig, np.ndarray]:
    """Rebuild a model directory's detector: (keras.Model with weights.h5 loaded, ModelConfig,
    anchors [A, 4]). Raises FileNotFoundError/ValueError naming the missing or inconsistent file."""
    d = Path(model_dir)
    if not d.is_dir():
        raise FileNotFoundError(f"model directory not found: {d}")
    config = ModelConfig.load(d / model_contract.CONFIG_FILE)
    weights = d / model_contract.WEIGHTS_FILE
    if not weights.is_file():
        raise FileNotFoundError(f"model weights not found: {weights}")
    anchors_path = d / model_contract.ANCHORS_FILE
    anchors = np.load(anchors_path) if anchors_path.is_file() else make_anchors(config)
    expected = make_anchors(config)
    if anchors.shape != expected.shape or not np.allclose(anchors, expected, atol=1e-6):
        raise ValueError(f"{anchors_path} ({anchors.shape}) disagrees with the anchors that "
                         f"{d / 'model_config.json'} describes ({expected.shape})")
    model = build_detector(config)
    try:
        model.load_weights(str(weights))
    except (ValueError, OSError) as exc:
        raise ValueError(f"cannot load {weights} into the detector that model_config.json describes: {exc}") from exc
    return model, config, anchors
