"""TFLite conversion of the detector: the schemes (fp32, dynamic-range int8, float16, full int8
per-channel and per-tensor, 16x8, QAT int8), loading a Model artifact, calibration images and
the representative dataset, and the converter factory."""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from edgeship.contracts import model as model_contract
from edgeship.detection.postprocess import PostprocessConfig

log = logging.getLogger(__name__)

# name → (source model, input dtype, needs representative data)
SCHEMES: dict[str, tuple[str, str, bool]] = {
    "fp32": ("float", "float32", False),
    "dynamic_int8": ("float", "float32", False),
    "float16": ("float", "float32", False),
    "full_int8": ("float", "uint8", True),
    # full int8 with one scale per weight tensor instead of one per output channel: per-channel
    # parameters (a float32 scale and an int64 zero point per channel, for weights and biases)
    # are ~30% of a full-int8 file at alpha 0.35; dropping them costs some accuracy (measured)
    "full_int8_pt": ("float", "uint8", True),
    "int16x8": ("float", "float32", True),
    "qat_int8": ("qat", "uint8", False),
}


DEFAULT_SCHEMES = tuple(SCHEMES)


INT8_SCHEMES = ("full_int8", "full_int8_pt", "qat_int8")  # int8 compute expected outside post-processing


# schemes whose failure is recorded in variants.json "skipped" instead of failing the step:
# 16x8 is TFLite's experimental mode (its kernels reject some calibrated ranges)
OPTIONAL_SCHEMES = ("int16x8",)


CALIBRATION_SPLIT = "calibration"


BOX_STD_FLOOR = 0.25


PARITY_IMAGES = 4


# per scheme: max allowed score_max_abs, score_mean_abs, box_nmae (see module docstring)
PARITY_TOLERANCES: dict[str, dict[str, float]] = {
    "fp32": {"score_max_abs": 1e-3, "score_mean_abs": 1e-4, "box_nmae": 1e-3},
    "float16": {"score_max_abs": 0.01, "score_mean_abs": 2e-3, "box_nmae": 0.01},
    "dynamic_int8": {"score_max_abs": 0.15, "score_mean_abs": 0.02, "box_nmae": 0.25},
    "int16x8": {"score_max_abs": 0.05, "score_mean_abs": 0.01, "box_nmae": 0.10},
    # int8 activations: loose enough for honest rounding, tight enough to catch a wrong input
    # scale, swapped outputs or a broken graph (uncorrelated outputs give box_nmae ~1.4)
    "full_int8": {"score_max_abs": 0.25, "score_mean_abs": 0.05, "box_nmae": 0.5},
    "full_int8_pt": {"score_max_abs": 0.25, "score_mean_abs": 0.05, "box_nmae": 0.5},
    "qat_int8": {"score_max_abs": 0.25, "score_mean_abs": 0.05, "box_nmae": 0.5},
}


class QuantizeError(ValueError):
    """A failed stage of one variant: ``stage`` is validate-before, convert or validate-after."""

    def __init__(self, stage: str, variant: str, message: str) -> None:
        super().__init__(f"quantize [{stage}] {variant}: {message}")
        self.stage, self.variant = stage, variant


@dataclass
class LoadedModel:
    """A Model artifact loaded for conversion."""

    model_dir: Path
    model: Any  # keras.Model: image float32 [B,H,W,3] → (box_encodings, class_logits)
    config: dict[str, Any]
    anchors: np.ndarray
    labels: list[str]

    @property
    def input_size(self) -> tuple[int, int]:
        h, w = self.config["input_size"]
        return int(h), int(w)

    @property
    def num_classes(self) -> int:
        return int(self.config["num_classes"])


def load_model_artifact(model_dir: str | os.PathLike, *, qat: bool = False) -> LoadedModel:
    """Load a Model artifact dir (model_config.json, anchors.npy, the Keras model) and check it.

    The Keras model comes from the train step's ``edgeship.detection.model.load_model`` (or the
    qat step's loader for a QAT dir) when they are importable, else from ``saved_model/`` with
    tf_keras (inside tfmot's ``quantize_scope`` for QAT). Raises FileNotFoundError / ValueError
    naming the dir and the bad part.
    """
    root = Path(model_dir)
    what = "QAT model" if qat else "float model"
    if not root.is_dir():
        raise FileNotFoundError(f"{what} directory not found: {root}")
    config = model_contract.read_config(root, what)
    anchors = model_contract.read_anchors(root, what)
    labels = model_contract.read_labels(root, config)
    model = _load_keras(root, qat=qat)
    loaded = LoadedModel(root, model, config, anchors, labels)
    _check_outputs(loaded, what)
    return loaded


