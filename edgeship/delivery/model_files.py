"""Reading a standalone model before it is published: a .tflite (is it a TFLite flatbuffer, does
LiteRT load it, what are its inputs and outputs, do they fit the declared task), a Core ML package
(a folder ``NAME.mlpackage`` or its zip, with its ``Manifest.json``) and a labels file (does its
count match the classes the model outputs).

Everything here raises :class:`ModelFileError` (a ValueError) naming the file and what is wrong;
nothing here touches the network. Used by ``edgeship publish PATH`` and ``edgeship import-firebase``
(components/publish/any_model.py), before anything is uploaded. See docs/delivery.md.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
import shutil
import zipfile
from pathlib import Path
from typing import Any

from edgeship.contracts import manifest as mf

TFLITE_IDENTIFIER = b"TFL3"          # the flatbuffer file identifier, bytes 4..8 of every .tflite
DETECTION_KEYS = ("boxes", "classes", "scores", "count")
COREML_MANIFEST = "Manifest.json"
UPLOAD_NAME_RE = re.compile(r"^(?!.*\.\.)[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")   # the schema's file path
MAX_LABELS = 10000
log = logging.getLogger(__name__)


class ModelFileError(ValueError):
    """A model, package or labels file that cannot be published; the message says why."""


@dataclasses.dataclass
class TfliteInfo:
    """What LiteRT reports about a .tflite: its input and output tensors (in interpreter order),
    the custom/builtin op names, and the signature's output names by tensor index."""
    path: Path
    inputs: list[dict]
    outputs: list[dict]
    ops: set[str]
    signature_outputs: dict[int, str]
    postprocess_outputs: list[int]
    quantization: str


# ----------------------------------------------------------------------------------- .tflite

def _dtype_name(dtype: Any) -> str:
    import numpy as np

    name = np.dtype(dtype).name
    if name in ("object", "bytes", "bytes_", "str") or name.startswith(("bytes", "str")):
        return "string"
    return name


def _tensor(detail: dict, position: int) -> dict:
    scale, zero_point = (detail.get("quantization") or (0.0, 0))[:2]
    quantized = bool(scale)
    signature = detail.get("shape_signature")
    shape = [int(d) for d in (signature if signature is not None and len(signature) else detail["shape"])]
    return {"index": int(detail["index"]), "position": position, "name": str(detail.get("name", ""))[:256],
            "shape": shape, "dtype": _dtype_name(detail["dtype"]),
            "scale": float(scale) if quantized else None,
            "zero_point": int(zero_point) if quantized else None}


def _quantization(interp: Any) -> str:
    """A one-word summary of the weights: int8 (quantized tensors), float16 or fp32."""
    seen = set()
    for t in interp.get_tensor_details():
        name = _dtype_name(t["dtype"])
        if name in ("int8", "uint8") and (t.get("quantization") or (0.0, 0))[0]:
            return "int8"
        seen.add(name)
    return "float16" if "float16" in seen else "fp32"


def check_tflite_bytes(head: bytes, path: Path) -> None:
    """ModelFileError unless ``head`` (the first bytes of ``path``) is a TFLite flatbuffer."""
    if len(head) < 8 or head[4:8] != TFLITE_IDENTIFIER:
        raise ModelFileError(f"{path} is not a TFLite model: a .tflite is a flatbuffer whose bytes 4-8 are "
                             f"{TFLITE_IDENTIFIER.decode()!r}, this file has {head[4:8]!r}")


def inspect_tflite(path: str | os.PathLike) -> TfliteInfo:
    """Check that ``path`` is a TFLite flatbuffer LiteRT loads and allocates, and read its tensors.

    Raises ModelFileError naming the file (missing, not a flatbuffer, LiteRT refuses it)."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"model file not found: {path}")
    with open(path, "rb") as fh:
        check_tflite_bytes(fh.read(8), path)
    try:  # without the default (XNNPACK) delegate, so the op list shows the model's own ops
        interp = Interpreter(model_path=str(path), num_threads=1,
                             experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
        interp.allocate_tensors()
    except Exception as exc:  # any load failure means clients could not run it either
        raise ModelFileError(f"LiteRT cannot load {path}: {str(exc)[:300]}") from exc
    inputs = [_tensor(d, i) for i, d in enumerate(interp.get_input_details())]
    outputs = [_tensor(d, i) for i, d in enumerate(interp.get_output_details())]
    if not inputs or not outputs:
        raise ModelFileError(f"{path} has {len(inputs)} input(s) and {len(outputs)} output(s): "
                             "a model needs at least one of each")
    ops, post = set(), []
    try:
        for op in interp._get_ops_details():  # LiteRT's only op listing (a private method)
            ops.add(str(op.get("op_name", "")))
            if op.get("op_name") == "TFLite_Detection_PostProcess":
                post = [int(i) for i in op.get("outputs", [])]
    except Exception as exc:  # noqa: BLE001 - the op listing is a hint only: names and shapes still map outputs
        log.debug("cannot list the ops of %s: %s", path, exc)
    return TfliteInfo(path, inputs, outputs, ops, _signature_outputs(interp), post, _quantization(interp))


def _signature_outputs(interp: Any) -> dict[int, str]:
    """Tensor index -> output name in the model's (first) signature, when it has one."""
    try:
        signatures = interp.get_signature_list()
        if not signatures:
            return {}
        key = next(iter(signatures))
        details = interp.get_signature_runner(key).get_output_details()
        return {int(d["index"]): str(name) for name, d in details.items()}
    except Exception:  # noqa: BLE001 - signatures are optional
        return {}


