"""Reading a Dataset artifact (docs/contracts.md): COCO JSON + images, or TFRecord shards, into
Examples: ``iter_split`` one at a time (nothing else of the split held), ``load_split`` whole.
The tf.data input pipeline for training is edgeship.detection.stream.

Crowd regions (COCO ``iscrowd: 1``, TF OD API ``image/object/is_crowd``) are not training targets:
they are kept apart in ``Example.crowd_boxes`` / ``crowd_labels`` for evaluation, where pycocotools
ignores detections that fall on them. ``difficult`` objects (Pascal VOC) stay targets and carry a
flag in ``Example.difficult`` (evaluation may ignore them, as the VOC protocol does).
"""
from __future__ import annotations

import io
import json
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Iterator

import numpy as np

from edgeship.base import storage
from edgeship.contracts.dataset import SPLITS, DatasetInfo, join_uri, read_dataset_info
from edgeship.detection.tfrecord import iter_record_stream, iter_records


def _no_boxes() -> np.ndarray:
    return np.zeros((0, 4), np.float32)


def _no_labels() -> np.ndarray:
    return np.zeros((0,), np.int32)


@dataclass
class Example:
    """One image and its objects. boxes: float32 [N, 4] normalized (ymin, xmin, ymax, xmax);
    labels: int32 [N] class ids 1..K (the training targets). crowd_boxes [C, 4] / crowd_labels [C]:
    crowd regions, never targets (evaluation ignores detections on them). difficult: bool [N],
    one flag per target (all False when the source had none)."""

    image_id: str
    image: np.ndarray
    boxes: np.ndarray
    labels: np.ndarray
    crowd_boxes: np.ndarray = field(default_factory=_no_boxes)
    crowd_labels: np.ndarray = field(default_factory=_no_labels)
    difficult: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.difficult is None:
            self.difficult = np.zeros((len(self.labels),), bool)


def decode_jpeg(data: bytes, where: str) -> np.ndarray:
    """Decode image bytes to uint8 RGB [H, W, 3]; a corrupt file raises ValueError naming it."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as img:
            img.load()
            return np.asarray(img.convert("RGB"), dtype=np.uint8)
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise ValueError(f"{where}: cannot decode image ({exc})") from exc


def _check_boxes(boxes_px: np.ndarray, labels: np.ndarray, width: int, height: int,
                 num_classes: int, where: str) -> None:
    tol = 1.0
    for box, label in zip(boxes_px, labels):
        x0, y0, x1, y1 = (float(v) for v in box)
        shown = "[" + ", ".join(f"{v:g}" for v in (x0, y0, x1, y1)) + "]"
        if x1 < x0:
            raise ValueError(f"box {shown} (x0, y0, x1, y1) in {where} has xmax < xmin")
        if y1 < y0:
            raise ValueError(f"box {shown} (x0, y0, x1, y1) in {where} has ymax < ymin")
        if x0 < -tol or y0 < -tol or x1 > width + tol or y1 > height + tol:
            raise ValueError(f"box {shown} (x0, y0, x1, y1) in {where} lies outside the "
                             f"{width}x{height} image")
        if not 1 <= int(label) <= num_classes:
            raise ValueError(f"class id {int(label)} in {where} is not in the label map (1..{num_classes})")


def read_coco(uri: str, split: str) -> tuple[str, dict]:
    ann_path = join_uri(uri, "coco", "annotations", f"{split}.json")
    try:
        coco = json.loads(storage.read_bytes(ann_path))
    except FileNotFoundError as exc:
        raise FileNotFoundError(f"split {split!r} has no annotations: {exc}") from exc
    except json.JSONDecodeError as exc:
        raise ValueError(f"{ann_path} is not valid JSON: {exc}") from exc
    for key in ("images", "annotations"):
        if not isinstance(coco.get(key), list):
            raise ValueError(f"{ann_path} has no {key!r} list (not COCO detection JSON)")
    return ann_path, coco


def _read_many(uris: list[str]) -> Iterator[bytes | FileNotFoundError]:
    """The bytes of each URI in order (a FileNotFoundError in place of a missing one), lazily.

    gs:// objects are fetched 16 at a time, 64 per chunk (one request each would otherwise be
    serial); no more than a chunk is held at once.
    """
    def one(u: str) -> bytes | FileNotFoundError:
        try:
            return storage.read_bytes(u)
        except FileNotFoundError as exc:
            return exc

    if not uris or not storage.is_gcs(uris[0]):
        yield from map(one, uris)
        return
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(16) as pool:
        for start in range(0, len(uris), 64):
            yield from list(pool.map(one, uris[start:start + 64]))


def _iter_coco(uri: str, split: str, info: DatasetInfo) -> Iterator[Example]:
    ann_path, coco = read_coco(uri, split)
    image_ids = {img["id"] for img in coco["images"]}
    by_image: dict[int, list[dict]] = {}
    for ann in coco["annotations"]:
        if ann.get("image_id") not in image_ids:
            raise ValueError(f"annotation {ann.get('id')} in {ann_path} refers to image id "
                             f"{ann.get('image_id')!r}, which is not in its images")
        by_image.setdefault(ann["image_id"], []).append(ann)
    rels = [f"coco/images/{split}/{img['file_name']}" for img in coco["images"]]
    blobs = _read_many([join_uri(uri, rel) for rel in rels])
    for img, rel, data in zip(coco["images"], rels, blobs):
        where = join_uri(uri, rel)
        if isinstance(data, FileNotFoundError):
            raise FileNotFoundError(f"image {rel} (image id {img['id']} in {ann_path}) is missing: "
                                    f"{data}") from data
        image = decode_jpeg(data, where)
        h, w = image.shape[:2]
        if (img.get("height"), img.get("width")) not in ((h, w), (None, None)):
            raise ValueError(f"{rel} is {w}x{h} but {ann_path} says {img.get('width')}x{img.get('height')}")
        anns = by_image.get(img["id"], [])
        for a in anns:
            if not (isinstance(a.get("bbox"), list) and len(a["bbox"]) == 4):
                raise ValueError(f"annotation {a.get('id')} in {ann_path} has bbox {a.get('bbox')!r}; "
                                 "expected [x, y, w, h]")
        boxes_px = np.array([[a["bbox"][0], a["bbox"][1], a["bbox"][0] + a["bbox"][2],
                              a["bbox"][1] + a["bbox"][3]] for a in anns], np.float64).reshape(-1, 4)
        labels = np.array([a["category_id"] for a in anns], np.int32)
        _check_boxes(boxes_px, labels, w, h, info.num_classes, rel)
        crowd = np.array([bool(a.get("iscrowd", 0)) for a in anns], bool)
        difficult = np.array([bool(a.get("difficult", 0)) for a in anns], bool)
        yield _example(str(img["id"]), image, boxes_px[:, [1, 0, 3, 2]] / np.array([h, w, h, w]),
                       labels, crowd, difficult)


def _example(image_id: str, image: np.ndarray, boxes: np.ndarray, labels: np.ndarray,
             crowd: np.ndarray, difficult: np.ndarray) -> Example:
    """An Example from normalized (ymin, xmin, ymax, xmax) boxes: crowd regions set apart."""
    boxes = np.clip(np.asarray(boxes, np.float64).reshape(-1, 4), 0, 1).astype(np.float32)
    keep = ~crowd
    return Example(image_id, image, boxes[keep], labels[keep], crowd_boxes=boxes[crowd],
                   crowd_labels=labels[crowd], difficult=difficult[keep])


def iter_tfrecord(data: bytes, where: str):
    """Yield the records of a TFRecord file's bytes (lengths and CRCs checked)."""
    return iter_records(data, where)


