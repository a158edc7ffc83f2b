"""TFLite Model Metadata for a detector .tflite: what MediaPipe Tasks' ObjectDetector and the TFLite
Task Library read to run it (both refuse a detector without it).

``add_metadata`` writes, into the model's ``TFLITE_METADATA`` buffer (flatbuffer id ``M001``):
model name/version/description/author, the input image (RGB, raw pixels 0..255, normalization
mean 0 / std 1 since the model normalizes inside, stats 0..255) and the four outputs of the fused
``TFLite_Detection_PostProcess`` op in the graph's output order, named as MediaPipe looks them up:
``location`` (BoundingBoxProperties BOUNDARIES, RATIO, index [1, 0, 3, 2] = the op's
ymin, xmin, ymax, xmax), ``category`` (the label file as a TENSOR_VALUE_LABELS associated file;
line i = the op's 0-based class i), ``score`` and ``number of detections``, plus the output tensor
group ``detection_result``, as the reference writers (mediapipe's
``metadata_writers.object_detector``) lay them out. The label file itself is appended to the
model as an uncompressed zip, where MediaPipe and the Task Library read associated files from.

The flatbuffer classes are not written here: they are the generated schema modules in the
``mediapipe`` wheel (``mediapipe/tasks/metadata/{metadata_schema,schema}_py_generated.py``,
TFLite's ``schema_py_generated`` there is byte-identical to TensorFlow's). They are loaded from the
installed wheel's files, not through ``import mediapipe``: the package's ``__init__`` pulls the
Tasks vision API (opencv, the native library), which a publishing step does not need. mediapipe is
installed with ``pip install --no-deps`` (its absl-py~=2.3 clashes with tensorflow-model-
optimization's absl-py~=1.2) and its high-level writers cannot be imported from the py3-none
wheels (they need ``_pywrap_metadata_version``, not shipped), so the two pieces of them used here
are ported: the populate step (MetadataPopulator: metadata buffer into the model, associated files
zipped onto its end) and the minimum-parser-version rules (``metadata_version.cc``), both from
MediaPipe / tflite-support, Copyright The MediaPipe Authors and The TensorFlow Authors, Apache-2.0.
"""
from __future__ import annotations

import functools
import importlib.util
import io
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from edgeship.detection.postprocess import OUTPUT_KEYS, POSTPROCESS_OP

METADATA_FIELD_NAME = "TFLITE_METADATA"
METADATA_FILE_IDENTIFIER = b"M001"
TFLITE_FILE_IDENTIFIER = b"TFL3"
LABEL_FILE = "labels.txt"
# MediaPipe's ObjectDetector finds the four outputs by these metadata names (object_detector_graph.cc)
OUTPUT_NAMES = {"boxes": "location", "classes": "category", "scores": "score",
                "count": "number of detections"}
OUTPUT_GROUP = "detection_result"
BOX_INDEX = (1, 0, 3, 2)  # positions of (left, top, right, bottom) in the op's (ymin, xmin, ymax, xmax)
MEDIAPIPE_PIN = "mediapipe==1.2.3"
_SCHEMA_FILES = {"metadata": "metadata_schema_py_generated.py", "tflite": "schema_py_generated.py"}


class MetadataError(ValueError):
    """The model, its specs or the labels do not allow (or do not carry) valid metadata."""


@functools.cache
def schema_modules() -> tuple[ModuleType, ModuleType]:
    """(metadata schema, TFLite schema) generated flatbuffer modules from the installed mediapipe."""
    spec = importlib.util.find_spec("mediapipe")  # a top-level spec: mediapipe is not imported
    roots = list(spec.submodule_search_locations or []) if spec else []
    paths = {k: [Path(r) / "tasks" / "metadata" / f for r in roots] for k, f in _SCHEMA_FILES.items()}
    found = {k: next((p for p in ps if p.is_file()), None) for k, ps in paths.items()}
    if not all(found.values()):
        raise ImportError(
            "TFLite Model Metadata needs the generated flatbuffer schema modules shipped in the "
            f"mediapipe wheel, and they are not installed: pip install --no-deps {MEDIAPIPE_PIN} "
            "(no deps: its absl-py~=2.3 pin clashes with tensorflow-model-optimization's; "
            "scripts/setup.sh and the Dockerfiles do this)")
    modules = []
    for key in ("metadata", "tflite"):
        mspec = importlib.util.spec_from_file_location(f"edgeship_mediapipe_{key}_schema", found[key])
        module = importlib.util.module_from_spec(mspec)  # type: ignore[arg-type]
        mspec.loader.exec_module(module)  # type: ignore[union-attr]
        modules.append(module)
    return modules[0], modules[1]