# ------------------------------------------------------------------------------ task checks

def _named_output(name: str) -> str | None:
    low = name.lower()
    for key, words in (("boxes", ("box",)), ("classes", ("class",)), ("scores", ("score",)),
                       ("count", ("count", "num_detections"))):
        if any(w in low for w in words):
            return key
    return None


def detection_outputs(info: TfliteInfo) -> dict[str, dict]:
    """boxes/classes/scores/count -> {index, name, position} of a detector .tflite: the
    TFLite_Detection_PostProcess op's output order (boxes, classes, scores, count), else its
    signature's (or tensors') output names, else by shape ([1, N, 4] boxes, [1] count) and name.
    ModelFileError when the outputs are not those of a detector."""
    by_index = {t["index"]: t for t in info.outputs}
    found: dict[str, dict] = {}
    if len(info.postprocess_outputs) == 4 and all(i in by_index for i in info.postprocess_outputs):
        found = {k: by_index[i] for k, i in zip(DETECTION_KEYS, info.postprocess_outputs)}
    for t in info.outputs if len(found) != 4 else []:
        key = _named_output(info.signature_outputs.get(t["index"], "")) or _named_output(t["name"])
        if key and key not in found:
            found[key] = t
    if len(found) != 4 and len(info.outputs) == 4:
        boxes = [t for t in info.outputs if len(t["shape"]) == 3 and t["shape"][-1] == 4]
        count = [t for t in info.outputs if len(t["shape"]) <= 1]
        if len(boxes) == 1 and len(count) == 1:
            found.setdefault("boxes", boxes[0])
            found.setdefault("count", count[0])
    shapes = {t["name"]: t["shape"] for t in info.outputs}
    if len(found) != 4 or len({t["index"] for t in found.values()}) != 4:
        raise ModelFileError(
            f"{info.path}: --task detector, but its outputs {shapes} are not a detector's boxes, classes, "
            "scores and count (TFLite_Detection_PostProcess outputs, or outputs named so)")
    if len(found["boxes"]["shape"]) != 3 or found["boxes"]["shape"][-1] != 4:
        raise ModelFileError(f"{info.path}: --task detector, but its boxes output {found['boxes']['name']!r} "
                             f"has shape {found['boxes']['shape']}, not [1, N, 4]")
    return {k: {"index": found[k]["index"], "name": found[k]["name"], "position": found[k]["position"]}
            for k in DETECTION_KEYS}


def class_count(info: TfliteInfo, task: str) -> int | None:
    """The number of classes the model's first output holds, for the task (None: no such count).

    classifier: the first output is [K] or [1, K] scores -> K. segmenter: the first output is a
    mask [1, H, W] (class ids: None) or [1, H, W, C] scores -> C. ModelFileError when the first
    output's shape contradicts the task."""
    first = info.outputs[0]
    shape = first["shape"]
    if task == "classifier":
        if len(shape) == 1 or (len(shape) == 2 and shape[0] in (1, -1)):
            return shape[-1] if shape[-1] > 0 else None
        raise ModelFileError(f"{info.path}: --task classifier, but its first output {first['name']!r} has "
                             f"shape {shape}; a classifier outputs [K] or [1, K] class scores "
                             f"(outputs: {[t['shape'] for t in info.outputs]})")
    if task == "segmenter":
        if len(shape) == 4 and shape[0] in (1, -1):
            return shape[-1] if shape[-1] > 0 else None
        if len(shape) == 3 and shape[0] in (1, -1):
            return None
        raise ModelFileError(f"{info.path}: --task segmenter, but its first output {first['name']!r} has "
                             f"shape {shape}; a segmenter outputs a [1, H, W] mask or [1, H, W, C] scores")
    return None


def check_labels_fit(info: TfliteInfo, task: str, labels: list[str], labels_path: Path | None) -> None:
    """ModelFileError when the labels' count is not the classes the model outputs (classifier,
    segmenter with per-class scores), or when a detector has no labels."""
    if task == "detector":
        if not labels:
            raise ModelFileError(f"{info.path}: a detector needs --labels (its class names)")
        return
    want = class_count(info, task)
    if labels and want is not None and len(labels) != want:
        raise ModelFileError(f"labels file {labels_path} has {len(labels)} labels, but {info.path}'s output "
                             f"{info.outputs[0]['name']!r} (shape {info.outputs[0]['shape']}) has {want} classes")


