"""The quantize step: every TFLite scheme (with detection post-processing inside) and Core ML.

For each variant: validate (the source model loads and has the contract's outputs; calibration
data exists for the schemes that need it) → convert (one converter factory, ``make_converter``,
the seam tests can replace) → validate (the .tflite loads in LiteRT with XNNPACK, its four
outputs are where the graph says, and its raw head outputs agree with the source Keras model on
a few images within the scheme's tolerance). Every error names the stage and the variant.

Output (docs/contracts.md "Variants artifact"): ``<variant>.tflite``, ``<variant>.ops.json`` and
``<variant>.ops.txt`` (op report), ``variants.json``, ``labels.txt``, and
``coreml_fp16.mlpackage.zip`` / ``coreml_int8w.mlpackage.zip``.

Parity metric (``PARITY_TOLERANCES``): the post-processing op's inputs are read from the
converted model itself (LiteRT with ``experimental_preserve_all_tensors``): class scores (sigmoid,
[A, K+1]) and box encodings ([A, 4]) are compared with the source Keras model's on the same
pixels. ``score_max_abs`` = max |Δscore|; ``score_mean_abs`` = mean |Δscore|; ``box_nmae`` =
mean |Δencoding| / max(std(Keras encodings), 0.25) (scale-free). A variant passes when each is ≤ its
tolerance. qat_int8 is compared with the QAT Keras model (which simulates int8 itself).
"""
from __future__ import annotations

import json
import logging
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from components.quantize.postprocess import OUTPUT_KEYS, POSTPROCESS_OP, PostprocessConfig

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


@dataclass
class VariantsResult:
    """What ``quantize`` wrote: the output dir, variants.json's content and the file sizes."""

    out_dir: Path
    variants: list[dict[str, Any]]
    coreml: list[dict[str, Any]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    skipped: list[dict[str, Any]] = field(default_factory=list)

    @property
    def index_path(self) -> Path:
        return self.out_dir / "variants.json"

    def sizes(self) -> dict[str, int]:
        out = {v["name"]: int(v["size_bytes"]) for v in self.variants}
        out.update({c["name"]: int(c["size_bytes"]) for c in self.coreml})
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"variants": self.variants, "coreml": self.coreml, "skipped": self.skipped}


# ---------------------------------------------------------------- loading and validate-before