# ------------------------------------------------------------------------- reading the graph

def _text(value: Any) -> str:
    return value.decode("utf-8") if isinstance(value, (bytes, bytearray)) else str(value or "")


def _parse_model(tflite_bytes: bytes) -> Any:
    _, tfl = schema_modules()
    buf = bytes(tflite_bytes)
    if len(buf) < 8 or buf[4:8] != TFLITE_FILE_IDENTIFIER:
        raise MetadataError("not a .tflite flatbuffer (file identifier TFL3 missing)")
    return tfl.ModelT.InitFromObj(tfl.Model.GetRootAs(buf, 0))


def _postprocess_op(model: Any) -> tuple[list[int], dict[str, Any]]:
    """The fused op's output tensor indices (boxes, classes, scores, count) and its attributes."""
    from flatbuffers import flexbuffers

    graph = model.subgraphs[0]
    for op in graph.operators or []:
        if _text(model.operatorCodes[op.opcodeIndex].customCode) == POSTPROCESS_OP:
            raw = op.customOptions
            attrs = flexbuffers.Loads(bytes(bytearray(raw))) if raw is not None and len(raw) else {}
            return [int(i) for i in op.outputs], attrs
    raise MetadataError(f"the model has no {POSTPROCESS_OP} op: not a detector with fused post-processing")


def _check_input(model: Any, input_spec: Mapping[str, Any]) -> tuple[Any, str]:
    graph = model.subgraphs[0]
    _, tfl = schema_modules()
    if len(graph.inputs) != 1:
        raise MetadataError(f"expected one image input, the model has {len(graph.inputs)}")
    tensor = graph.tensors[int(graph.inputs[0])]
    dtype = {tfl.TensorType.FLOAT32: "float32", tfl.TensorType.UINT8: "uint8"}.get(tensor.type)
    if dtype is None:
        raise MetadataError(f"input tensor type {tensor.type} is neither float32 nor uint8: MediaPipe "
                            "and the Task Library feed images only as uint8 or float32")
    want = input_spec.get("dtype")
    if want and str(want) != dtype:
        raise MetadataError(f"input spec says dtype {want} but the model takes {dtype}")
    shape = [int(v) for v in tensor.shape]
    if input_spec.get("shape") and [int(v) for v in input_spec["shape"]] != shape:
        raise MetadataError(f"input spec says shape {list(input_spec['shape'])} but the model takes {shape}")
    if len(shape) != 4 or shape[0] != 1 or shape[3] != 3:
        raise MetadataError(f"input shape {shape} is not [1, H, W, 3]")
    if dtype == "uint8":  # MediaPipe feeds raw pixel bytes: the input must mean raw pixels
        q = tensor.quantization
        scale = float(q.scale[0]) if q is not None and q.scale is not None and len(q.scale) else 1.0
        zero = int(q.zeroPoint[0]) if q is not None and q.zeroPoint is not None and len(q.zeroPoint) else 0
        spec_scale, spec_zero = input_spec.get("scale"), input_spec.get("zero_point")
        scale = float(spec_scale) if spec_scale is not None else scale
        zero = int(spec_zero) if spec_zero is not None else zero
        if abs(scale - 1.0) > 1e-6 or zero != 0:
            raise MetadataError(f"uint8 input with scale {scale}, zero point {zero}: clients feed raw "
                                "pixels, so it must be scale 1, zero point 0")
    return tensor, dtype


def _check_outputs(model: Any, outputs: Mapping[str, Any], op_outputs: list[int]) -> dict[int, str]:
    """Graph output tensor index → output key, from ``outputs``, checked against the fused op."""
    graph = model.subgraphs[0]
    graph_outputs = [int(i) for i in graph.outputs]
    if len(graph_outputs) != 4:
        raise MetadataError(f"expected the op's 4 outputs as the model's outputs, found {len(graph_outputs)}")
    missing = [k for k in OUTPUT_KEYS if k not in outputs]
    if missing:
        raise MetadataError(f"output map lacks {missing}; has {sorted(outputs)}")
    by_index: dict[int, str] = {}
    for pos, key in enumerate(OUTPUT_KEYS):
        entry = outputs[key]
        index = int(entry["index"] if isinstance(entry, Mapping) else entry)
        if index != op_outputs[pos]:
            raise MetadataError(f"output map sends {key!r} to tensor {index}, but the "
                                f"{POSTPROCESS_OP} op's {key} output is tensor {op_outputs[pos]}")
        name = entry.get("name") if isinstance(entry, Mapping) else None
        actual = _text(graph.tensors[index].name)
        if name and name != actual:
            raise MetadataError(f"output map names {key!r} {name!r}, the model's tensor {index} is {actual!r}")
        if index not in graph_outputs:
            raise MetadataError(f"{key!r} (tensor {index}) is not one of the model's outputs {graph_outputs}")
        by_index[index] = key
    return by_index