def io_spec(info: TfliteInfo, task: str) -> dict[str, Any]:
    """The manifest's ``input`` (the first input tensor) and ``outputs`` (detectors: the detection
    mapping; other tasks: every output tensor) for ``task``; ModelFileError on a contradiction."""
    mf.check_task(task, "--task")
    first = info.inputs[0]
    spec_input = {"name": first["name"], "shape": first["shape"], "dtype": first["dtype"],
                  "scale": first["scale"], "zero_point": first["zero_point"], "normalization": ""}
    if task == "detector":
        if first["dtype"] not in ("float32", "float16", "uint8", "int8", "int16"):
            raise ModelFileError(f"{info.path}: a detector's input must be float32/float16/uint8/int8/int16, "
                                 f"{first['name']!r} is {first['dtype']}")
        return {"input": spec_input, "outputs": detection_outputs(info)}
    class_count(info, task)
    if len(info.outputs) > 64:
        raise ModelFileError(f"{info.path} has {len(info.outputs)} outputs; a manifest lists at most 64")
    return {"input": spec_input, "outputs": [dict(t) for t in info.outputs]}


# ------------------------------------------------------------------------------ labels

def read_labels(path: str | os.PathLike) -> list[str]:
    """The non-empty, stripped lines of a UTF-8 labels file (one class name per line)."""
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"labels file not found: {path}")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ModelFileError(f"labels file {path} is not UTF-8 text: {exc}") from exc
    labels = [line.strip() for line in text.splitlines() if line.strip()]
    if not labels:
        raise ModelFileError(f"labels file {path} is empty")
    if len(labels) > MAX_LABELS:
        raise ModelFileError(f"labels file {path} has {len(labels)} labels, at most {MAX_LABELS}")
    long = [label for label in labels if len(label) > 256]
    if long:
        raise ModelFileError(f"labels file {path}: label {long[0][:40]!r}… is over 256 characters")
    return labels


# ------------------------------------------------------------------------------ Core ML

def is_coreml_path(path: str | os.PathLike) -> bool:
    name = Path(path).name.lower()
    return name.endswith((".mlpackage", ".mlpackage.zip"))


def coreml_package(path: str | os.PathLike, work_dir: str | os.PathLike) -> Path:
    """A Core ML package ready to upload: ``NAME.mlpackage.zip`` holding ``NAME.mlpackage/``.

    ``path`` is the package folder (zipped into ``work_dir``) or its zip (checked: a zip, one
    top-level ``*.mlpackage`` folder with a ``Manifest.json`` that is a JSON object, no entry
    outside it). Raises ModelFileError naming what is wrong."""
    path = Path(path)
    if path.is_dir():
        if not path.name.endswith(".mlpackage"):
            raise ModelFileError(f"{path} is a folder but not a Core ML package (NAME.mlpackage)")
        if not (path / COREML_MANIFEST).is_file():
            raise ModelFileError(f"Core ML package {path} has no {COREML_MANIFEST}: not an .mlpackage")
        _check_upload_name(path.name + ".zip", path)
        archive = shutil.make_archive(str(Path(work_dir) / path.name), "zip", root_dir=path.parent,
                                      base_dir=path.name)
        path = Path(archive)
    if not path.is_file():
        raise ModelFileError(f"Core ML package not found: {path}")
    _check_coreml_zip(path)
    return path


def _check_upload_name(name: str, path: Path) -> None:
    if not UPLOAD_NAME_RE.match(name) or name == "manifest.json":
        raise ModelFileError(f"{path}: the name {name!r} cannot be a published file name "
                             "(use 1-128 of A-Z a-z 0-9 . _ -); rename it")


def _check_coreml_zip(path: Path) -> None:
    _check_upload_name(path.name, path)
    if not zipfile.is_zipfile(path):
        raise ModelFileError(f"{path} is not a zip: a Core ML package is published as NAME.mlpackage.zip")
    with zipfile.ZipFile(path) as zf:
        names = [n for n in zf.namelist() if n and not n.endswith("/")]
        bad = [n for n in zf.namelist() if n.startswith("/") or ".." in n.split("/") or "\\" in n]
        if bad:
            raise ModelFileError(f"Core ML zip {path} has entries outside its folder: {bad[:3]}")
        tops = {n.split("/", 1)[0] for n in zf.namelist() if n}
        if len(tops) != 1 or not next(iter(tops)).endswith(".mlpackage"):
            raise ModelFileError(f"Core ML zip {path} must hold exactly one NAME.mlpackage folder, "
                                 f"it holds {sorted(tops)[:5]}")
        top = next(iter(tops))
        manifest_name = f"{top}/{COREML_MANIFEST}"
        if manifest_name not in names:
            raise ModelFileError(f"Core ML zip {path} has no {manifest_name}: not an .mlpackage")
        try:
            data = json.loads(zf.read(manifest_name).decode("utf-8"))
        except (ValueError, UnicodeDecodeError) as exc:
            raise ModelFileError(f"Core ML zip {path}: {manifest_name} is not JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise ModelFileError(f"Core ML zip {path}: {manifest_name} is not a JSON object")