def load_model_artifact(model_dir: str | os.PathLike, *, qat: bool = False) -> LoadedModel:
    """Load a Model artifact dir (model_config.json, anchors.npy, the Keras model) and check it.

    The Keras model comes from the train step's ``components.train.detector.load_model`` (or the
    qat step's loader for a QAT dir) when they are importable, else from ``saved_model/`` with
    tf_keras (inside tfmot's ``quantize_scope`` for QAT). Raises FileNotFoundError / ValueError
    naming the dir and the bad part.
    """
    root = Path(model_dir)
    what = "QAT model" if qat else "float model"
    if not root.is_dir():
        raise FileNotFoundError(f"{what} directory not found: {root}")
    cfg_path = root / "model_config.json"
    if not cfg_path.is_file():
        raise FileNotFoundError(f"{what} {root}: model_config.json missing (not a Model artifact?)")
    try:
        config = json.loads(cfg_path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{what} {root}: model_config.json is not valid JSON: {exc}") from exc
    for key in ("input_size", "num_classes"):
        if key not in config:
            raise ValueError(f"{what} {root}: model_config.json lacks {key!r}")
    anchors_path = root / "anchors.npy"
    if not anchors_path.is_file():
        raise FileNotFoundError(f"{what} {root}: anchors.npy missing")
    try:
        anchors = np.load(anchors_path).astype(np.float32)
    except Exception as exc:
        raise ValueError(f"{what} {root}: anchors.npy unreadable: {exc}") from exc
    if anchors.ndim != 2 or anchors.shape[1] != 4:
        raise ValueError(f"{what} {root}: anchors.npy has shape {anchors.shape}, expected [A, 4]")
    labels = list(config.get("labels") or [])
    if not labels and (root / "labels.txt").is_file():
        labels = [s for s in (root / "labels.txt").read_text().splitlines() if s.strip()]
    model = _load_keras(root, qat=qat)
    loaded = LoadedModel(root, model, config, anchors, labels)
    _check_outputs(loaded, what)
    return loaded


def _load_keras(root: Path, *, qat: bool) -> Any:
    from edgeship.tfcompat import keras

    what = "QAT model" if qat else "float model"
    loader = None
    try:
        if qat:
            from components.qat import core as qat_core  # type: ignore[import-not-found]

            loader = getattr(qat_core, "load_qat_model", None) or getattr(qat_core, "load_model", None)
        else:
            from components.train import detector  # type: ignore[import-not-found]

            loader = getattr(detector, "load_model", None)
    except ImportError:
        loader = None
    errors = []
    if loader is not None:
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


def load_calibration_images(calibration: Any, input_size: Sequence[int], num: int,
                            split: str = CALIBRATION_SPLIT) -> tuple[list[np.ndarray], str]:
    """Calibration images as uint8 [H, W, 3] at the model's input size, and where they came from.

    ``calibration`` is a dataset URI (dir or gs:// prefix; its ``calibration`` split is read with
    ``components.data.core.load_split``), a sequence of Examples / uint8 arrays, or None.
    Returns ([], reason) when there is none.
    """
    if calibration is None:
        return [], "no calibration data given"
    if isinstance(calibration, (str, os.PathLike)):
        uri = str(calibration)
        try:
            from components.data.core import load_split

            examples = load_split(uri, split)
        except (FileNotFoundError, KeyError, ValueError) as exc:
            return [], f"split {split!r} in {uri} is missing ({exc})"
        where = f"split {split!r} in {uri}"
    else:
        examples, where = list(calibration), "given examples"
    images = []
    for ex in examples[: max(0, int(num))]:
        img = np.asarray(getattr(ex, "image", ex))
        if img.ndim != 3 or img.shape[-1] != 3:
            raise ValueError(f"calibration image from {where} has shape {img.shape}, expected [H, W, 3]")
        images.append(resize_uint8(img, input_size))
    if not images:
        return [], f"{where} is empty"
    return images, where


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


# ---------------------------------------------------------------- convert

def make_converter(module: Any, scheme: str, representative: Callable | None = None) -> Any:
    """A configured ``tf.lite.TFLiteConverter`` for ``module.detect`` and ``scheme`` (the seam)."""
    from edgeship.tfcompat import tf

    fn = module.detect.get_concrete_function()
    conv = tf.lite.TFLiteConverter.from_concrete_functions([fn], module)
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
                    converter_factory: ConverterFactory = make_converter) -> bytes:
    """Convert one scheme of ``loaded`` (with post-processing inside) to .tflite bytes."""
    from components.quantize.postprocess import detection_module

    cfg = postprocess or PostprocessConfig(box_scales=tuple(loaded.config.get("box_scales", (10, 10, 5, 5))))
    module = detection_module(loaded.model, loaded.anchors, loaded.num_classes, loaded.input_size, cfg)
    try:
        blob = converter_factory(module, scheme, representative).convert()
    except QuantizeError:
        raise
    except Exception as exc:
        raise QuantizeError("convert", scheme, f"{type(exc).__name__}: {str(exc)[:800]}") from exc
    if not blob:
        raise QuantizeError("convert", scheme, "the converter returned an empty model")
    return bytes(blob)


# ---------------------------------------------------------------- validate-after

def _litert(path: Path, variant: str, **kwargs: Any) -> Any:
    from ai_edge_litert.interpreter import Interpreter

    try:
        with warnings.catch_warnings():  # preserve_all_tensors warns that it is for debugging
            warnings.simplefilter("ignore", UserWarning)
            interp = Interpreter(model_path=str(path), **kwargs)
        interp.allocate_tensors()
        return interp
    except Exception as exc:
        raise QuantizeError("validate-after", variant,
                            f"LiteRT cannot load {path} (corrupt or not a .tflite?): {exc}") from exc