@contextmanager
def open_shard(uri: str) -> Iterator[BinaryIO]:
    """An open binary reader of a local file or gs:// object (streamed, never read whole);
    raises FileNotFoundError naming it when absent."""
    if not storage.is_gcs(uri):
        if not Path(uri).is_file():
            raise FileNotFoundError(f"no such file: {uri}")
        with open(uri, "rb") as f:
            yield f
        return
    from google.api_core import exceptions

    loc = storage.parse_gcs(uri)
    blob = storage.gcs_client().bucket(loc.bucket).blob(loc.name)
    try:
        if not blob.exists():
            raise FileNotFoundError(f"no such object: {uri}")
        reader = blob.open("rb", chunk_size=8 * 1024 * 1024)
    except exceptions.GoogleAPICallError as exc:
        raise FileNotFoundError(f"cannot read {uri}: {exc}") from exc
    with reader:
        yield reader


def iter_split_records(uri: str | Path, split: str) -> Iterator[tuple[str, bytes]]:
    """(where, serialized tf.train.Example) of every record of a split, shard after shard, one
    record in memory at a time (local or gs://; old single-file artifacts too)."""
    info = read_dataset_info(uri)
    for path in info.shard_uris(split):
        with open_shard(path) as stream:
            for n, record in enumerate(iter_record_stream(stream, path)):
                yield f"{path} record {n}", record


def example_from_record(record: bytes, where: str, num_classes: int, index: int = 0) -> Example:
    """Parse and decode one serialized tf.train.Example (TF OD API keys) into an Example, with the
    checks of :func:`load_split` (errors name ``where`` and the image's file name)."""
    from edgeship.base.tfcompat import tf

    f = tf.train.Example.FromString(record).features.feature

    def fl(key):
        return np.array(f[key].float_list.value, np.float32)

    image = decode_jpeg(f["image/encoded"].bytes_list.value[0], where)
    h, w = image.shape[:2]
    xmin, ymin, xmax, ymax = fl("image/object/bbox/xmin"), fl("image/object/bbox/ymin"), \
        fl("image/object/bbox/xmax"), fl("image/object/bbox/ymax")
    labels = np.array(f["image/object/class/label"].int64_list.value, np.int32)
    if not (len(xmin) == len(ymin) == len(xmax) == len(ymax) == len(labels)):
        raise ValueError(f"{where}: bbox and label lists have different lengths")
    boxes_px = np.stack([xmin * w, ymin * h, xmax * w, ymax * h], 1).reshape(-1, 4)
    source = f["image/source_id"].bytes_list.value
    name = f["image/filename"].bytes_list.value
    label = name[0].decode() if name else where
    shard = where.rsplit(" record ", 1)[0]
    _check_boxes(boxes_px, labels, w, h, num_classes, f"{shard} ({label})")
    crowd, difficult = (_flags(f, key, len(labels), where)
                        for key in ("image/object/is_crowd", "image/object/difficult"))
    return _example(source[0].decode() if source else str(index), image,
                    np.stack([ymin, xmin, ymax, xmax], 1), labels, crowd, difficult)


