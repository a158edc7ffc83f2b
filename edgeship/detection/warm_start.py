"""Warm start for the detector: pretrained MobileNetV2 backbone weights, or an earlier Model artifact.

Nobody trains a detector from scratch on 200 photos when pretrained backbone weights exist.

- :func:`load_backbone_weights` copies backbone weights into a model from :func:`build_detector`;
  what it accepts is :data:`BACKBONE_SOURCES`. It returns a JSON-able report.
- :func:`set_backbone_trainable` freezes / unfreezes the backbone only (the heads stay trainable).
- :func:`init_from` (scheduled retraining) loads *all* weights of an earlier Model artifact when its
  ``model_config.json`` describes the same architecture and label map; when only the labels differ
  it loads the backbone alone and says why in the report's ``reason``.

**Backbone layers.** ``build_detector`` builds ``keras.applications.MobileNetV2(weights=None,
input_tensor=...)`` on the model's own input, so the backbone is not a nested Model: its layers are
inlined in the detector's flat graph under Keras' MobileNetV2 names (``Conv1``, ``bn_Conv1``,
``expanded_conv_*``, ``block_<n>_*``, ``Conv_1``, ``Conv_1_bn``, ``out_relu``; see
:data:`BACKBONE_LAYER`). The detector's own layers (``normalize``, ``fpn_*``, ``extra_s*``,
``head*``, ``box_encodings``, ``class_logits``) never match. Weights are copied layer by layer,
matched by layer name, each variable's shape checked before anything is written (a mismatch
changes nothing and raises ValueError naming the source, the layer and both shapes).

TensorFlow is imported lazily, inside the functions; nothing runs at import time.
"""
from __future__ import annotations

import json
import re
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from edgeship.base import storage
from edgeship.contracts import model as model_contract
from edgeship.detection.model import ModelConfig, as_config

BACKBONE_SOURCES = """\
``backbone_weights`` (the train step's setting) is one of:

- ``"none"``: no warm start, the backbone keeps its random initialization;
- ``"imagenet"``: Keras' ImageNet MobileNetV2 of the config's ``alpha`` (downloaded by Keras into
  ``~/.keras/models`` on first use; built at the config's input size when that is a square
  96/128/160/192/224, else at 224: conv weights do not depend on the input size);
- a local path or ``gs://`` URI of
  (a) a Keras weights file (``.h5`` / ``.weights.h5``, Keras 2 or Keras 3 layout, a whole-model
      ``.h5`` too) of a Keras MobileNetV2 of the same width (``include_top`` False or True: the
      top layers are ignored), or
  (b) an edgeship Model artifact folder (``model_config.json`` + ``weights.h5``; its ``alpha``
      must equal the config's), or that artifact's ``weights.h5``.
"""

BACKBONE_LAYER = re.compile(
    r"^(Conv1(_pad)?|bn_Conv1|Conv1_relu|expanded_conv_\w+|block_\d+_\w+|Conv_1|Conv_1_bn|out_relu)$")
# model_config.json fields that change the graph or what its outputs mean: must match for init_from
ARCHITECTURE_FIELDS = ("input_size", "alpha", "strides", "anchor_scales", "aspect_ratios",
                       "fpn_channels", "head_channels", "extra_channels", "box_scales")
LABEL_FIELDS = ("num_classes", "labels")
IMAGENET_SIZES = (96, 128, 160, 192, 224)
_WIDTH_HINT = ": a MobileNetV2 of another width?"

LayerWeights = dict[str, list[tuple[str, np.ndarray]]]  # layer name -> [(variable name, value)]


def is_backbone_layer(name: str) -> bool:
    """Whether a detector layer name is one of the inlined MobileNetV2 backbone's."""
    return bool(BACKBONE_LAYER.match(name))


def backbone_layers(model: Any) -> list[Any]:
    """The model's backbone layers that hold weights (Conv2D, DepthwiseConv2D, BatchNormalization)."""
    _check_model(model)
    return [layer for layer in model.layers if layer.weights and is_backbone_layer(layer.name)]


def _keras_mobilenetv2(alpha: float, weights: str | None, input_shape: tuple[int, int, int] = (224, 224, 3)) -> Any:
    """Keras' MobileNetV2 without its top (the one place that may download; tests replace it)."""
    from edgeship.base.tfcompat import keras

    return keras.applications.MobileNetV2(input_shape=input_shape, alpha=alpha, include_top=False,
                                          weights=weights)


