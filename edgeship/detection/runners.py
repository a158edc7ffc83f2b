"""Detectors the evaluator runs: a converted .tflite in LiteRT, and the float Keras model.

Both take one image (uint8 [H, W, 3], any size: it is resized to the model's input with the same
bilinear resize for both) and return `Detections` with normalized (ymin, xmin, ymax, xmax) boxes,
class ids 1..K and scores.

`TFLiteDetector` runs the converted model *itself* (``ai_edge_litert.interpreter.Interpreter``,
XNNPACK on by default), never its Keras twin. Its input is fed exactly as the variant's spec in
variants.json says: float32 raw pixels 0..255, or uint8/int8 pixels quantized with the input's
scale and zero point (identity when scale is 1 and zero point 0, the usual case for a model that
normalizes inside). Its outputs are read through the variant's explicit output map.
"""
from __future__ import annotations

import itertools

import logging
import os
from pathlib import Path
from typing import Any, Callable, Mapping, Protocol, Sequence

import numpy as np

from edgeship.detection.coco import (
    Detections,
    class_names_by_id,
)

log = logging.getLogger(__name__)

OUTPUT_KEYS = ("boxes", "classes", "scores", "count")


class Detector(Protocol):
    """What the evaluator needs from a detector."""

    name: str
    input_size: tuple[int, int]

    def __call__(self, image: np.ndarray) -> Detections: ...


def fit_image(image: np.ndarray, size: tuple[int, int], policy: str = "stretch"):
    """(float32 [H, W, 3] model input, transform or None) under the model's resize ``policy``:
    ``stretch`` (:func:`resize_image`, no box change) or ``letterbox`` (aspect kept, padded; map
    the detections back with ``boxes_from_input``)."""
    if policy == "stretch":
        return resize_image(image, size), None
    from edgeship.detection.sources.images import resize_image as policy_resize

    fitted, transform = policy_resize(np.asarray(image, np.uint8), size, policy)
    return fitted.astype(np.float32), transform


def to_source_boxes(detections: Detections, transform) -> Detections:
    """Detections on the model input → on the source image (letterbox); unchanged for stretch."""
    if transform is None or not len(detections.boxes):
        return detections
    from edgeship.detection.sources.images import boxes_from_input

    return Detections(boxes_from_input(detections.boxes, transform), detections.labels, detections.scores)