# ------------------------------------------------------------------------- building the metadata

def _tensor_md(md: ModuleType, name: str, description: str, props_type: int, props: Any, *,
               value_range: bool = True, files: list[Any] | None = None) -> Any:
    content = md.ContentT(contentPropertiesType=props_type, contentProperties=props,
                          range=md.ValueRangeT(min=2, max=2) if value_range else None)
    return md.TensorMetadataT(name=name, description=description, content=content,
                              stats=md.StatsT(), associatedFiles=files)


def _output_md(md: ModuleType, key: str, labels_file: str) -> Any:
    cp = md.ContentProperties
    if key == "boxes":
        props = md.BoundingBoxPropertiesT(index=list(BOX_INDEX), type=md.BoundingBoxType.BOUNDARIES,
                                          coordinateType=md.CoordinateType.RATIO)
        return _tensor_md(md, OUTPUT_NAMES[key], "The locations of the detected boxes: ymin, xmin, "
                          "ymax, xmax, normalized to 0..1.", cp.BoundingBoxProperties, props)
    if key == "classes":
        label = md.AssociatedFileT(name=labels_file, type=md.AssociatedFileType.TENSOR_VALUE_LABELS,
                                   description="Labels for categories that the model can recognize "
                                   "(line i = category i).")
        return _tensor_md(md, OUTPUT_NAMES[key], "The categories of the detected boxes (0-based "
                          "index into the label file).", cp.FeatureProperties, md.FeaturePropertiesT(),
                          files=[label])
    if key == "scores":
        return _tensor_md(md, OUTPUT_NAMES[key], "The scores of the detected boxes.",
                          cp.FeatureProperties, md.FeaturePropertiesT())
    return _tensor_md(md, OUTPUT_NAMES[key], "The number of the detected boxes.",
                      cp.FeatureProperties, md.FeaturePropertiesT(), value_range=False)


def _input_md(md: ModuleType, dtype: str, shape: list[int]) -> Any:
    norm = md.ProcessUnitT(optionsType=md.ProcessUnitOptions.NormalizationOptions,
                           options=md.NormalizationOptionsT(mean=[0.0], std=[1.0]))
    content = md.ContentT(contentPropertiesType=md.ContentProperties.ImageProperties,
                          contentProperties=md.ImagePropertiesT(colorSpace=md.ColorSpaceType.RGB))
    return md.TensorMetadataT(
        name="image", content=content, processUnits=[norm],
        description=f"RGB image, {shape[1]}x{shape[2]}, raw pixel values 0..255 as {dtype}; the "
                    "model normalizes inside (so normalization is mean 0, std 1).",
        stats=md.StatsT(min=[0.0], max=[255.0]))


def min_parser_version(meta: Any) -> str:
    """The oldest metadata parser that reads ``meta`` (a ModelMetadataT): a port of MediaPipe's
    ``metadata_version.cc`` rules (schema members added after 1.0.0)."""
    md, _ = schema_modules()
    version = (1, 0, 0)

    def bump(v: tuple[int, int, int]) -> None:
        nonlocal version
        version = max(version, v)

    def files(items: Sequence[Any] | None) -> None:
        for f in items or []:
            if f.type == md.AssociatedFileType.VOCABULARY:
                bump((1, 0, 1))
            if f.type == md.AssociatedFileType.SCANN_INDEX_FILE:
                bump((1, 4, 0))
            if f.version is not None:
                bump((1, 4, 1))

    def units(items: Sequence[Any] | None) -> None:
        opts = md.ProcessUnitOptions
        for u in items or []:
            if u.optionsType in (opts.BertTokenizerOptions, opts.SentencePieceTokenizerOptions):
                bump((1, 1, 0))
            if u.optionsType == opts.RegexTokenizerOptions:
                bump((1, 2, 1))

    for sg in meta.subgraphMetadata or []:
        for t in list(sg.inputTensorMetadata or []) + list(sg.outputTensorMetadata or []):
            files(t.associatedFiles)
            units(t.processUnits)
            if t.content is not None and t.content.contentPropertiesType == md.ContentProperties.AudioProperties:
                bump((1, 3, 0))
        files(sg.associatedFiles)
        for present, v in ((sg.inputProcessUnits, (1, 1, 0)), (sg.outputProcessUnits, (1, 1, 0)),
                           (sg.inputTensorGroups, (1, 2, 0)), (sg.outputTensorGroups, (1, 2, 0)),
                           (sg.customMetadata, (1, 5, 0))):
            if present is not None:
                bump(v)
        units(sg.inputProcessUnits)
        units(sg.outputProcessUnits)
    files(meta.associatedFiles)
    return ".".join(str(v) for v in version)


