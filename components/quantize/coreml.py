"""Core ML packages of the detector (coremltools 9, ML Program, for the Apple Neural Engine).

The tf_keras detector is wrapped so the package outputs what an iOS client needs: ``boxes``
[1, A, 4] decoded (ymin, xmin, ymax, xmax, normalized, with the artifact's anchors and box
scales) and ``scores`` [1, A, K+1] (sigmoid, column 0 = background). NMS is left to the app
(Vision / a Core ML pipeline), because Core ML's NMS layer is a NeuralNetwork-only layer. The
input ``image`` is an RGB image type of raw 0..255 pixels (the model normalizes inside).

Two packages: ``coreml_fp16`` (``compute_precision=FLOAT16``) and ``coreml_int8w`` (the fp16
program with its weights linearly quantized to int8 by
``coremltools.optimize.coreml.linear_quantize_weights``). On Linux coremltools converts and
saves but cannot run predictions, so validation re-loads the spec
(``MLModel(path, skip_model_load=True)``) and checks inputs, outputs and weight dtypes.
"""
from __future__ import annotations

import logging
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)
COREML_VARIANTS = ("coreml_fp16", "coreml_int8w")


class CoreMLError(ValueError):
    """A failed Core ML conversion or validation, naming the package."""


def decoded_model(model: Any, anchors: np.ndarray, box_scales: Any) -> Any:
    """A tf_keras model: image → (boxes [1, A, 4] ymin/xmin/ymax/xmax, scores [1, A, K+1])."""
    from edgeship.base.tfcompat import keras, tf

    a = tf.constant(np.asarray(anchors, np.float32))
    sy, sx, sh, sw = (float(s) for s in box_scales)

    def decode(enc):
        yc = enc[..., 0] / sy * a[:, 2] + a[:, 0]
        xc = enc[..., 1] / sx * a[:, 3] + a[:, 1]
        h = tf.exp(enc[..., 2] / sh) * a[:, 2]
        w = tf.exp(enc[..., 3] / sw) * a[:, 3]
        return tf.stack([yc - h / 2, xc - w / 2, yc + h / 2, xc + w / 2], axis=-1)

    box, logits = model.outputs[0], model.outputs[1]
    boxes = keras.layers.Lambda(decode, name="boxes")(box)
    scores = keras.layers.Activation("sigmoid", name="scores")(logits)
    return keras.Model(model.inputs, [boxes, scores], name="detector_decoded")


def _save_zip(mlmodel: Any, out_dir: Path, name: str) -> Path:
    with tempfile.TemporaryDirectory() as tmp:
        pkg = Path(tmp) / f"{name}.mlpackage"
        mlmodel.save(str(pkg))
        archive = shutil.make_archive(str(Path(tmp) / name), "zip", root_dir=tmp, base_dir=pkg.name)
        target = out_dir / f"{name}.mlpackage.zip"
        shutil.move(archive, target)
    return target


def validate_package(zip_path: str | Path, *, num_anchors: int, num_classes: int,
                     input_size: Any, weights: str) -> dict[str, Any]:
    """Unzip, re-load the spec (no prediction on Linux) and check inputs/outputs/weight dtypes.

    ``weights`` is "fp16" or "int8". Returns a summary dict; raises CoreMLError when wrong.
    """
    import coremltools as ct

    zip_path = Path(zip_path)
    name = zip_path.name.removesuffix(".mlpackage.zip")
    with tempfile.TemporaryDirectory() as tmp:
        try:
            shutil.unpack_archive(str(zip_path), tmp, "zip")
            pkg = Path(tmp) / f"{name}.mlpackage"
            mlmodel = ct.models.MLModel(str(pkg), skip_model_load=True)
        except Exception as exc:
            raise CoreMLError(f"Core ML [validate-after] {name}: cannot re-load {zip_path}: {exc}") from exc
        spec = mlmodel.get_spec()
        ins = {i.name: i for i in spec.description.input}
        outs = {o.name: [int(d) for d in o.type.multiArrayType.shape] for o in spec.description.output}
        h, w = (int(v) for v in input_size)
        if list(ins) != ["image"] or ins["image"].type.WhichOneof("Type") != "imageType":
            raise CoreMLError(f"Core ML [validate-after] {name}: expected one image input 'image', got {list(ins)}")
        img = ins["image"].type.imageType
        if (int(img.height), int(img.width)) != (h, w):
            raise CoreMLError(f"Core ML [validate-after] {name}: input {img.height}x{img.width}, expected {h}x{w}")
        want = {"boxes": [1, num_anchors, 4], "scores": [1, num_anchors, num_classes + 1]}
        if outs != want:
            raise CoreMLError(f"Core ML [validate-after] {name}: outputs {outs}, expected {want}")
        dtypes = _weight_dtypes(spec)
    big = {k: v for k, v in dtypes.items() if k in ("fp16", "fp32", "int8", "uint8")}
    if weights == "int8" and not (big.get("int8", 0) + big.get("uint8", 0)):
        raise CoreMLError(f"Core ML [validate-after] {name}: no int8 weights after quantization ({dtypes})")
    if weights == "fp16" and big.get("fp32", 0) > big.get("fp16", 0):
        raise CoreMLError(f"Core ML [validate-after] {name}: weights mostly fp32, expected fp16 ({dtypes})")
    return {"inputs": {"image": [1, h, w, 3]}, "outputs": outs, "weight_dtypes": dtypes,
            "spec_version": int(spec.specificationVersion)}