def load_backbone_weights(model: Any, config: ModelConfig | Mapping[str, Any], source: Any) -> dict[str, Any]:
    """Copy pretrained backbone weights from ``source`` (see :data:`BACKBONE_SOURCES`) into ``model``
    (built by ``build_detector(config)``); the heads are left untouched.

    Returns a JSON-able report: ``source``, ``kind`` (none | imagenet | weights_file | artifact),
    ``layers_loaded``, ``params_loaded``, ``layers_skipped`` (backbone layers the source lacks),
    ``source_layers_ignored`` (the source's layers that are not the model's backbone's, e.g. a
    classifier top or an artifact's heads). Raises FileNotFoundError naming a missing file,
    ValueError naming the source, layer and both shapes on a mismatch, or when no layer matches.
    """
    config = as_config(config)
    _check_model(model)
    src = _check_source(source, "backbone_weights")
    if src.lower() == "none":
        return {"source": "none", "kind": "none", "layers_loaded": 0, "params_loaded": 0,
                "layers_skipped": [], "source_layers_ignored": 0, "note": "no warm start: random backbone"}
    if src.lower() == "imagenet":
        return _load_imagenet(model, config)
    with tempfile.TemporaryDirectory(prefix="edgeship-warm-start-") as tmp:
        kind, weights, what, art_config = _stage_backbone_source(src, Path(tmp))
        if art_config is not None and float(art_config.alpha) != float(config.alpha):
            raise ValueError(f"{what}: its alpha {art_config.alpha} differs from the model's alpha "
                             f"{config.alpha} (a MobileNetV2 of another width)")
        layers = _read_h5(weights, what)
    report = _copy(model, layers, what, backbone_only=True, hint=_WIDTH_HINT)
    return {"source": src, "kind": kind, **report}


def _load_imagenet(model: Any, config: ModelConfig) -> dict[str, Any]:
    h, w = config.input_size
    size = h if h == w and h in IMAGENET_SIZES else 224
    try:
        reference = _keras_mobilenetv2(float(config.alpha), "imagenet", (size, size, 3))
    except Exception as exc:  # a download or cache failure: say what was asked for
        raise RuntimeError(f"cannot get Keras' imagenet MobileNetV2 (alpha {config.alpha}, {size}x{size}): "
                           f"{exc}; pass a local weights file as backbone_weights instead") from exc
    layers = {layer.name: [(_short(v.name), np.asarray(v.numpy())) for v in layer.weights]
              for layer in reference.layers if layer.weights}
    what = f"imagenet MobileNetV2 (alpha {config.alpha})"
    report = _copy(model, layers, what, backbone_only=True, hint=_WIDTH_HINT)
    return {"source": "imagenet", "kind": "imagenet", "imagenet_input_size": [size, size], **report}


def set_backbone_trainable(model: Any, trainable: bool) -> int:
    """Freeze (``False``) or unfreeze (``True``) the backbone's weight layers; the heads are not
    touched. Returns how many layers changed.

    A frozen BatchNormalization layer also runs in inference mode: in tf_keras (TF2 behaviour),
    ``BatchNormalization`` with ``trainable=False`` normalizes with its moving statistics and does
    not update them, whatever ``training`` the model is called with; since the backbone is inlined
    in the flat graph, setting it per layer is all that is needed. Trainable-ness is read when a
    train step is traced or a model compiled: set it before ``fit`` (each ``fit`` call builds its
    own step) or recompile.
    """
    if not isinstance(trainable, (bool, np.bool_)):
        raise TypeError(f"set_backbone_trainable: trainable must be True or False, got {trainable!r}")
    layers = backbone_layers(model)
    if not layers:
        raise ValueError(f"set_backbone_trainable: model {getattr(model, 'name', model)!r} has no "
                         f"MobileNetV2 backbone layers (not built by build_detector?)")
    changed = 0
    for layer in layers:
        if layer.trainable != bool(trainable):
            layer.trainable = bool(trainable)
            changed += 1
    return changed


