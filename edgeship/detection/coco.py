"""COCO detection metrics (pycocotools) over in-memory examples and detections.

Ground truth comes from the dataset's `Example`s (boxes normalized [ymin, xmin, ymax, xmax], labels
= class ids 1..K); detections from a detector (same box layout, class ids 1..K, scores). Both are
turned into COCO dictionaries in memory (pixel [x, y, w, h] boxes) and scored with ``COCOeval``
(``iouType="bbox"``). No files are read or written; pycocotools' prints are captured and logged at
debug level.
"""
from __future__ import annotations

import contextlib
import io
import logging
import math
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np

from edgeship.detection.streamed import truth_of

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Detections:
    """Detections on one image: boxes float32 [D, 4] normalized (ymin, xmin, ymax, xmax),
    labels int32 [D] class ids 1..K, scores float32 [D] in [0, 1]."""

    boxes: np.ndarray
    labels: np.ndarray
    scores: np.ndarray

    def __post_init__(self) -> None:
        boxes = np.asarray(self.boxes, np.float32).reshape(-1, 4)
        labels = np.asarray(self.labels, np.int32).reshape(-1)
        scores = np.asarray(self.scores, np.float32).reshape(-1)
        if not (len(boxes) == len(labels) == len(scores)):
            raise ValueError(f"detections disagree in length: {len(boxes)} boxes, {len(labels)} labels, "
                             f"{len(scores)} scores")
        object.__setattr__(self, "boxes", boxes)
        object.__setattr__(self, "labels", labels)
        object.__setattr__(self, "scores", scores)

    def __len__(self) -> int:
        return len(self.scores)

    @classmethod
    def empty(cls) -> "Detections":
        return cls(np.zeros((0, 4), np.float32), np.zeros((0,), np.int32), np.zeros((0,), np.float32))


@dataclass
class CocoResult:
    """mAP@[.5:.95] (``map``), mAP@.5 (``map50``), and AP@[.5:.95] per class name
    (None for a class with no ground truth in the evaluated images)."""

    map: float
    map50: float
    per_class_ap: dict[str, float | None] = field(default_factory=dict)
    per_class_ap50: dict[str, float | None] = field(default_factory=dict)
    images: int = 0
    objects: int = 0
    detections: int = 0
    # per-image matches for bootstrap intervals (edgeship.detection.bootstrap.MatchTable); only
    # with coco_evaluate(..., keep_matches=True); never serialized
    matches: Any = field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        return {"map": self.map, "map50": self.map50, "per_class_ap": dict(self.per_class_ap),
                "per_class_ap50": dict(self.per_class_ap50), "images": self.images,
                "objects": self.objects, "detections": self.detections}


def class_names_by_id(class_names: Sequence[str] | Mapping[int, str]) -> dict[int, str]:
    """Normalise a label map: a list (line i = class id i+1) or {id: name}. Ids must be 1..K."""
    if isinstance(class_names, Mapping):
        mapping = {int(k): str(v) for k, v in class_names.items()}
    else:
        mapping = {i + 1: str(name) for i, name in enumerate(class_names)}
    if not mapping:
        raise ValueError("label map is empty: no classes to evaluate")
    if sorted(mapping) != list(range(1, len(mapping) + 1)):
        raise ValueError(f"label map ids must be 1..K, got {sorted(mapping)}")
    return mapping


def validate_examples(examples: Sequence[Any], class_names: Mapping[int, str], *, where: str = "val split") -> None:
    """Check the ground truth before evaluating: at least one image, at least one object, every
    label a known class id, every box normalized with min <= max. Raises ValueError naming the
    image and the bad value."""
    examples = truth_of(examples)  # a StreamedSplit: its ground truth, no decoding
    if len(examples) == 0:
        raise ValueError(f"{where} has no images: nothing to evaluate")
    total = 0
    seen: set[str] = set()
    for ex in examples:
        image_id = str(ex.image_id)
        if image_id in seen:
            raise ValueError(f"{where}: image id {image_id!r} appears twice")
        seen.add(image_id)
        image = np.asarray(ex.image)
        if image.ndim != 3 or image.shape[-1] != 3:
            raise ValueError(f"{where}: image {image_id!r} has shape {image.shape}, expected [H, W, 3]")
        labels = np.asarray(ex.labels).reshape(-1)
        boxes = np.asarray(ex.boxes, np.float32).reshape(-1, 4)
        if len(labels) != len(boxes):
            raise ValueError(f"{where}: image {image_id!r} has {len(boxes)} boxes but {len(labels)} labels")
        bad = [int(v) for v in labels if int(v) not in class_names]
        if bad:
            raise ValueError(f"{where}: image {image_id!r} has label(s) {sorted(set(bad))} outside the label "
                             f"map (ids {min(class_names)}..{max(class_names)}: "
                             f"{', '.join(class_names[i] for i in sorted(class_names))})")
        if len(boxes) and (not np.all(np.isfinite(boxes)) or boxes.min() < -1e-3 or boxes.max() > 1 + 1e-3
                           or np.any(boxes[:, 2] < boxes[:, 0]) or np.any(boxes[:, 3] < boxes[:, 1])):
            raise ValueError(f"{where}: image {image_id!r} has a box that is not normalized "
                             f"[ymin, xmin, ymax, xmax] in 0..1: {boxes.tolist()}")
        total += len(labels)
    if total == 0:
        raise ValueError(f"{where} has {len(examples)} images but no objects: mAP is undefined")