def inspect_tflite(path: str | os.PathLike, variant: str = "") -> dict[str, Any]:
    """Input spec and output map of a detector .tflite, read from its graph (LiteRT, XNNPACK)."""
    from components.quantize.op_report import output_map

    path = Path(path)
    variant = variant or path.stem
    if not path.is_file():
        raise FileNotFoundError(f"variant {variant!r}: .tflite not found: {path}")
    interp = _litert(path, variant)
    try:
        mapping = output_map(_litert(path, variant, experimental_op_resolver_type=_no_delegates()))
    except ValueError as exc:
        raise QuantizeError("validate-after", variant, str(exc)) from exc
    ins = interp.get_input_details()
    if len(ins) != 1:
        raise QuantizeError("validate-after", variant, f"expected one image input, found {len(ins)}")
    d = ins[0]
    scale, zp = d["quantization"]
    dtype = np.dtype(d["dtype"]).name
    quantized = dtype in ("uint8", "int8")
    return {"input": {"name": str(d["name"]), "index": int(d["index"]),
                      "shape": [int(v) for v in d["shape"]], "dtype": dtype,
                      "scale": float(scale) if quantized else None,
                      "zero_point": int(zp) if quantized else None,
                      "normalization": "raw RGB 0..255"},
            "outputs": mapping}


def _no_delegates() -> Any:
    from ai_edge_litert.interpreter import OpResolverType

    return OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES


def to_model_input(images: np.ndarray, spec: dict[str, Any]) -> np.ndarray:
    """Raw uint8 pixels [1, H, W, 3] → the .tflite's input (float32 pixels, or quantized uint8)."""
    pixels = np.asarray(images, np.float32)
    if spec["dtype"] == "float32":
        return pixels
    scale, zp = spec.get("scale") or 1.0, spec.get("zero_point") or 0
    info = np.iinfo(np.dtype(spec["dtype"]))
    if not (abs(scale - 1.0) < 1e-6 and zp == 0):
        pixels = pixels / scale + zp
    return np.clip(np.rint(pixels), info.min, info.max).astype(spec["dtype"])


def run_detection(path: str | os.PathLike, images: Sequence[np.ndarray], spec: dict[str, Any],
                  *, variant: str = "") -> list[dict[str, np.ndarray]]:
    """Run the .tflite (LiteRT, XNNPACK) on uint8 images; per image the 4 outputs plus the
    post-processing op's inputs (``class_scores`` [A, K+1], ``box_encodings`` [A, 4])."""
    from components.quantize.op_report import _interpreter

    path = Path(path)
    variant = variant or path.stem
    interp = _litert(path, variant, experimental_preserve_all_tensors=True)
    plain = _interpreter(path)
    pp = [op for op in plain._get_ops_details() if op["op_name"] == POSTPROCESS_OP][0]
    box_t, score_t = int(pp["inputs"][0]), int(pp["inputs"][1])
    results = []
    for img in images:
        interp.set_tensor(spec["input"]["index"], to_model_input(np.asarray(img)[None], spec["input"]))
        interp.invoke()
        out = {k: np.array(interp.get_tensor(spec["outputs"][k]["index"])) for k in OUTPUT_KEYS}
        try:
            out["box_encodings"] = np.array(interp.get_tensor(box_t)).reshape(-1, 4)
            out["class_scores"] = np.array(interp.get_tensor(score_t))[0]
        except ValueError:  # tensor fused away by a delegate: rerun without delegates
            interp = _litert(path, variant, experimental_preserve_all_tensors=True,
                             experimental_op_resolver_type=_no_delegates())
            interp.set_tensor(spec["input"]["index"], to_model_input(np.asarray(img)[None], spec["input"]))
            interp.invoke()
            out["box_encodings"] = np.array(interp.get_tensor(box_t)).reshape(-1, 4)
            out["class_scores"] = np.array(interp.get_tensor(score_t))[0]
        results.append(out)
    return results