def _check_labels(labels: Sequence[str], attrs: Mapping[str, Any]) -> list[str]:
    labels = [str(x) for x in labels]
    if not labels or any(not x.strip() or "\n" in x or "\r" in x for x in labels):
        raise MetadataError(f"labels must be non-empty one-line names, got {labels!r}")
    num_classes = attrs.get("num_classes")
    if num_classes is not None and int(num_classes) != len(labels):
        raise MetadataError(f"{len(labels)} labels for a model with num_classes={int(num_classes)} "
                            f"in its {POSTPROCESS_OP} op")
    return labels


def has_detection_postprocess(tflite_bytes: bytes) -> bool:
    """Whether the bytes are a .tflite whose graph ends in the fused detection post-processing op
    (the detectors edgeship builds), i.e. what :func:`add_metadata` describes."""
    try:
        _postprocess_op(_parse_model(tflite_bytes))
    except Exception:  # noqa: BLE001 - MetadataError, or not a flatbuffer at all
        return False
    return True


def add_metadata(tflite_bytes: bytes, *, labels: Sequence[str], input_spec: Mapping[str, Any],
                 outputs: Mapping[str, Any], name: str, version: str, description: str,
                 author: str = "edgeship", license: str | None = None) -> bytes:
    """The .tflite with TFLite Model Metadata and the label file packed in (see the module doc).

    ``input_spec`` and ``outputs`` are the variant's ``input`` and ``outputs`` entries in
    variants.json (checked against the graph and its post-processing op); ``labels`` are the class
    names in class-id order (line i = the op's class i). Metadata already in the file is replaced.
    Raises MetadataError (a ValueError) for a model, spec or labels that do not fit.
    """
    import flatbuffers

    md, _ = schema_modules()
    model = _parse_model(tflite_bytes)
    op_outputs, attrs = _postprocess_op(model)
    labels = _check_labels(labels, attrs)
    tensor, dtype = _check_input(model, input_spec)
    key_of = _check_outputs(model, outputs, op_outputs)
    graph = model.subgraphs[0]
    outs = [_output_md(md, key_of[int(i)], LABEL_FILE) for i in graph.outputs]  # graph order
    subgraph = md.SubGraphMetadataT(
        name="detector", inputTensorMetadata=[_input_md(md, dtype, [int(v) for v in tensor.shape])],
        outputTensorMetadata=outs, outputTensorGroups=[md.TensorGroupT(
            name=OUTPUT_GROUP, tensorNames=[OUTPUT_NAMES[k] for k in ("boxes", "classes", "scores")])])
    meta = md.ModelMetadataT(name=name, version=version, description=description, author=author,
                             license=license, subgraphMetadata=[subgraph])
    meta.minParserVersion = min_parser_version(meta)
    builder = flatbuffers.Builder(0)
    builder.Finish(meta.Pack(builder), METADATA_FILE_IDENTIFIER)
    return _populate(model, bytes(builder.Output()), {LABEL_FILE: ("\n".join(labels) + "\n").encode()})


def _populate(model: Any, metadata_buf: bytes, files: Mapping[str, bytes]) -> bytes:
    """Put ``metadata_buf`` in the model's TFLITE_METADATA buffer (replacing one there), repack,
    and append ``files`` as a zip (MetadataPopulator's layout: associated files after the model)."""
    import flatbuffers

    _, tfl = schema_modules()
    data = np.frombuffer(metadata_buf, np.uint8)
    model.metadata = list(model.metadata or [])
    model.buffers = list(model.buffers or [])
    existing = [m for m in model.metadata if _text(m.name) == METADATA_FIELD_NAME]
    if existing:
        model.buffers[existing[0].buffer] = tfl.BufferT(data=data)
    else:
        model.buffers.append(tfl.BufferT(data=data))
        model.metadata.append(tfl.MetadataT(name=METADATA_FIELD_NAME, buffer=len(model.buffers) - 1))
    builder = flatbuffers.Builder(0)
    builder.Finish(model.Pack(builder), TFLITE_FILE_IDENTIFIER)
    out = io.BytesIO(bytes(builder.Output()))
    out.seek(0, io.SEEK_END)
    with zipfile.ZipFile(out, "a", compression=zipfile.ZIP_STORED) as zf:
        for fname, content in files.items():
            zf.writestr(fname, content)
    return out.getvalue()