def init_from(model: Any, config: ModelConfig | Mapping[str, Any], model_dir: Any) -> dict[str, Any]:
    """Scheduled retraining: start ``model`` (built by ``build_detector(config)``) from an earlier
    Model artifact ``model_dir`` (local folder or gs:// prefix).

    Same architecture (:data:`ARCHITECTURE_FIELDS`) and label map: every weight is loaded
    (``scope`` "all", ``reason`` None). Same architecture, other labels: the backbone only
    (``scope`` "backbone", ``reason`` says which labels differ, for the caller to log). Another
    architecture: ValueError naming the differing fields and both values.
    """
    config = as_config(config)
    _check_model(model)
    src = _check_source(model_dir, "init_from model_dir")
    with tempfile.TemporaryDirectory(prefix="edgeship-init-from-") as tmp:
        art_config, weights, what = _stage_artifact(src, Path(tmp))
        diffs = _differences(art_config, config, ARCHITECTURE_FIELDS)
        if diffs:
            raise ValueError(f"init_from {src}: its architecture differs from this model's: "
                             f"{'; '.join(diffs)} (load_backbone_weights takes only a backbone)")
        layers = _read_h5(weights, what)
    base = {"source": src, "kind": "artifact"}
    if not _differences(art_config, config, LABEL_FIELDS):
        report = _copy(model, layers, what, backbone_only=False, hint="")
        if report["layers_skipped"]:
            raise ValueError(f"{what}: lacks weights for the model's layers {report['layers_skipped']}")
        return {**base, "scope": "all", "reason": None, **report}
    report = _copy(model, layers, what, backbone_only=True, hint="")
    return {**base, "scope": "backbone", "reason": _labels_reason(src, art_config.labels, config.labels),
            **report}


def _labels_reason(src: str, old: list[str], new: list[str]) -> str:
    added = [v for v in new if v not in old]
    dropped = [v for v in old if v not in new]
    if added or dropped:
        change = f"new {added}, dropped {dropped}"
    else:
        change = "the same labels in another order"
    return (f"labels differ from {src}'s ({change}; it has {old}, this model {new}): "
            f"loaded its backbone only, the heads start fresh")


def _differences(old: ModelConfig, new: ModelConfig, fields: tuple[str, ...]) -> list[str]:
    a, b = old.to_json(), new.to_json()
    return [f"{f}: artifact {a[f]!r}, this model {b[f]!r}" for f in fields if a[f] != b[f]]


def _check_model(model: Any) -> None:
    if not hasattr(model, "layers") or not hasattr(model, "trainable_variables"):
        raise TypeError(f"expected a Keras model (from build_detector), got {type(model).__name__}: {model!r}")


def _check_source(value: Any, what: str) -> str:
    if isinstance(value, Path):
        value = str(value)
    if not isinstance(value, str):
        raise TypeError(f"{what} must be a path or gs:// URI string, got {type(value).__name__}: {value!r}")
    value = value.strip()
    if not value:
        raise ValueError(f"{what} is empty; use 'none', 'imagenet', a path or a gs:// URI")
    if storage.is_gcs(value):
        storage.parse_gcs(value)  # ValueError naming a malformed URI
    return value


def _stage_backbone_source(src: str, tmp: Path) -> tuple[str, Path, str, ModelConfig | None]:
    """(kind, local weights file, how to name it, the artifact's config or None)."""
    if storage.is_gcs(src) and src.endswith(".h5"):
        local = tmp / Path(storage.parse_gcs(src).name).name
        local.write_bytes(storage.read_bytes(src))
        return "weights_file", local, f"weights file {src}", None
    if storage.is_gcs(src) or Path(src).is_dir():
        art_config, weights, what = _stage_artifact(src, tmp)
        return "artifact", weights, what, art_config
    if Path(src).is_file():
        return "weights_file", Path(src), f"weights file {src}", None
    raise FileNotFoundError(f"backbone weights not found: {src} (backbone_weights must be 'none', "
                            f"'imagenet', a Keras MobileNetV2 .h5 weights file or an edgeship Model "
                            f"artifact folder, local or gs://)")


def _stage_artifact(src: str, tmp: Path) -> tuple[ModelConfig, Path, str]:
    """An artifact's (ModelConfig, local weights.h5, how to name it); gs:// files are copied to tmp."""
    names = (model_contract.CONFIG_FILE, model_contract.WEIGHTS_FILE)
    if storage.is_gcs(src):
        root = tmp
        for name in names:
            (tmp / name).write_bytes(storage.read_bytes(f"{src.rstrip('/')}/{name}"))
    else:
        root = Path(src)
        if not root.is_dir():
            raise FileNotFoundError(f"model artifact not found: {src}")
        for name in names:
            if not (root / name).is_file():
                raise FileNotFoundError(f"model artifact {src}: {name} missing (not a Model artifact?)")
    try:
        art_config = ModelConfig.from_json(json.loads((root / model_contract.CONFIG_FILE).read_text()))
    except (json.JSONDecodeError, TypeError, ValueError, AttributeError) as exc:
        raise ValueError(f"model artifact {src}: bad {model_contract.CONFIG_FILE}: {exc}") from exc
    return art_config, root / model_contract.WEIGHTS_FILE, f"model artifact {src}"