def check_outputs(results: list[dict[str, np.ndarray]], variant: str, num_classes: int,
                  max_detections: int) -> None:
    """The four outputs have the contract's shapes and sane values, or QuantizeError."""
    d = max_detections
    for i, r in enumerate(results):
        shapes = {k: tuple(r[k].shape) for k in OUTPUT_KEYS}
        want = {"boxes": (1, d, 4), "classes": (1, d), "scores": (1, d), "count": (1,)}
        if shapes != want:
            raise QuantizeError("validate-after", variant, f"output shapes {shapes}, expected {want}")
        n = int(r["count"][0])
        if not 0 <= n <= d:
            raise QuantizeError("validate-after", variant, f"image {i}: count {n} outside 0..{d}")
        cls = r["classes"][0, :n]
        if n and (np.any(cls < 0) or np.any(cls > num_classes - 1) or np.any(np.abs(cls - np.rint(cls)) > 1e-6)):
            raise QuantizeError("validate-after", variant, f"image {i}: classes {cls[:5]} not integral "
                                f"0..{num_classes - 1}")
        if n and not np.all(np.isfinite(r["boxes"][0, :n])):
            raise QuantizeError("validate-after", variant, f"image {i}: non-finite boxes")


def parity(loaded: LoadedModel, results: list[dict[str, np.ndarray]], images: Sequence[np.ndarray],
           scheme: str) -> dict[str, Any]:
    """Compare the .tflite's class scores and box encodings with the Keras model's (see module doc)."""
    batch = np.stack([np.asarray(i, np.float32) for i in images])
    outs = loaded.model(batch, training=False)
    if isinstance(outs, dict):
        outs = [outs["box_encodings"], outs["class_logits"]]
    k_box = np.asarray(outs[0])
    k_score = 1.0 / (1.0 + np.exp(-np.asarray(outs[1], np.float64)))
    t_box = np.stack([r["box_encodings"] for r in results])
    t_score = np.stack([r["class_scores"] for r in results])
    ds = np.abs(t_score - k_score)
    # floor: an untrained head's near-constant encodings would inflate the ratio; 0.25 in encoding
    # units is 2.5% of an anchor's size for ty/tx (scale 10), 5% for th/tw (scale 5)
    box_std = max(float(np.std(k_box)), BOX_STD_FLOOR)
    metrics = {"score_max_abs": float(ds.max()), "score_mean_abs": float(ds.mean()),
               "box_nmae": float(np.mean(np.abs(t_box - k_box)) / box_std)}
    tol = PARITY_TOLERANCES[scheme]
    failed = {k: (round(v, 6), tol[k]) for k, v in metrics.items() if v > tol[k]}
    return {"reference": "qat_keras" if SCHEMES[scheme][0] == "qat" else "float_keras",
            "images": len(images), "metric": "class scores (sigmoid) and box encodings at the "
            "post-processing op's inputs vs the Keras model on the same pixels",
            **{k: round(v, 6) for k, v in metrics.items()}, "tolerance": tol, "passed": not failed,
            "failed": {k: {"value": v, "tolerance": t} for k, (v, t) in failed.items()}}


# ---------------------------------------------------------------- the step

