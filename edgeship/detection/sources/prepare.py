"""From a parsed Source to what the artifact holds, image by image: the bytes read and decoded,
made into the artifact's JPEG (staged on disk), the boxes brought to its pixels (EXIF frame,
shrink), checked and clipped, the categories mapped to training ids 1..K."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgeship.detection.sources.boxes import check_box
from edgeship.detection.sources.images import (
    SWAPS_AXES,
    NormalizedImage,
    normalize_image,
    orient_boxes,
)
from edgeship.detection.sources.records import Issues, Source, SourceError, SourceImage
from edgeship.detection.sources.tree import SourceTree

CHUNK = 64  # images read at a time (gs:// reads run 16 in parallel within a chunk)


@dataclass(eq=False)
class Prepared:
    """One image ready to be written: the staged JPEG, its size, its objects in its pixels."""

    index: int
    source: SourceImage
    staged: Path
    width: int
    height: int
    sha256: str
    image: NormalizedImage
    boxes: list[tuple[float, float, float, float]] = field(default_factory=list)  # x0, y0, x1, y1
    labels: list[int] = field(default_factory=list)          # training ids 1..K
    iscrowd: list[bool] = field(default_factory=list)
    difficult: list[bool] = field(default_factory=list)
    ann_ids: list[object] = field(default_factory=list)
    wheres: list[str] = field(default_factory=list)          # each object's file + annotation
    split: str = "train"

    @property
    def file(self) -> str:
        return self.source.file or self.source.where

    def targets(self) -> list[int]:
        """Indices of the objects that are training targets (not crowd)."""
        return [k for k, crowd in enumerate(self.iscrowd) if not crowd]


def _frame(img: SourceImage, norm: NormalizedImage, issues: Issues) -> tuple[str, int, int]:
    """Which pixels the boxes were drawn on: ("oriented" | "raw", width, height) of that frame.

    Raises SourceError when the declared size fits neither the stored nor the displayed image."""
    (rw, rh), (ow, oh) = norm.raw_size, norm.oriented_size
    if img.frame == "raw":
        if img.width and img.height and (img.width, img.height) != (rw, rh):
            raise SourceError(f"{img.where}: says {img.width}x{img.height} but its image is {rw}x{rh}")
        return "raw", rw, rh
    if img.width is None or img.height is None:
        return "oriented", ow, oh
    declared = (img.width, img.height)
    if declared == (ow, oh):
        if norm.orientation not in (1,) + SWAPS_AXES:
            issues.warn("exif_assumed", f"{img.where}: EXIF orientation {norm.orientation}; its "
                        "boxes are taken as drawn on the image as displayed (turned/mirrored)")
        return "oriented", ow, oh
    if declared == (rw, rh) and norm.orientation in SWAPS_AXES:
        issues.warn("exif_raw_frame", f"{img.where}: declares the stored size {rw}x{rh} of an image "
                    f"with EXIF orientation {norm.orientation}: its boxes are taken as drawn on the "
                    "stored pixels and turned with the image")
        return "raw", rw, rh
    raise SourceError(f"{img.where}: says {img.width}x{img.height} but its image "
                      f"{img.file or ''} is {ow}x{oh}".replace("  ", " "))


def prepare_image(index: int, img: SourceImage, data: bytes, staging: Path, *, where: str,
                  mapping: dict, max_side: int, issues: Issues) -> Prepared:
    """One image: normalize, stage its JPEG, bring its boxes into the stored pixels."""
    try:
        norm = normalize_image(data, where, max_side=max_side)
    except ValueError as exc:
        raise SourceError(f"{exc} ({img.where})" if img.file else str(exc)) from exc
    frame, fw, fh = _frame(img, norm, issues)
    staged = staging / f"{index:06d}.jpg"
    staged.write_bytes(norm.jpeg)
    out = Prepared(index=index, source=img, staged=staged, width=norm.width, height=norm.height,
                   sha256=hashlib.sha256(data).hexdigest(), image=norm)
    for obj in img.objects:
        box = obj.box
        if img.normalized:
            box = (box[0] * fw, box[1] * fh, box[2] * fw, box[3] * fh)
        kept = check_box(box, fw, fh, obj.where, issues)
        if kept is None:
            continue
        arr = np.array([kept], np.float64)
        if frame == "raw":
            arr = orient_boxes(arr, norm.orientation, norm.raw_size)
        x0, y0, x1, y1 = (float(np.clip(v * norm.scale, 0, lim))
                          for v, lim in zip(arr[0], (norm.width, norm.height) * 2))
        out.boxes.append(tuple(round(v, 4) for v in (x0, y0, x1, y1)))
        out.labels.append(mapping[obj.category])
        out.iscrowd.append(obj.iscrowd)
        out.difficult.append(obj.difficult)
        out.ann_ids.append(obj.source_id)
        out.wheres.append(obj.where)
    norm.jpeg = b""  # staged on disk; do not keep every image in memory
    return out


def prepare_all(tree: SourceTree, source: Source, staging: Path, *, mapping: dict, max_side: int,
                issues: Issues) -> list[Prepared]:
    """Every image of the source, in order; a missing or unreadable image raises naming it and
    the annotation file that refers to it."""
    staging.mkdir(parents=True, exist_ok=True)
    out: list[Prepared] = []
    images = source.images
    for start in range(0, len(images), CHUNK):
        chunk = images[start:start + CHUNK]
        blobs = tree.read_many(img.file if img.data is None else None for img in chunk)
        for k, (img, blob) in enumerate(zip(chunk, blobs)):
            data = img.data if img.data is not None else blob
            if isinstance(data, Exception) or data is None:
                raise SourceError(f"{img.where}: image {tree.full(img.file or '')} is missing or "
                                  f"unreadable ({data})")
            where = tree.full(img.file) if img.file else img.where
            out.append(prepare_image(start + k, img, data, staging, where=where, mapping=mapping,
                                     max_side=max_side, issues=issues))
            img.data = None
    return out