def _load_keras(root: Path, *, qat: bool) -> Any:
    from edgeship.base.tfcompat import keras
    from edgeship.detection.model import load_model
    from edgeship.detection.qat import load_qat_model

    what = "QAT model" if qat else "float model"
    loader = load_qat_model if qat else load_model
    errors = []
    # the weights + config loader first, the SavedModel as the fallback
    try:
        model = loader(str(root))
        return model[0] if isinstance(model, tuple) else model
    except Exception as exc:  # fall back to the SavedModel, but keep the reason
        errors.append(f"{loader.__module__}.{loader.__name__}: {exc}")
        log.warning("%s %s: %s failed (%s); loading saved_model/ instead", what, root,
                    loader.__name__, exc)
    saved = root / "saved_model"
    if qat and (root / "qat_saved_model").is_dir():  # the qat step's layout
        saved = root / "qat_saved_model"
    if not saved.is_dir():
        raise FileNotFoundError(f"{what} {root}: no saved_model/ to load"
                                + (f" (and {errors[0]})" if errors else ""))
    try:
        if qat:
            import tensorflow_model_optimization as tfmot

            with tfmot.quantization.keras.quantize_scope():
                return keras.models.load_model(str(saved), compile=False)
        return keras.models.load_model(str(saved), compile=False)
    except Exception as exc:
        errors.append(f"saved_model: {type(exc).__name__}: {str(exc)[:300]}")
        raise ValueError(f"{what} {root}: cannot load the model (corrupt SavedModel?): "
                         + "; ".join(errors)) from exc


def _check_outputs(loaded: LoadedModel, what: str) -> None:
    h, w = loaded.input_size
    k = loaded.num_classes
    outs = loaded.model(np.zeros([1, h, w, 3], np.float32), training=False)
    if isinstance(outs, dict):
        outs = [outs.get("box_encodings"), outs.get("class_logits")]
    if not isinstance(outs, (list, tuple)) or len(outs) != 2 or any(o is None for o in outs):
        raise ValueError(f"{what} {loaded.model_dir}: model must output (box_encodings, class_logits), "
                         f"got {type(outs).__name__}")
    box, cls = (tuple(int(v) for v in o.shape) for o in outs)
    a = len(loaded.anchors)
    if box != (1, a, 4):
        raise ValueError(f"{what} {loaded.model_dir}: box_encodings shape {box}, expected (1, {a}, 4) "
                         f"({a} anchors in anchors.npy)")
    if cls != (1, a, k + 1):
        raise ValueError(f"{what} {loaded.model_dir}: class_logits shape {cls}, expected (1, {a}, {k + 1}) "
                         f"(num_classes {k} + background)")


TOP_UP_SPLIT = "train"  # where calibration images come from when the calibration split is small


@dataclass
class CalibrationSet:
    """Calibration images (uint8 [H, W, 3] at the model's input size) and the record of how they
    were chosen: ``images``, ``requested``, ``splits`` ({split: count}), ``seed``, ``method``,
    ``from`` (in words), ``image_ids`` ("split/image_id", in order) and ``ids_sha256``."""

    images: list[np.ndarray]
    record: dict[str, Any]

    @property
    def where(self) -> str:
        return str(self.record.get("from"))


def select_calibration(calibration: Any, input_size: Sequence[int], num: int, *,
                       split: str = CALIBRATION_SPLIT, top_up: str | None = TOP_UP_SPLIT,
                       seed: int = 0, resize: str = "stretch") -> CalibrationSet:
    """Choose ``num`` calibration images.

    From a dataset URI: a seeded random draw (without replacement, kept in split order) from its
    ``split``; when that split holds fewer than ``num`` images, all of them plus a seeded draw of
    the rest from ``top_up`` (train). A missing or empty ``split`` gives no images (the dataset
    contract always has one: an error upstream, not a reason to calibrate on train alone). From a
    sequence of Examples / uint8 arrays: the first ``num``. Images are resized as they are read,
    under the model's ``resize`` policy (stretch | letterbox), as in training and evaluation.
    """
    want = max(0, int(num))
    if calibration is None:
        return _calibration_set([], [], {}, want, seed, "no calibration data given")
    if not isinstance(calibration, (str, os.PathLike)):
        examples = list(calibration)[:want]
        images = [_calibration_image(ex, "given examples", input_size, resize) for ex in examples]
        ids = [f"given/{getattr(ex, 'image_id', i)}" for i, ex in enumerate(examples)]
        return _calibration_set(images, ids, {"given": len(images)} if images else {}, want, seed,
                                "given examples" if images else "given examples is empty")
    uri = str(calibration)
    rng = np.random.default_rng(seed)
    images, ids, note = _draw(uri, split, want, input_size, rng, resize)
    splits = {split: len(images)} if images else {}
    if images and len(images) < want and top_up and top_up != split:
        more, more_ids, _ = _draw(uri, top_up, want - len(images), input_size, rng, resize)
        images, ids = images + more, ids + more_ids
        if more:
            splits[top_up] = len(more)
    where = (" + ".join(f"{n} from split {name!r}" for name, n in splits.items()) + f" in {uri}"
             if images else note)
    return _calibration_set(images, ids, splits, want, seed, where)