def quantize(float_model_dir: str | os.PathLike, out_dir: str | os.PathLike, *,
             qat_model_dir: str | os.PathLike | None = None, calibration: Any = None,
             num_calibration: int = 200, schemes: Sequence[str] | None = None, coreml: bool = True,
             postprocess: PostprocessConfig | None = None, parity_images: int = PARITY_IMAGES,
             strict_parity: bool = True, converter_factory: ConverterFactory = make_converter,
             progress: bool = True) -> VariantsResult:
    """Convert the float (and QAT) model to every scheme, with op reports, parity and Core ML.

    Writes into ``out_dir`` (created): ``<variant>.tflite``, ``<variant>.ops.json/.txt``,
    ``variants.json``, ``labels.txt`` and Core ML ``*.mlpackage.zip``. ``calibration`` is the
    dataset URI (its ``calibration`` split) or a list of examples; ``schemes`` defaults to all
    (qat_int8 only when ``qat_model_dir`` is given). Raises QuantizeError (a ValueError) naming
    the stage and variant; with ``strict_parity`` a parity miss is an error, else it is recorded.
    """
    from rich.progress import Progress

    explicit = schemes is not None
    schemes = list(schemes or DEFAULT_SCHEMES)
    unknown = [s for s in schemes if s not in SCHEMES]
    if unknown:
        raise ValueError(f"unknown scheme(s) {unknown}; known: {sorted(SCHEMES)}")
    if qat_model_dir is None and "qat_int8" in schemes:
        if explicit:
            raise QuantizeError("validate-before", "qat_int8", "needs a QAT model (--qat-model / qat_model_dir)")
        schemes.remove("qat_int8")
        log.info("no QAT model given: skipping qat_int8")

    # ---- validate before
    try:
        loaded = load_model_artifact(float_model_dir)
    except (ValueError, FileNotFoundError) as exc:
        raise QuantizeError("validate-before", "float model", str(exc)) from exc
    qat_loaded = None
    if "qat_int8" in schemes:
        try:
            qat_loaded = load_model_artifact(qat_model_dir, qat=True)  # type: ignore[arg-type]
        except (ValueError, FileNotFoundError) as exc:
            raise QuantizeError("validate-before", "qat_int8", str(exc)) from exc
        if qat_loaded.input_size != loaded.input_size or len(qat_loaded.anchors) != len(loaded.anchors):
            raise QuantizeError("validate-before", "qat_int8", f"QAT model {qat_model_dir} (input "
                                f"{qat_loaded.input_size}, {len(qat_loaded.anchors)} anchors) does not "
                                f"match the float model (input {loaded.input_size}, {len(loaded.anchors)})")
    images, where = load_calibration_images(calibration, loaded.input_size, num_calibration)
    for s in schemes:
        if SCHEMES[s][2] and not images:
            raise QuantizeError("validate-before", s, f"{s} needs calibration data: "
                                f"split {CALIBRATION_SPLIT!r} in {calibration} is empty/missing ({where})")
    rep = representative_dataset(images) if images else None
    check_images = images[:parity_images] if images else _noise_images(loaded.input_size, parity_images)
    cfg = postprocess or PostprocessConfig(box_scales=tuple(loaded.config.get("box_scales", (10, 10, 5, 5))))

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    entries, errors, skipped = [], [], []
    with Progress(disable=not progress, transient=True) as bar:
        task = bar.add_task("quantize", total=len(schemes) + (2 if coreml else 0))
        for s in schemes:
            bar.update(task, description=f"convert {s}")
            try:
                entry = _one_variant(s, qat_loaded if SCHEMES[s][0] == "qat" else loaded, out, rep,
                                     cfg, check_images, images, where, strict_parity, converter_factory, errors)
            except QuantizeError as exc:
                if s not in OPTIONAL_SCHEMES:
                    raise
                log.warning("%s failed, skipped (an experimental scheme): %s", s, exc)
                skipped.append({"name": s, "stage": exc.stage, "error": str(exc)})
                (out / f"{s}.tflite").unlink(missing_ok=True)
                bar.advance(task)
                continue
            entries.append(entry)
            bar.advance(task)
        coreml_entries = []
        if coreml:
            from components.quantize.coreml import convert_coreml

            bar.update(task, description="Core ML")
            coreml_entries = convert_coreml(loaded, out)
            bar.advance(task, 2)

    labels = loaded.labels or [f"class_{i + 1}" for i in range(loaded.num_classes)]
    (out / "labels.txt").write_text("\n".join(labels) + "\n")
    result = VariantsResult(out, entries, coreml_entries, errors, skipped)
    tmp = out / "variants.json.tmp"
    tmp.write_text(json.dumps({**result.to_dict(), "model": {
        "input_size": list(loaded.input_size), "num_classes": loaded.num_classes,
        "anchors": len(loaded.anchors), "float_model_dir": str(float_model_dir),
        "qat_model_dir": str(qat_model_dir) if qat_model_dir else None},
        "parity_tolerances": PARITY_TOLERANCES}, indent=1))
    tmp.replace(out / "variants.json")
    return result


