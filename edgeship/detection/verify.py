"""Checks of a converted .tflite: it loads in LiteRT (XNNPACK), its inputs and the four detection
outputs are where the graph says, the outputs are well-formed, and its raw head outputs agree with
the source Keras model within the scheme's tolerance (``parity``)."""
from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from edgeship.detection.convert import (
    BOX_STD_FLOOR,
    PARITY_TOLERANCES,
    SCHEMES,
    LoadedModel,
    QuantizeError,
)
from edgeship.detection.postprocess import OUTPUT_KEYS, POSTPROCESS_OP


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
    from edgeship.detection.op_report import output_map

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
    from edgeship.detection.op_report import _interpreter

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