def _draw(uri: str, split: str, need: int, input_size: Sequence[int],
          rng: np.random.Generator, resize: str = "stretch") -> tuple[list[np.ndarray], list[str], str]:
    """Up to ``need`` images of ``split`` drawn at random (kept in split order), streamed."""
    from edgeship.contracts.dataset import read_dataset_info
    from edgeship.detection.dataset import iter_split

    try:
        total = read_dataset_info(uri).images(split)
        if total <= 0 or need <= 0:
            return [], [], f"split {split!r} in {uri} is empty/missing"
        chosen = set(rng.choice(total, size=need, replace=False).tolist()) if need < total else None
        images, ids = [], []
        for i, ex in enumerate(iter_split(uri, split)):
            if chosen is None or i in chosen:
                images.append(_calibration_image(ex, f"split {split!r} in {uri}", input_size, resize))
                ids.append(f"{split}/{ex.image_id}")
    except (FileNotFoundError, KeyError, ValueError) as exc:
        return [], [], f"split {split!r} in {uri} is missing ({exc})"
    return images, ids, "" if images else f"split {split!r} in {uri} is empty"


def _calibration_image(example: Any, where: str, input_size: Sequence[int],
                       resize: str = "stretch") -> np.ndarray:
    img = np.asarray(getattr(example, "image", example))
    if img.ndim != 3 or img.shape[-1] != 3:
        raise ValueError(f"calibration image from {where} has shape {img.shape}, expected [H, W, 3]")
    if resize != "stretch":
        from edgeship.detection.sources.images import resize_image

        return resize_image(img.astype(np.uint8), tuple(input_size), resize)[0]
    return resize_uint8(img, input_size)


def _calibration_set(images: list[np.ndarray], ids: list[str], splits: dict[str, int], want: int,
                     seed: int, where: str) -> CalibrationSet:
    import hashlib

    record = {"images": len(images), "requested": want, "splits": splits, "seed": int(seed),
              "method": "seeded draw without replacement from the calibration split, topped up from "
                        "train when it holds fewer than requested; kept in split order",
              "from": where, "ids_sha256": hashlib.sha256("\n".join(ids).encode()).hexdigest(),
              "image_ids": ids}
    return CalibrationSet(images, record)


def load_calibration_images(calibration: Any, input_size: Sequence[int], num: int,
                            split: str = CALIBRATION_SPLIT) -> tuple[list[np.ndarray], str]:
    """(images, where they came from) of :func:`select_calibration`; ([], reason) when none."""
    chosen = select_calibration(calibration, input_size, num, split=split)
    return chosen.images, chosen.where


def resize_uint8(image: np.ndarray, size: Sequence[int]) -> np.ndarray:
    """uint8 [H, W, 3] resized (bilinear) to ``size``; unchanged when it already matches."""
    h, w = int(size[0]), int(size[1])
    image = np.asarray(image)
    if image.shape[:2] == (h, w):
        return image.astype(np.uint8)
    from PIL import Image

    return np.asarray(Image.fromarray(image.astype(np.uint8)).resize((w, h), Image.BILINEAR), np.uint8)


def representative_dataset(images: Sequence[np.ndarray]) -> Callable[[], Iterable[list[np.ndarray]]]:
    """The converter's representative dataset: float32 raw pixels [1, H, W, 3], one per image.

    The first sample gets one pixel at 0 and one at 255, so the calibrated input range is exactly
    0..255 and the uint8 input of int8 variants is raw pixels (scale 1, zero point 0).
    """
    def gen():
        for i, img in enumerate(images):
            x = np.asarray(img, np.float32)[None].copy()
            if i == 0:
                x[0, 0, 0, :] = 0.0
                x[0, -1, -1, :] = 255.0
            yield [x]
    return gen