def _weight_dtypes(spec: Any) -> dict[str, int]:
    """Count the elements of the ML Program's const tensors by dtype (the weights)."""
    from coremltools.proto import MIL_pb2

    counts: dict[str, int] = {}
    names = {v: k.lower() for k, v in MIL_pb2.DataType.items()}
    for fn in spec.mlProgram.functions.values():
        for block in fn.block_specializations.values():
            for op in block.operations:
                for out in op.outputs:
                    tt = out.type.tensorType
                    if op.type not in ("const", "constexpr_affine_dequantize", "constexpr_blockwise_shift_scale"):
                        continue
                    n = int(np.prod([d.constant.size for d in tt.dimensions])) if tt.dimensions else 1
                    if n < 16:
                        continue
                    if op.type != "const":  # the quantized storage: count its data input's dtype
                        for arg in op.attributes.values():
                            dt = names.get(arg.type.tensorType.dataType, "?")
                            if dt in ("int8", "uint8"):
                                counts[dt] = counts.get(dt, 0) + n
                                break
                        continue
                    dt = names.get(tt.dataType, "?")
                    counts[dt] = counts.get(dt, 0) + n
    return counts


def convert_coreml(loaded: Any, out_dir: str | Path) -> list[dict[str, Any]]:
    """Write ``coreml_fp16.mlpackage.zip`` and ``coreml_int8w.mlpackage.zip`` for ``loaded``
    (a :class:`components.quantize.core.LoadedModel` of the float model); validate each.

    Returns the variants.json ``coreml`` entries. Raises CoreMLError naming the stage.
    """
    import coremltools as ct
    import coremltools.optimize.coreml as cto

    out_dir = Path(out_dir)
    h, w = loaded.input_size
    box_scales = loaded.config.get("box_scales", (10, 10, 5, 5))
    try:
        wrapped = decoded_model(loaded.model, loaded.anchors, box_scales)
        mlmodel = ct.convert(
            wrapped, source="tensorflow", convert_to="mlprogram",
            compute_precision=ct.precision.FLOAT16, minimum_deployment_target=ct.target.iOS16,
            inputs=[ct.ImageType(name="image", shape=(1, h, w, 3), scale=1.0, bias=[0.0, 0.0, 0.0],
                                 color_layout=ct.colorlayout.RGB)])
        # TF graph output names (Identity, Identity_1) → the contract's names, in model order
        spec = mlmodel.get_spec()
        for old, new in zip([o.name for o in spec.description.output], ("boxes", "scores")):
            if old != new:
                ct.utils.rename_feature(spec, old, new)
        mlmodel = ct.models.MLModel(spec, weights_dir=mlmodel.weights_dir, skip_model_load=True)
    except Exception as exc:
        raise CoreMLError(f"Core ML [convert] coreml_fp16: {type(exc).__name__}: {str(exc)[:600]}") from exc
    labels = loaded.labels or [f"class_{i + 1}" for i in range(loaded.num_classes)]
    mlmodel.short_description = "SSD-style MobileNetV2 detector (edgeship): decoded boxes and sigmoid scores; NMS in the app"
    mlmodel.user_defined_metadata["labels"] = ",".join(labels)
    mlmodel.user_defined_metadata["outputs"] = ("boxes [1,A,4] ymin,xmin,ymax,xmax normalized; "
                                                "scores [1,A,K+1] sigmoid, column 0 = background")
    try:
        config = cto.OptimizationConfig(global_config=cto.OpLinearQuantizerConfig(
            mode="linear_symmetric", dtype="int8", weight_threshold=512))
        int8w = cto.linear_quantize_weights(mlmodel, config=config)
    except Exception as exc:
        raise CoreMLError(f"Core ML [convert] coreml_int8w: {type(exc).__name__}: {str(exc)[:600]}") from exc

    entries = []
    for name, model, weights in (("coreml_fp16", mlmodel, "fp16"), ("coreml_int8w", int8w, "int8")):
        path = _save_zip(model, out_dir, name)
        summary = validate_package(path, num_anchors=len(loaded.anchors), num_classes=loaded.num_classes,
                                   input_size=(h, w), weights=weights)
        entries.append({"name": name, "file": path.name, "size_bytes": path.stat().st_size,
                        "precision": "float16 compute" + (", int8 weights" if weights == "int8" else ""),
                        "input": {"name": "image", "type": "image RGB", "shape": [1, h, w, 3],
                                  "normalization": "raw RGB 0..255"},
                        "outputs": {"boxes": {"name": "boxes", "shape": summary["outputs"]["boxes"],
                                              "layout": "ymin, xmin, ymax, xmax (normalized, decoded)"},
                                    "scores": {"name": "scores", "shape": summary["outputs"]["scores"],
                                               "layout": "sigmoid, column 0 = background"}},
                        "postprocess": "none (decode inside; NMS in the app)",
                        "weight_dtypes": summary["weight_dtypes"]})
        log.info("%s: %d bytes, weights %s", name, path.stat().st_size, summary["weight_dtypes"])
    return entries