# ------------------------------------------------------------------------- reading it back

def _enum_name(enum: type, value: Any) -> Any:
    names = {v: k for k, v in vars(enum).items() if not k.startswith("_") and isinstance(v, int)}
    return names.get(value, value)


def _tensor_dict(md: ModuleType, t: Any) -> dict[str, Any]:
    d: dict[str, Any] = {"name": _text(t.name), "description": _text(t.description)}
    c = t.content
    if c is not None:
        d["content"] = _enum_name(md.ContentProperties, c.contentPropertiesType)
        p = c.contentProperties
        if c.contentPropertiesType == md.ContentProperties.BoundingBoxProperties:
            d["bounding_box"] = {"index": [int(i) for i in p.index] if p.index is not None else None,
                                 "type": _enum_name(md.BoundingBoxType, p.type),
                                 "coordinate_type": _enum_name(md.CoordinateType, p.coordinateType)}
        if c.contentPropertiesType == md.ContentProperties.ImageProperties:
            d["color_space"] = _enum_name(md.ColorSpaceType, p.colorSpace)
        if c.range is not None:
            d["range"] = [int(c.range.min), int(c.range.max)]
    for u in t.processUnits or []:
        if u.optionsType == md.ProcessUnitOptions.NormalizationOptions:
            d["normalization"] = {"mean": [float(v) for v in u.options.mean],
                                  "std": [float(v) for v in u.options.std]}
    if t.stats is not None and t.stats.min is not None:
        d["stats"] = {"min": [float(v) for v in t.stats.min], "max": [float(v) for v in t.stats.max]}
    d["associated_files"] = [{"name": _text(f.name), "type": _enum_name(md.AssociatedFileType, f.type),
                              "description": _text(f.description)} for f in t.associatedFiles or []]
    return d


def read_metadata(tflite_bytes: bytes) -> dict[str, Any] | None:
    """The model's TFLite Model Metadata as plain data, or None when it has none.

    Keys: name, version, description, author, license, min_parser_version, inputs and outputs
    (per tensor in graph order: its metadata plus ``tensor_index``/``tensor_name`` in the graph),
    output_groups, and associated_files ({name: bytes} from the zip appended to the model).
    """
    md, _ = schema_modules()
    model = _parse_model(tflite_bytes)
    entry = next((m for m in model.metadata or [] if _text(m.name) == METADATA_FIELD_NAME), None)
    if entry is None:
        return None
    buf = bytes(bytearray(model.buffers[entry.buffer].data))
    if buf[4:8] != METADATA_FILE_IDENTIFIER:
        raise MetadataError(f"{METADATA_FIELD_NAME} buffer lacks the {METADATA_FILE_IDENTIFIER!r} identifier")
    meta = md.ModelMetadataT.InitFromObj(md.ModelMetadata.GetRootAs(buf, 0))
    graph = model.subgraphs[0]
    sg = (meta.subgraphMetadata or [None])[0]

    def tensors(items: Sequence[Any] | None, indices: Sequence[int]) -> list[dict[str, Any]]:
        return [{**_tensor_dict(md, t), "tensor_index": int(i), "tensor_name": _text(graph.tensors[int(i)].name)}
                for t, i in zip(items or [], indices)]

    files: dict[str, bytes] = {}
    try:
        with zipfile.ZipFile(io.BytesIO(bytes(tflite_bytes))) as zf:
            files = {n: zf.read(n) for n in zf.namelist()}
    except zipfile.BadZipFile:
        pass
    return {"name": _text(meta.name), "version": _text(meta.version), "description": _text(meta.description),
            "author": _text(meta.author), "license": _text(meta.license),
            "min_parser_version": _text(meta.minParserVersion),
            "inputs": tensors(sg.inputTensorMetadata if sg else None, graph.inputs),
            "outputs": tensors(sg.outputTensorMetadata if sg else None, graph.outputs),
            "output_groups": [{"name": _text(g.name), "tensor_names": [_text(n) for n in g.tensorNames or []]}
                              for g in (sg.outputTensorGroups if sg else None) or []],
            "associated_files": files}