def _one_variant(s: str, source: LoadedModel | None, out: Path, rep: Callable | None,
                 cfg: PostprocessConfig, check_images: list[np.ndarray], images: list[np.ndarray],
                 where: str, strict_parity: bool, converter_factory: ConverterFactory,
                 errors: list[str]) -> dict[str, Any]:
    """Convert, validate and report one variant; returns its variants.json entry."""
    from components.quantize.op_report import write_op_report

    if source is None:
        raise QuantizeError("validate-before", s, "no source model")
    blob = convert_variant(source, s, representative=rep, postprocess=cfg,
                           converter_factory=converter_factory)
    path = out / f"{s}.tflite"
    path.write_bytes(blob)
    spec = inspect_tflite(path, s)
    want = SCHEMES[s][1]
    if spec["input"]["dtype"] != want:
        raise QuantizeError("validate-after", s, f"input dtype {spec['input']['dtype']}, expected {want}")
    if want == "uint8" and not (abs((spec["input"]["scale"] or 0) - 1.0) < 1e-6 and spec["input"]["zero_point"] == 0):
        log.warning("%s: uint8 input has scale %s, zero point %s (not raw pixels: were the input "
                    "ranges calibrated?); clients must quantize pixels with them", s,
                    spec["input"]["scale"], spec["input"]["zero_point"])
    results = run_detection(path, check_images, spec, variant=s)
    check_outputs(results, s, source.num_classes, cfg.max_detections)
    par = parity(source, results, check_images, s)
    par["images_from"] = where if images else "seeded noise images (no calibration data given)"
    if not par["passed"]:
        msg = f"parity outside tolerance: {par['failed']}"
        if strict_parity:
            raise QuantizeError("validate-after", s, msg)
        log.warning("%s: %s", s, msg)
        errors.append(f"{s}: {msg}")
    report = write_op_report(path, out, s)
    if s in INT8_SCHEMES and not report["int8_compute"]:
        log.warning("%s: float ops outside post-processing: %s", s,
                    report["float_ops_outside_postprocess"])
    log.info("%s: %d bytes, parity %s", s, path.stat().st_size,
             {k: par[k] for k in ("score_max_abs", "box_nmae")})
    return {
        "name": s, "source": SCHEMES[s][0], "scheme": s, "file": path.name,
        "size_bytes": path.stat().st_size, "input": {k: v for k, v in spec["input"].items() if k != "index"},
        "outputs": {k: {"index": v["index"], "name": v["name"], "position": v["position"]}
                    for k, v in spec["outputs"].items()},
        "op_report": f"{s}.ops.json",
        "op_summary": {"ops_total": report["ops_total"], "int8_compute": report["int8_compute"],
                       "integer_compute": report["integer_compute"],
                       "float_ops_outside_postprocess": len(report["float_ops_outside_postprocess"])},
        "parity": par, "postprocess": cfg.to_dict(),
        "calibration": {"images": len(images), "from": where} if SCHEMES[s][2] or (s == "qat_int8" and images) else None,
    }




def _noise_images(size: Sequence[int], n: int) -> list[np.ndarray]:
    rng = np.random.default_rng(1234)
    return [rng.integers(0, 256, size=(int(size[0]), int(size[1]), 3), dtype=np.uint8) for _ in range(max(1, n))]


def read_variants(variants_dir: str | os.PathLike) -> dict[str, Any]:
    """variants.json of a quantize output dir (FileNotFoundError / ValueError when bad)."""
    path = Path(variants_dir) / "variants.json"
    if not path.is_file():
        raise FileNotFoundError(f"variants.json not found in {variants_dir}")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON: {exc}") from exc


__all__ = ["SCHEMES", "DEFAULT_SCHEMES", "PARITY_TOLERANCES", "QuantizeError", "LoadedModel",
           "VariantsResult", "load_model_artifact", "load_calibration_images", "make_converter",
           "convert_variant", "inspect_tflite", "run_detection", "parity", "quantize", "read_variants"]


def size_metrics(result: VariantsResult) -> dict[str, float]:
    """Flat metrics for KFP: ``<variant>_bytes`` and ``<variant>_size_vs_fp32``."""
    sizes = result.sizes()
    out: dict[str, float] = {f"{k}_bytes": float(v) for k, v in sizes.items()}
    if sizes.get("fp32"):
        out.update({f"{k}_size_vs_fp32": round(v / sizes["fp32"], 4) for k, v in sizes.items()})
    return out