def _to_xywh(boxes: np.ndarray, height: int, width: int) -> np.ndarray:
    boxes = np.clip(np.asarray(boxes, np.float64).reshape(-1, 4), 0.0, 1.0)
    y0, x0, y1, x1 = boxes[:, 0] * height, boxes[:, 1] * width, boxes[:, 2] * height, boxes[:, 3] * width
    return np.stack([x0, y0, np.maximum(x1 - x0, 0.0), np.maximum(y1 - y0, 0.0)], axis=1)


def _coco(dataset: dict) -> Any:
    from pycocotools.coco import COCO

    coco = COCO()
    coco.dataset = dataset
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def coco_evaluate(examples: Sequence[Any], detections: Sequence[Detections],
                  class_names: Sequence[str] | Mapping[int, str], *, where: str = "val split",
                  validate: bool = True, keep_matches: bool = False) -> CocoResult:
    """COCO bbox mAP of ``detections`` (one per example, same order) against the examples' ground truth.

    ``keep_matches`` keeps the per-image matches in ``result.matches`` (a
    :class:`edgeship.detection.bootstrap.MatchTable`, image i = example i) for bootstrap intervals.

    Raises ValueError for an empty set, labels outside the label map, or a length mismatch.
    """
    names = class_names_by_id(class_names)
    examples = truth_of(examples)  # a StreamedSplit: its ground truth, no decoding
    if validate:
        validate_examples(examples, names, where=where)
    if len(detections) != len(examples):
        raise ValueError(f"{len(detections)} detection sets for {len(examples)} images in the {where}")

    images, gts, dts = [], [], []
    for idx, (ex, det) in enumerate(zip(examples, detections)):
        height, width = int(ex.image.shape[0]), int(ex.image.shape[1])
        image_num = idx + 1
        images.append({"id": image_num, "height": height, "width": width, "file_name": str(ex.image_id)})
        labels = np.asarray(ex.labels).reshape(-1)
        difficult = np.asarray(getattr(ex, "difficult", None) if getattr(ex, "difficult", None) is not None
                               else np.zeros(len(labels), bool)).reshape(-1)
        crowd_boxes = np.asarray(getattr(ex, "crowd_boxes", np.zeros((0, 4))), np.float32).reshape(-1, 4)
        crowd_labels = np.asarray(getattr(ex, "crowd_labels", np.zeros((0,))), np.int64).reshape(-1)
        # crowd regions (COCO iscrowd) and Pascal VOC "difficult" objects are ignore regions: a
        # detection on one is neither a hit nor a false positive (pycocotools' iscrowd semantics)
        for box, label, ignore in [*zip(_to_xywh(ex.boxes, height, width), labels, difficult),
                                   *((b, c, True) for b, c in zip(_to_xywh(crowd_boxes, height, width),
                                                                  crowd_labels))]:
            gts.append({"id": len(gts) + 1, "image_id": image_num, "category_id": int(label),
                        "bbox": [float(v) for v in box], "area": float(box[2] * box[3]),
                        "iscrowd": int(bool(ignore))})
        for box, label, score in zip(_to_xywh(det.boxes, height, width), det.labels, det.scores):
            if int(label) not in names:
                raise ValueError(f"detector returned class id {int(label)} on image {ex.image_id!r}, "
                                 f"outside the label map 1..{len(names)}")
            dts.append({"id": len(dts) + 1, "image_id": image_num, "category_id": int(label),
                        "bbox": [float(v) for v in box], "area": float(box[2] * box[3]),
                        "score": float(score), "iscrowd": 0})
    categories = [{"id": i, "name": names[i]} for i in sorted(names)]
    gt = _coco({"images": images, "annotations": gts, "categories": categories})
    dt = _coco({"images": images, "annotations": dts, "categories": categories})

    from pycocotools.cocoeval import COCOeval

    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        ev = COCOeval(gt, dt, iouType="bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    log.debug("pycocotools:\n%s", buffer.getvalue())

    precision = ev.eval["precision"]  # [T, R, K, A, M]; area "all" = 0, maxDets 100 = -1
    per_class, per_class50 = {}, {}
    for k, cat_id in enumerate(ev.params.catIds):
        p = precision[:, :, k, 0, -1]
        p50 = precision[0, :, k, 0, -1]
        per_class[names[cat_id]] = float(np.mean(p[p > -1])) if np.any(p > -1) else None
        per_class50[names[cat_id]] = float(np.mean(p50[p50 > -1])) if np.any(p50 > -1) else None
    stats = ev.stats
    result = CocoResult(map=_clean(stats[0]), map50=_clean(stats[1]), per_class_ap=per_class,
                        per_class_ap50=per_class50, images=len(images),
                        objects=sum(1 for g in gts if not g["iscrowd"]),
                        detections=len(dts))
    if keep_matches:
        from edgeship.detection.bootstrap import match_table

        result.matches = match_table(ev)
    return result


def _clean(value: float) -> float:
    """COCOeval reports -1 when nothing could be measured; with validated ground truth that only
    happens when there are no detections at all, which is an AP of 0."""
    value = float(value)
    if value < 0 or math.isnan(value):
        return 0.0
    return value