def _iter_tfrecord_examples(uri: str, split: str, info: DatasetInfo) -> Iterator[Example]:
    for n, (where, record) in enumerate(iter_split_records(uri, split)):
        yield example_from_record(record, where, info.num_classes, n)


def _flags(features, key: str, n: int, where: str) -> np.ndarray:
    """A per-object 0/1 list of a record (absent = all 0); a wrong length raises naming the record."""
    values = list(features[key].int64_list.value) if key in features else []
    if not values:
        return np.zeros((n,), bool)
    if len(values) != n:
        raise ValueError(f"{where}: {key} has {len(values)} values for {n} objects")
    return np.array(values, bool)


def iter_split(uri: str | Path, split: str, fmt: str = "coco") -> Iterator[Example]:
    """The Examples of one split (train, val, calibration, ...), decoded one at a time: nothing
    but the split's annotations (COCO) or one record (TFRecord) is held besides the Example being
    yielded. Same checks and errors as :func:`load_split`: an unknown split or format at once, a
    bad image when it is reached, an empty split at the end."""
    uri = str(uri)
    info = read_dataset_info(uri)
    if info.splits and split not in info.splits:
        raise ValueError(f"no split {split!r} in {uri}; its dataset.json lists {sorted(info.splits)}")
    if fmt == "coco":
        examples = _iter_coco(uri, split, info)
    elif fmt == "tfrecord":
        examples = _iter_tfrecord_examples(uri, split, info)
    else:
        raise ValueError(f"unknown dataset format {fmt!r}; expected 'coco' or 'tfrecord'")
    return _not_empty(examples, f"split {split!r} of {uri} ({fmt}) is empty")


def _not_empty(examples: Iterator[Example], message: str) -> Iterator[Example]:
    empty = True
    for ex in examples:
        empty = False
        yield ex
    if empty:
        raise ValueError(message)


def load_split(uri: str | Path, split: str, fmt: str = "coco") -> list[Example]:
    """Read one split (train, val, calibration) of a dataset in COCO or TFRecord form, whole, into
    memory (for small splits; :func:`iter_split` streams, edgeship.detection.stream feeds tf.data).

    Raises ValueError/FileNotFoundError naming the file for a missing or corrupt image, a box
    outside the image or inverted, a class id outside the label map, or an empty split.
    """
    return list(iter_split(uri, split, fmt))


def tf_dataset(uri: str | Path, split: str, fmt: str = "coco", examples: list[Example] | None = None):
    """A tf.data.Dataset of {"image": uint8 [H,W,3], "boxes": float32 [None,4], "labels": int32 [None]},
    read lazily (one image at a time) unless ``examples`` are given."""
    from edgeship.base.tfcompat import tf

    def gen():
        for ex in (examples if examples is not None else iter_split(uri, split, fmt)):
            yield {"image": ex.image, "boxes": ex.boxes, "labels": ex.labels}

    sig = {"image": tf.TensorSpec([None, None, 3], tf.uint8),
           "boxes": tf.TensorSpec([None, 4], tf.float32),
           "labels": tf.TensorSpec([None], tf.int32)}
    return tf.data.Dataset.from_generator(gen, output_signature=sig)


def describe(uri: str | Path) -> dict:
    """The metadata a Dataset artifact carries: counts per class and split, the fingerprint."""
    info = read_dataset_info(uri)
    out = {"uri": str(uri), "name": info.name, "fingerprint": info.fingerprint,
           "image_size": info.image_size, "classes": info.class_names,
           "splits": info.splits}
    for key in ("resize", "source", "report"):
        if info.raw.get(key):
            out[key] = info.raw[key]
    return out


def validate(uri: str | Path, fmt: str = "coco") -> DatasetInfo:
    """Read every split fully, one image at a time (raising on the first bad file, or when a
    split's image count is not dataset.json's); return the dataset's info.

    train, val and calibration must be there; an extra split the dataset lists (an imported
    ``test``) is read as well."""
    info = read_dataset_info(uri)
    for split in SPLITS:
        if split not in info.splits:
            raise ValueError(f"{uri}: dataset.json lists no {split!r} split")
    for split in [*SPLITS, *sorted(set(info.splits) - set(SPLITS))]:
        n = sum(1 for _ in iter_split(uri, split, fmt))  # one image at a time
        said = (info.splits.get(split) or {}).get("images")
        if said is not None and n != said:
            raise ValueError(f"{uri}: split {split!r} has {n} images in its {fmt} files but "
                             f"dataset.json says {said}")
    return info