def resize_image(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize uint8 [H, W, 3] to (height, width) with bilinear filtering; float32 0..255 out.

    Boxes are normalized, so they need no change. A no-op (apart from the dtype) when the size
    already matches.
    """
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[-1] != 3:
        raise ValueError(f"expected an RGB image [H, W, 3], got shape {image.shape}")
    height, width = int(size[0]), int(size[1])
    if image.shape[0] == height and image.shape[1] == width:
        return image.astype(np.float32)
    from PIL import Image

    resized = Image.fromarray(image.astype(np.uint8)).resize((width, height), Image.BILINEAR)
    return np.asarray(resized, np.float32)


def _resolve_output(details: list[dict], key: str, spec: Any, where: str) -> int:
    """Position (in ``get_output_details()``) of output ``key`` from its map entry.

    The entry is ``{"index": i, "name": n}`` or a bare int. A name that matches one output wins;
    otherwise ``index`` is taken as the tensor index, then as the position in the output list.
    """
    if isinstance(spec, Mapping):
        name, index = spec.get("name"), spec.get("index")
    elif isinstance(spec, (int, np.integer)) and not isinstance(spec, bool):
        name, index = None, int(spec)
    else:
        raise ValueError(f"{where}: output map entry for {key!r} must be {{'index', 'name'}} or an int, got {spec!r}")
    if name:
        hits = [pos for pos, d in enumerate(details) if d["name"] == name]
        if len(hits) == 1:
            return hits[0]
    if index is not None:
        index = int(index)
        hits = [pos for pos, d in enumerate(details) if int(d["index"]) == index]
        if len(hits) == 1:
            return hits[0]
        if 0 <= index < len(details):
            return index
    raise ValueError(f"{where}: output {key!r} ({spec!r}) matches none of the model's outputs "
                     f"{[(d['index'], d['name']) for d in details]}")


class TFLiteDetector:
    """A .tflite detector with the standard outputs (boxes, classes, scores, count), run in LiteRT.

    Args:
        path: the .tflite file.
        num_threads: LiteRT threads (default: all cores).
        input_spec: the variant's ``input`` entry in variants.json (dtype, scale, zero_point);
            checked against the model itself. None = take everything from the model.
        output_map: the variant's ``outputs`` entry: boxes/classes/scores/count → {index, name}.
        name: a label for logs and errors (default: the file name).
        num_classes: K; when given, a class index >= K from the model is an error.
    Raises FileNotFoundError for a missing file and ValueError for a file LiteRT cannot load or a
    spec/model disagreement, naming the file.
    """

    def __init__(self, path: str | os.PathLike, *, num_threads: int | None = None,
                 input_spec: Mapping[str, Any] | None = None,
                 output_map: Mapping[str, Any] | None = None, name: str | None = None,
                 num_classes: int | None = None) -> None:
        from ai_edge_litert.interpreter import Interpreter

        self.path = Path(path)
        self.name = name or self.path.stem
        if not self.path.is_file():
            raise FileNotFoundError(f"variant {self.name!r}: model file not found: {self.path}")
        self.num_threads = int(num_threads or os.cpu_count() or 1)
        try:
            self.interpreter = Interpreter(model_path=str(self.path), num_threads=self.num_threads)
            self.interpreter.allocate_tensors()
        except Exception as exc:  # LiteRT raises ValueError/RuntimeError with C++ text
            raise ValueError(f"variant {self.name!r}: LiteRT cannot load {self.path} "
                             f"(corrupt or not a .tflite?): {exc}") from exc
        inputs = self.interpreter.get_input_details()
        if len(inputs) != 1:
            raise ValueError(f"variant {self.name!r}: expected one image input in {self.path}, found {len(inputs)}")
        self._input = inputs[0]
        shape = [int(v) for v in self._input["shape"]]
        if len(shape) != 4 or shape[0] != 1 or shape[3] != 3:
            raise ValueError(f"variant {self.name!r}: input shape {shape} in {self.path} is not [1, H, W, 3]")
        self.input_size = (shape[1], shape[2])
        self.input_dtype = np.dtype(self._input["dtype"])
        scale, zero_point = self._input.get("quantization", (0.0, 0))
        if input_spec:
            want = input_spec.get("dtype")
            if want and np.dtype(want) != self.input_dtype:
                raise ValueError(f"variant {self.name!r}: variants.json says input dtype {want} but "
                                 f"{self.path} takes {self.input_dtype}")
            spec_shape = input_spec.get("shape")
            if spec_shape and [int(v) for v in spec_shape] != shape:
                raise ValueError(f"variant {self.name!r}: variants.json says input shape {spec_shape} "
                                 f"but {self.path} takes {shape}")
            if input_spec.get("scale") is not None:
                scale = float(input_spec["scale"])
            if input_spec.get("zero_point") is not None:
                zero_point = int(input_spec["zero_point"])
        self.input_scale, self.input_zero_point = float(scale), int(zero_point)

        outputs = self.interpreter.get_output_details()
        if output_map is None:
            raise ValueError(f"variant {self.name!r}: no output map (boxes/classes/scores/count → "
                             f"output index) for {self.path}; variants.json must give one")
        missing = [k for k in OUTPUT_KEYS if k not in output_map]
        if missing:
            raise ValueError(f"variant {self.name!r}: output map lacks {missing}; has {sorted(output_map)}")
        where = f"variant {self.name!r} ({self.path})"
        self._out = {k: outputs[_resolve_output(outputs, k, output_map[k], where)]["index"] for k in OUTPUT_KEYS}
        if len(set(self._out.values())) != len(OUTPUT_KEYS):
            raise ValueError(f"{where}: output map sends two keys to one tensor: {self._out}")
        self.num_classes = num_classes
        self.resize_policy = str((input_spec or {}).get("resize") or "stretch")
        self._transform = None
        self._args = {"input_spec": input_spec, "output_map": output_map, "name": self.name, "num_classes": num_classes}
        self._lanes: list[TFLiteDetector] = []

    def lanes(self) -> list["TFLiteDetector"]:
        """``num_threads`` one-thread copies of this detector, made once: ``run_detector`` runs
        them side by side on consecutive images (LiteRT's Invoke releases the GIL). Two one-thread
        interpreters on 2 cores ran 1.9-2.0x the images per second of one two-thread interpreter
        (XNNPACK fp32/int8 and the 16x8 reference kernels alike, 2026-12-03), with the same
        outputs: each image is still run by one single-thread interpreter."""
        if self.num_threads < 2:
            return [self]
        if not self._lanes:
            self._lanes = [TFLiteDetector(self.path, num_threads=1, **self._args) for _ in range(self.num_threads)]
        return self._lanes

    def prepare(self, image: np.ndarray) -> np.ndarray:
        """The model input for ``image``: resized (the model's resize policy), batched and
        typed/quantized as the input spec says."""
        pixels, self._transform = fit_image(image, self.input_size, self.resize_policy)
        pixels = pixels[None]
        if self.input_dtype == np.float32:
            return pixels.astype(np.float32)
        if self.input_dtype in (np.dtype(np.uint8), np.dtype(np.int8)):
            info = np.iinfo(self.input_dtype)
            if self.input_scale > 0 and not (abs(self.input_scale - 1.0) < 1e-6 and self.input_zero_point == 0):
                pixels = pixels / self.input_scale + self.input_zero_point
            return np.clip(np.rint(pixels), info.min, info.max).astype(self.input_dtype)
        raise ValueError(f"variant {self.name!r}: unsupported input dtype {self.input_dtype} in {self.path}")

    def run(self, model_input: np.ndarray) -> Detections:
        """Invoke on a prepared input and decode the four standard outputs."""
        self.interpreter.set_tensor(self._input["index"], model_input)
        self.interpreter.invoke()
        get = self.interpreter.get_tensor
        boxes = np.asarray(get(self._out["boxes"]), np.float32).reshape(-1, 4)
        classes = np.asarray(get(self._out["classes"]), np.float32).reshape(-1)
        scores = np.asarray(get(self._out["scores"]), np.float32).reshape(-1)
        count = int(np.asarray(get(self._out["count"])).reshape(-1)[0])
        count = max(0, min(count, len(scores), len(boxes), len(classes)))
        labels = np.rint(classes[:count]).astype(np.int32) + 1  # 0-based index → class id
        if self.num_classes is not None and len(labels) and (labels.min() < 1 or labels.max() > self.num_classes):
            raise ValueError(f"variant {self.name!r}: model returned class index {int(labels.max()) - 1} "
                             f"outside 0..{self.num_classes - 1}: its label map disagrees with the data")
        return Detections(np.clip(boxes[:count], 0.0, 1.0), labels, scores[:count])

    def __call__(self, image: np.ndarray) -> Detections:
        model_input = self.prepare(image)
        return to_source_boxes(self.run(model_input), self._transform)


class KerasDetector:
    """The float Keras model (the train step's Model artifact) behind the same interface.

    Rebuilds it with ``edgeship.detection.model.load_model(model_dir)`` (model, config, anchors)
    and decodes its (box_encodings, class_logits) with that module's ``decode_and_nms``: box
    decoding with the artifact's anchors and box_scales, sigmoid scores, class-agnostic NMS
    (max 100 detections, score >= 0.01, IoU 0.5), which is what the fused TFLite op in the
    .tflite variants does. Images are resized like the TFLite detector's.
    """

    def __init__(self, model_dir: str | os.PathLike, *, name: str = "float_keras", batch_size: int = 8,
                 max_detections: int = 100, score_threshold: float = 0.01, iou_threshold: float = 0.5) -> None:
        from edgeship.detection import model as det

        self.model_dir = Path(model_dir)
        self.name = name
        if not self.model_dir.is_dir():
            raise FileNotFoundError(f"float model directory not found: {self.model_dir}")
        self._det = det
        self.model, config, self.anchors = det.load_model(self.model_dir)
        self.model_config = config
        self.config: dict[str, Any] = config.to_json() if hasattr(config, "to_json") else dict(config)
        size = self.config["input_size"]
        self.input_size = (int(size[0]), int(size[1]))
        self.num_classes = int(self.config["num_classes"])
        self.batch_size = int(batch_size)
        self._graph: Any = None
        self._nms = {"max_detections": int(max_detections), "score_threshold": float(score_threshold),
                     "iou_threshold": float(iou_threshold)}

    def detect_batch(self, images: Sequence[np.ndarray]) -> list[Detections]:
        """Detections for several images in one forward pass."""
        fitted = [fit_image(im, self.input_size, self.model_config.resize) for im in images]
        batch = np.stack([pixels for pixels, _ in fitted]).astype(np.float32)
        box_encodings, class_logits = self._forward()(batch)
        result = self._det.decode_and_nms(box_encodings, class_logits, self.anchors, self.model_config,
                                          **self._nms)
        return [to_source_boxes(d, t) for d, (_, t) in zip(_to_detections(result), fitted)]

    def __call__(self, image: np.ndarray) -> Detections:
        return self.detect_batch([image])[0]

    def _forward(self) -> Callable[[np.ndarray], tuple[Any, Any]]:
        """The model's inference call as one traced graph (any batch size): called eagerly,
        Keras dispatched each of its ~600 layers from Python, 4x slower on the main job's
        model (0.235 s per batch of 8 at 160 px, 2026-12-03)."""
        if self._graph is None:
            from edgeship.base.tfcompat import tf

            spec = tf.TensorSpec([None, *self.input_size, 3], tf.float32)
            self._graph = tf.function(lambda x: self._det.model_outputs(self.model(x, training=False)),
                                      input_signature=[spec])
        return self._graph


def _to_detections(result: Any) -> list[Detections]:
    """decode_and_nms output ({boxes [B,D,4], classes [B,D] 0-based, scores [B,D], count [B]})
    → list of Detections with class ids 1..K."""
    boxes, classes, scores, count = (result[k] for k in OUTPUT_KEYS)
    boxes, classes = np.asarray(boxes, np.float32), np.asarray(classes, np.float32)
    scores, count = np.asarray(scores, np.float32), np.asarray(count).reshape(-1)
    out = []
    for b in range(boxes.shape[0]):
        n = int(count[b])
        out.append(Detections(np.clip(boxes[b, :n], 0.0, 1.0), np.rint(classes[b, :n]).astype(np.int32) + 1,
                              scores[b, :n]))
    return out


def _class_names(info: Any) -> list[str]:
    classes = info["classes"] if isinstance(info, Mapping) else getattr(info, "classes")
    pairs = []
    for c in classes:
        if isinstance(c, Mapping):
            pairs.append((int(c["id"]), str(c["name"])))
        elif isinstance(c, str):
            pairs.append((len(pairs) + 1, c))
        else:
            pairs.append((int(c.id), str(c.name)))
    return [name for _, name in sorted(class_names_by_id(dict(pairs)).items())]


def _fingerprint(info: Any) -> str | None:
    return info.get("fingerprint") if isinstance(info, Mapping) else getattr(info, "fingerprint", None)


def check_label_maps(data_classes: Sequence[str], other: Sequence[str] | None, where: str) -> None:
    """Raise ValueError when a model's label map disagrees with the dataset's classes."""
    if other is None:
        return
    if list(other) != list(data_classes):
        raise ValueError(f"label map of {where} {list(other)} disagrees with the dataset's classes "
                         f"{list(data_classes)}")


def load_examples(dataset_uri: str, split: str = "val", *, max_images: int | None = None,
                  in_memory_mb: float | None = None) -> tuple[Sequence[Any], list[str], str | None]:
    """The split's examples, the class names (ids 1..K) and the dataset fingerprint. The examples
    are a list when their decoded images fit in ``in_memory_mb`` (default
    edgeship.detection.streamed.IN_MEMORY_MB), else a StreamedSplit read again on every pass."""
    from edgeship.contracts.dataset import read_dataset_info
    from edgeship.detection.streamed import read_split

    info = read_dataset_info(dataset_uri)
    names = _class_names(info)
    examples = read_split(dataset_uri, split, max_images=None if max_images is None else int(max_images),
                          **({} if in_memory_mb is None else {"in_memory_mb": in_memory_mb}))
    return examples, names, _fingerprint(info)


def run_detector(detector: Any, examples: Sequence[Any], *, on_image: Callable[[], None] | None = None) -> list[Detections]:
    """Detections of ``detector`` on every example (batched when the detector supports it)."""
    batch_fn = getattr(detector, "detect_batch", None)
    out: list[Detections] = []
    lanes = detector.lanes() if hasattr(detector, "lanes") else []
    if len(lanes) > 1:
        return _run_in_lanes(lanes, examples, on_image)
    if batch_fn is not None:
        size = int(getattr(detector, "batch_size", 8))
        images = iter(examples)  # a list or a StreamedSplit: read in order, a chunk at a time
        while chunk := list(itertools.islice(images, size)):
            out.extend(batch_fn([ex.image for ex in chunk]))
            for _ in chunk:
                on_image and on_image()
        return out
    for ex in examples:
        out.append(detector(ex.image))
        on_image and on_image()
    return out


def _run_in_lanes(lanes: Sequence[Any], examples: Sequence[Any],
                  on_image: Callable[[], None] | None) -> list[Detections]:
    """``run_detector`` over several one-thread detectors: a chunk of examples at a time (a
    StreamedSplit is read in order, never whole), dealt out to the lanes in turn, run
    in threads, and put back in the examples' order."""
    from concurrent.futures import ThreadPoolExecutor

    n = len(lanes)
    out: list[Detections] = []
    images = iter(examples)
    with ThreadPoolExecutor(n, thread_name_prefix="litert-lane") as pool:
        while chunk := list(itertools.islice(images, 8 * n)):
            shares = [chunk[i::n] for i in range(n)]
            done = list(pool.map(lambda lane, share: [lane(ex.image) for ex in share], lanes, shares))
            for i in range(len(chunk)):
                out.append(done[i % n][i // n])
                on_image and on_image()
    return out
