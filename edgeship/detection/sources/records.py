"""What a source reader hands the importer: categories, images and their objects as the user wrote
them, and the problems found on the way (errors raise, warnings are collected).

Readers (coco.py, voc.py, tfod.py) only parse and check the annotation files; decoding images,
clipping boxes, mapping categories, carving splits and writing the artifact happen once, in
importer.py and writer.py, the same way for every format.
"""
from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

# Problems that --strict refuses (without it: fixed or dropped, with a warning naming the file).
STRICT_KINDS = frozenset({"box_clipped", "box_inverted", "box_zero_area", "box_outside",
                          "voc_no_size", "image_not_listed"})
MAX_KEPT_WARNINGS = 200
LOGGED_PER_KIND = 5


class SourceError(ValueError):
    """A source that cannot be imported; the message names the file and the annotation/record."""


@dataclass
class Category:
    """One of the user's categories: their id (None for formats without ids, like VOC) and name."""

    source_id: int | None
    name: str
    display_name: str | None = None

    @property
    def key(self) -> object:
        """What objects refer to: the id when the format has ids, else the name."""
        return self.name if self.source_id is None else self.source_id


@dataclass
class SourceObject:
    """One annotated object. box: (x0, y0, x1, y1) in pixels of the annotation's frame, or
    normalized 0..1 when the image's ``normalized`` flag is set."""

    category: object              # Category.key
    box: tuple[float, float, float, float]
    where: str                    # "F annotation 17", "F object 2", "F record 3 object 0"
    iscrowd: bool = False
    difficult: bool = False
    source_id: object = None      # the user's annotation id, when it had one


@dataclass
class SourceImage:
    """One image as the source describes it.

    file: path relative to the source root (None when the bytes are inline, as in a TFRecord);
    width/height: the size the annotations declare (None = not given: read from the file);
    frame: "auto" (boxes drawn on the displayed image, EXIF orientation applied, unless the
    declared size is the stored one of a 90°-rotated image) or "raw" (boxes on the stored
    pixels, as TensorFlow decodes them: TF OD API TFRecords).
    """

    source_id: str
    file: str | None
    where: str
    split: str | None
    width: int | None
    height: int | None
    objects: list[SourceObject] = field(default_factory=list)
    data: bytes | None = None
    frame: str = "auto"
    normalized: bool = False


@dataclass
class Source:
    """A parsed source: its format, where it is, its categories and images, the splits it gives."""

    format: str
    uri: str
    categories: list[Category]
    images: list[SourceImage]
    files: list[str] = field(default_factory=list)   # annotation / record / label-map files read

    @property
    def splits_given(self) -> list[str]:
        return sorted({img.split for img in self.images if img.split})


class Issues:
    """Warnings collected during an import; under ``strict`` the kinds in STRICT_KINDS raise."""

    def __init__(self, strict: bool = False) -> None:
        self.strict = strict
        self.counts: Counter = Counter()
        self.messages: list[str] = []

    def warn(self, kind: str, message: str) -> None:
        if self.strict and kind in STRICT_KINDS:
            raise SourceError(f"{message} (refused under --strict)")
        self.counts[kind] += 1
        if len(self.messages) < MAX_KEPT_WARNINGS:
            self.messages.append(message)
        if self.counts[kind] <= LOGGED_PER_KIND:
            log.warning("%s", message)
        elif self.counts[kind] == LOGGED_PER_KIND + 1:
            log.warning("more %s warnings: see the data report", kind)

    def to_json(self) -> dict:
        return {"count": sum(self.counts.values()), "by_kind": dict(sorted(self.counts.items())),
                "messages": list(self.messages),
                "truncated": sum(self.counts.values()) > len(self.messages)}