@dataclass
class ExportedModule:
    """A detection module saved once as a SavedModel, for converting it to several schemes.

    ``TFLiteConverter.from_concrete_functions`` saves its module to a fresh SavedModel on every
    ``convert()`` (and loads it back): six identical saves for the six float schemes (quantize
    251 s → 208 s on 2 cores, 2026-12-03). Converting from the one saved here gives the same
    model: every tensor equal, one byte of converter metadata (the source's kind) apart.
    """

    module: Any
    saved_model_dir: Path

    def __getattr__(self, name: str) -> Any:  # the module's own attributes (detect, anchors, ...)
        if name == "module":
            raise AttributeError(name)
        return getattr(self.module, name)


def export_module(loaded: LoadedModel, postprocess: PostprocessConfig, directory: str | os.PathLike) -> ExportedModule:
    """Save ``loaded``'s detection module (post-processing inside) to ``directory`` the way the
    converter saves it itself (one serving signature, debug info for its error messages)."""
    from edgeship.base.tfcompat import tf
    from edgeship.detection.postprocess import detection_module

    module = detection_module(loaded.model, loaded.anchors, loaded.num_classes, loaded.input_size, postprocess)
    tf.saved_model.save(module, str(directory), signatures={"serving_default": module.detect.get_concrete_function()},
                        options=tf.saved_model.SaveOptions(save_debug_info=True))
    return ExportedModule(module, Path(directory))


def make_converter(module: Any, scheme: str, representative: Callable | None = None) -> Any:
    """A configured ``tf.lite.TFLiteConverter`` for ``module.detect`` (or an ExportedModule's
    SavedModel) and ``scheme`` (the seam)."""
    from edgeship.base.tfcompat import tf

    if isinstance(module, ExportedModule):
        conv = tf.lite.TFLiteConverter.from_saved_model(str(module.saved_model_dir), signature_keys=["serving_default"])
    else:
        conv = tf.lite.TFLiteConverter.from_concrete_functions([module.detect.get_concrete_function()], module)
    conv.allow_custom_ops = True  # TFLite_Detection_PostProcess
    if scheme == "fp32":
        pass
    elif scheme == "dynamic_int8":
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
    elif scheme == "float16":
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.target_spec.supported_types = [tf.float16]
    elif scheme in ("full_int8", "full_int8_pt"):
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = representative
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        conv.inference_input_type = tf.uint8
        if scheme == "full_int8_pt":
            # TF 2.21's switch for per-tensor weight scales (no public name for it)
            conv._experimental_disable_per_channel = True
    elif scheme == "int16x8":
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = representative
        # 16x8 has no kernel for the CUSTOM post-processing op: TFLITE_BUILTINS lets it stay float
        conv.target_spec.supported_ops = [
            tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8,
            tf.lite.OpsSet.TFLITE_BUILTINS]
    elif scheme == "qat_int8":
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        if representative is not None:  # ranges for the ops QAT did not annotate (the sigmoid)
            conv.representative_dataset = representative
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        conv.inference_input_type = tf.uint8
    else:
        raise ValueError(f"unknown scheme {scheme!r}; known: {sorted(SCHEMES)}")
    return conv


ConverterFactory = Callable[[Any, str, "Callable | None"], Any]


def convert_variant(loaded: LoadedModel, scheme: str, *, representative: Callable | None = None,
                    postprocess: PostprocessConfig | None = None,
                    converter_factory: ConverterFactory = make_converter,
                    exported: ExportedModule | None = None) -> bytes:
    """Convert one scheme of ``loaded`` (with post-processing inside) to .tflite bytes; from
    ``exported`` (``export_module`` of the same model and post-processing) when given."""
    from edgeship.detection.postprocess import detection_module

    cfg = postprocess or PostprocessConfig(box_scales=tuple(loaded.config.get("box_scales", (10, 10, 5, 5))))
    module = exported if exported is not None else detection_module(
        loaded.model, loaded.anchors, loaded.num_classes, loaded.input_size, cfg)
    try:
        blob = converter_factory(module, scheme, representative).convert()
    except QuantizeError:
        raise
    except Exception as exc:
        raise QuantizeError("convert", scheme, f"{type(exc).__name__}: {str(exc)[:800]}") from exc
    if not blob:
        raise QuantizeError("convert", scheme, "the converter returned an empty model")
    return bytes(blob)


