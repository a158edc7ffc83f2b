"""Views of the val photos, for the gate's ΔmAP on a small val split.

On a few dozen photos the paired ΔmAP interval of an int8 variant is 3-5 mAP points wide: most
of it is not what the photos are but which borderline boxes int8 happens to move across an IoU
threshold on each one. Scoring every photo in a few natural views as well (mirrored, the centre
85 % crop, both) averages that flip noise over more detections while the bootstrap still draws
photos (all views of a drawn photo together), so the interval stays honest about how many photos
there are. The ΔmAP over the views is a slightly different quantity from the ΔmAP on the photos
alone (it includes framings a camera would also produce), so the report keeps both, and the gate
says which it used.

A mirrored photo keeps every box (mirrored). A crop keeps the boxes it still shows for the most
part, clipped to it; an object less than half inside the crop becomes an ignore region (VOC's
"difficult": a detection on it is neither a hit nor a false positive), so cutting it is not
scored against either model.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Sequence

import numpy as np

KINDS = ("mirror", "crop85", "crop85_mirror")  # in the order they are added
MAX_VIEWS = 1 + len(KINDS)
CROP = 0.85            # side of the centre crop, share of the photo's
MIN_VISIBLE = 0.5      # share of a box's area inside the crop for it to stay a target
AUTO_MIN_IMAGES = 200  # "auto": views are added until photos × views reaches this (at most 4)


def views_for(photos: int, requested: int = -1) -> int:
    """Views per photo (the photo itself counts as one): ``requested`` when ≥ 1 (at most 4);
    -1 = auto: 1, 2 or 4, the fewest that reach ``AUTO_MIN_IMAGES`` scored images (4 below 50
    photos, 1 from 200). Raises ValueError for another value."""
    if requested == -1:
        return next((k for k in (1, 2, MAX_VIEWS) if photos * k >= AUTO_MIN_IMAGES), MAX_VIEWS)
    if isinstance(requested, bool) or not isinstance(requested, int) or not 1 <= requested <= MAX_VIEWS:
        raise ValueError(f"views per val image must be -1 (auto) or 1..{MAX_VIEWS}, got {requested!r}")
    return requested


def mirror(example: Any) -> Any:
    """The photo flipped left-right, with its boxes (normalized ymin, xmin, ymax, xmax)."""
    def flip(boxes: np.ndarray) -> np.ndarray:
        boxes = np.asarray(boxes, np.float32).reshape(-1, 4).copy()
        boxes[:, [1, 3]] = 1.0 - boxes[:, [3, 1]]
        return boxes

    return dataclasses.replace(example, image=np.ascontiguousarray(np.asarray(example.image)[:, ::-1]),
                               boxes=flip(example.boxes), crowd_boxes=flip(example.crowd_boxes),
                               image_id=f"{example.image_id}#mirror")


def _area(boxes: np.ndarray) -> np.ndarray:
    return np.clip(boxes[:, 2] - boxes[:, 0], 0, None) * np.clip(boxes[:, 3] - boxes[:, 1], 0, None)


def centre_crop(example: Any, side: float = CROP) -> Any:
    """The centre ``side`` × ``side`` crop of the photo; boxes re-expressed in it and clipped, those
    less than ``MIN_VISIBLE`` inside it turned into ignore regions ("difficult")."""
    image = np.asarray(example.image)
    h, w = image.shape[:2]
    ch, cw = max(1, int(round(h * side))), max(1, int(round(w * side)))
    y0, x0 = (h - ch) // 2, (w - cw) // 2

    def into(boxes: np.ndarray) -> np.ndarray:
        b = np.asarray(boxes, np.float32).reshape(-1, 4)
        scale = np.array([h / ch, w / cw, h / ch, w / cw], np.float32)
        shift = np.array([y0 / ch, x0 / cw, y0 / ch, x0 / cw], np.float32)
        return b * scale - shift

    moved = into(example.boxes)
    clipped = np.clip(moved, 0.0, 1.0)
    whole = _area(moved)
    visible = np.divide(_area(clipped), whole, out=np.zeros_like(whole), where=whole > 0)
    keep = visible > 0  # an object entirely outside the crop is not in this view at all
    difficult = np.asarray(example.difficult, bool).reshape(-1) | (visible < MIN_VISIBLE)
    crowd = np.clip(into(example.crowd_boxes), 0.0, 1.0)
    crowd_keep = _area(crowd) > 0
    return dataclasses.replace(
        example, image=np.ascontiguousarray(image[y0:y0 + ch, x0:x0 + cw]), boxes=clipped[keep],
        labels=np.asarray(example.labels).reshape(-1)[keep], difficult=difficult[keep],
        crowd_boxes=crowd[crowd_keep], crowd_labels=np.asarray(example.crowd_labels).reshape(-1)[crowd_keep],
        image_id=f"{example.image_id}#crop{int(side * 100)}")


_MAKERS: dict[str, Callable[[Any], Any]] = {
    "mirror": mirror, "crop85": centre_crop, "crop85_mirror": lambda ex: mirror(centre_crop(ex)),
}


def extra_views(examples: Sequence[Any], views: int) -> tuple[list[Any], np.ndarray]:
    """The views beyond the photos themselves (``views`` − 1 kinds, in ``KINDS`` order) and the
    photo index of every scored image (photos first, then each kind's views in photo order): the
    bootstrap's groups."""
    kinds = KINDS[:max(0, views - 1)]
    extra = [_MAKERS[kind](ex) for kind in kinds for ex in examples]
    groups = np.tile(np.arange(len(examples)), 1 + len(kinds))
    return extra, groups


def describe(photos: int, views: int) -> dict[str, Any]:
    """report.json ``intervals.views``: how the gate's ΔmAP was measured."""
    return {"per_image": views, "kinds": ["photo", *KINDS[:views - 1]], "photos": photos,
            "scored_images": photos * views, "crop": CROP, "min_visible": MIN_VISIBLE,
            "resampled": "photos (each with all its views)"}