def _short(name: str) -> str:
    """'block_1_expand/kernel:0' -> 'kernel'."""
    return name.split("/")[-1].split(":")[0]


def _text(v: Any) -> str:
    return v.decode("utf8") if isinstance(v, bytes) else str(v)


def _read_h5(path: Path, what: str) -> LayerWeights:
    """Every layer's weights in a Keras weights file: Keras 2 ``save_weights``/``save`` .h5
    (``layer_names`` attributes; a nested model's layers by their variables' names) or Keras 3
    ``.weights.h5`` (``layers/<name>/vars/<i>`` groups, nested ones too)."""
    import h5py

    try:
        f = h5py.File(str(path), "r")
    except OSError as exc:
        raise ValueError(f"{what}: not an HDF5 Keras weights file ({exc})") from exc
    out: LayerWeights = {}
    with f:
        root = f.get("model_weights", f)
        if "layer_names" in root.attrs:
            for group_name in (_text(n) for n in root.attrs["layer_names"]):
                group = root[group_name]
                for w in (_text(n) for n in group.attrs.get("weight_names", [])):
                    # a nested model's group holds its layers' variables ('Conv1/kernel:0', ...)
                    layer = group_name if w.startswith(group_name + "/") or "/" not in w else w.split("/")[-2]
                    out.setdefault(layer, []).append((_short(w), np.asarray(group[w])))
        elif "layers" in root:
            def visit(name: str, obj: Any) -> None:
                parts = name.split("/")
                if isinstance(obj, h5py.Group) and parts[-1] == "vars" and len(parts) >= 2 and len(obj):
                    out[parts[-2]] = [(str(i), np.asarray(obj[str(i)])) for i in range(len(obj))]
            root["layers"].visititems(visit)
        else:
            raise ValueError(f"{what}: no Keras weights in it (neither Keras 2 'layer_names' nor Keras 3 'layers')")
    return out


def _copy(model: Any, layers: LayerWeights, what: str, *, backbone_only: bool, hint: str) -> dict[str, Any]:
    """Check every matched layer's variable shapes, then set them all (nothing set on a mismatch)."""
    targets = backbone_layers(model) if backbone_only else [x for x in model.layers if x.weights]
    if not targets:
        raise ValueError(f"{what}: the model {model.name!r} has no "
                         f"{'MobileNetV2 backbone ' if backbone_only else ''}layers with weights")
    matched = [layer for layer in targets if layer.name in layers]
    if not matched:
        raise ValueError(f"{what}: none of its {len(layers)} layers (e.g. {sorted(layers)[:5]}) has the name "
                         f"of one of the model's {len(targets)} {'backbone ' if backbone_only else ''}layers "
                         f"(e.g. {[x.name for x in targets[:5]]}): not MobileNetV2 weights?")
    problems, plan = [], []
    for layer in matched:
        values = layers[layer.name]
        if len(values) != len(layer.weights):
            problems.append(f"layer '{layer.name}' has {len(values)} variables, the model's has "
                            f"{len(layer.weights)}")
            continue
        for (_, value), var in zip(values, layer.weights):
            if tuple(value.shape) != tuple(var.shape):
                problems.append(f"layer '{layer.name}' {_short(var.name)} has shape {tuple(value.shape)}, "
                                f"the model's is {tuple(var.shape)}")
        plan.append((layer, [v for _, v in values]))
    if problems:
        more = f" (and {len(problems) - 1} more mismatches)" if len(problems) > 1 else ""
        raise ValueError(f"{what}: {problems[0]}{hint}{more}")
    for layer, values in plan:
        layer.set_weights(values)
    names = {x.name for x in targets}
    return {"layers_loaded": len(plan), "params_loaded": int(sum(v.size for _, vs in plan for v in vs)),
            "layers_skipped": [x.name for x in targets if x.name not in layers],
            "source_layers_ignored": len([n for n in layers if n not in names])}
