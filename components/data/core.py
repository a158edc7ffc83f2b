"""The data step: generate the embedded dataset, read COCO or TFRecord data, describe it.

Layout and Example type: docs/contracts.md, "Dataset artifact". Readers take a local directory
or a gs:// prefix (through edgeship.storage) and check what they read: a bad file gets an error
that names it and says what is wrong.
"""
from __future__ import annotations

import hashlib
import io
import json
import logging
from collections import Counter
from dataclasses import dataclass
from typing import Iterator
from pathlib import Path

import numpy as np

from components.data.generate import CLASSES, DrawnImage, GeneratorConfig, draw_image, image_rng
from components.data.tfrecord import encode_example, frame, iter_records
from edgeship import storage

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "calibration")
FORMAT_VERSION = 1


@dataclass
class Example:
    """One image and its objects. boxes: float32 [N, 4] normalized (ymin, xmin, ymax, xmax);
    labels: int32 [N] class ids 1..K."""

    image_id: str
    image: np.ndarray
    boxes: np.ndarray
    labels: np.ndarray


@dataclass
class DatasetInfo:
    uri: str
    name: str
    image_size: list[int]
    classes: list[dict]
    splits: dict
    fingerprint: str
    raw: dict

    @property
    def class_names(self) -> list[str]:
        return [c["name"] for c in sorted(self.classes, key=lambda c: c["id"])]

    @property
    def num_classes(self) -> int:
        return len(self.classes)


def _join(uri: str, *parts: str) -> str:
    base = str(uri).rstrip("/")
    return "/".join([base, *parts])


# ---------------------------------------------------------------------------------------------
# Generation


def fingerprint_dir(root: Path) -> str:
    """sha256 over every file's relative path and bytes, path-sorted (dataset.json excluded)."""
    h = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file() and p.name != "dataset.json"):
        h.update(path.relative_to(root).as_posix().encode())
        h.update(b"\0")
        h.update(hashlib.sha256(path.read_bytes()).digest())
    return "sha256:" + h.hexdigest()


def _tf_example(image_id: int, file_name: str, jpeg: bytes, size: int | tuple[int, int], boxes_px,
                labels, names) -> bytes:
    """One serialized tf.train.Example with the TF Object Detection API keys (bytes are stable).

    size: the side of a square image, or (height, width); boxes_px: (x0, y0, x1, y1) pixels.
    """
    height, width = (size, size) if isinstance(size, int) else size
    return encode_example({
        "image/encoded": ("bytes", [jpeg]),
        "image/format": ("bytes", [b"jpeg"]),
        "image/height": ("int64", [height]),
        "image/width": ("int64", [width]),
        "image/filename": ("bytes", [file_name.encode()]),
        "image/source_id": ("bytes", [str(image_id).encode()]),
        "image/object/bbox/xmin": ("float", [b[0] / width for b in boxes_px]),
        "image/object/bbox/ymin": ("float", [b[1] / height for b in boxes_px]),
        "image/object/bbox/xmax": ("float", [b[2] / width for b in boxes_px]),
        "image/object/bbox/ymax": ("float", [b[3] / height for b in boxes_px]),
        "image/object/class/label": ("int64", list(labels)),
        "image/object/class/text": ("bytes", [names[i - 1].encode() for i in labels]),
    })


def _draw(job: tuple[int, str, int, GeneratorConfig]) -> DrawnImage:
    seed, split, index, cfg = job
    return draw_image(image_rng(seed, split, index), cfg)


def _drawn_images(jobs: list, workers: int):
    """Draw the jobs in order, in ``workers`` processes when more than one (same bytes either way)."""
    if workers <= 1 or len(jobs) < 4 * workers:
        yield from map(_draw, jobs)
        return
    import multiprocessing

    with multiprocessing.get_context("fork").Pool(workers) as pool:
        yield from pool.imap(_draw, jobs, chunksize=16)


def _clear_previous(out: Path) -> None:
    """Make ``out`` ready for a new dataset: remove an earlier dataset's files (stale images would
    otherwise stay and enter the fingerprint); refuse a directory holding anything else."""
    import shutil

    if not out.exists():
        return
    if not out.is_dir():
        raise ValueError(f"dataset output {out} exists and is not a directory")
    if not any(out.iterdir()):
        return
    if not (out / "dataset.json").is_file():
        raise ValueError(f"dataset output {out} is not empty and holds no dataset.json: refusing to "
                         "write a dataset over other files")
    for name in ("coco", "tfrecord"):
        shutil.rmtree(out / name, ignore_errors=True)
    for name in ("dataset.json", "labels.txt"):
        (out / name).unlink(missing_ok=True)


def generate_dataset(
    out_dir: str | Path,
    *,
    seed: int = 0,
    train: int = 1500,
    val: int = 300,
    calibration: int = 200,
    image_size: int = 160,
    progress: bool = False,
    workers: int = 1,
    config: GeneratorConfig | None = None,
) -> DatasetInfo:
    """Write the embedded synthetic dataset (COCO + JPEG, TFRecord, dataset.json) to out_dir.

    Same arguments → identical bytes and fingerprint, in any process, with any ``workers``.
    ``config`` overrides the generator's knobs (its image_size is replaced by ``image_size``).
    An earlier dataset in out_dir is replaced; a non-empty out_dir without dataset.json is refused.
    Raises ValueError naming a bad argument.
    """
    import dataclasses

    sizes = {"train": train, "val": val, "calibration": calibration}
    for split, count in sizes.items():
        if not isinstance(count, int) or count < 1:
            raise ValueError(f"every split needs at least one image: {split}={count!r}")
    if not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    cfg = dataclasses.replace(config or GeneratorConfig(), image_size=int(image_size))
    cfg.validate()
    out = Path(out_dir)
    _clear_previous(out)
    names = list(cfg.classes)
    categories = [{"id": i + 1, "name": n, "supercategory": "shape"} for i, n in enumerate(names)]
    (out / "tfrecord").mkdir(parents=True, exist_ok=True)
    (out / "coco" / "annotations").mkdir(parents=True, exist_ok=True)
    (out / "labels.txt").write_text("".join(n + "\n" for n in names))
    splits_meta = {}
    total = sum(sizes.values())
    done = 0
    bar = None
    if progress:
        from rich.progress import Progress

        bar = Progress(transient=True)
        bar.start()
        task = bar.add_task("generating images", total=total)
    try:
        for split, count in sizes.items():
            img_dir = out / "coco" / "images" / split
            img_dir.mkdir(parents=True, exist_ok=True)
            images, annotations = [], []
            per_class: Counter = Counter()
            jobs = [(seed, split, i, cfg) for i in range(count)]
            with open(out / "tfrecord" / f"{split}.tfrecord", "wb") as writer:
                for i, drawn in enumerate(_drawn_images(jobs, workers)):
                    file_name = f"{i:06d}.jpg"
                    (img_dir / file_name).write_bytes(drawn.jpeg)
                    images.append({"id": i, "file_name": file_name, "width": cfg.image_size,
                                   "height": cfg.image_size})
                    for box, label, vis in zip(drawn.boxes_px, drawn.class_ids, drawn.visible):
                        x0, y0, x1, y1 = (int(v) for v in box)
                        annotations.append({
                            "id": len(annotations) + 1, "image_id": i, "category_id": label,
                            "bbox": [x0, y0, x1 - x0, y1 - y0], "area": (x1 - x0) * (y1 - y0),
                            "iscrowd": 0, "visible": vis,
                        })
                        per_class[names[label - 1]] += 1
                    writer.write(frame(_tf_example(i, file_name, drawn.jpeg, cfg.image_size,
                                                   drawn.boxes_px, drawn.class_ids, names)))
                    done += 1
                    if bar:
                        bar.update(task, completed=done)
            coco = {"info": {"description": f"edgeship synthetic shapes, split {split}, seed {seed}"},
                    "images": images, "annotations": annotations, "categories": categories}
            (out / "coco" / "annotations" / f"{split}.json").write_text(json.dumps(coco))
            splits_meta[split] = {"images": count, "objects": len(annotations),
                                  "per_class": {n: per_class.get(n, 0) for n in names}}
    finally:
        if bar:
            bar.stop()
    meta = {
        "format_version": FORMAT_VERSION,
        "name": "edgeship-shapes",
        "image_size": [cfg.image_size, cfg.image_size],
        "seed": seed,
        "classes": [{"id": c["id"], "name": c["name"]} for c in categories],
        "splits": splits_meta,
        "fingerprint": fingerprint_dir(out),
        "generator": cfg.to_json(),
    }
    (out / "dataset.json").write_text(json.dumps(meta, indent=2))
    log.info("wrote %d images to %s (%s)", total, out, meta["fingerprint"])
    return read_dataset_info(out)


# ---------------------------------------------------------------------------------------------
# Reading


def read_dataset_info(uri: str | Path) -> DatasetInfo:
    """Read and check dataset.json at the root of a dataset directory or gs:// prefix."""
    path = _join(str(uri), "dataset.json")
    try:
        raw = json.loads(storage.read_bytes(path))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not valid JSON: {exc}") from exc
    for key in ("classes", "splits", "image_size"):
        if key not in raw:
            raise ValueError(f"{path} has no {key!r} field")
    ids = [c.get("id") for c in raw["classes"]]
    if sorted(ids) != list(range(1, len(ids) + 1)):
        raise ValueError(f"{path}: class ids must be 1..K, got {ids}")
    return DatasetInfo(uri=str(uri), name=raw.get("name", ""), image_size=raw["image_size"],
                       classes=raw["classes"], splits=raw["splits"],
                       fingerprint=raw.get("fingerprint", ""), raw=raw)


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


def _read_coco(uri: str, split: str) -> tuple[str, dict]:
    ann_path = _join(uri, "coco", "annotations", f"{split}.json")
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
    """The bytes of each URI in order (a FileNotFoundError in place of a missing one).

    gs:// objects are fetched 16 at a time (one request each would otherwise be serial).
    """
    def one(u: str) -> bytes | FileNotFoundError:
        try:
            return storage.read_bytes(u)
        except FileNotFoundError as exc:
            return exc

    if not uris or not storage.is_gcs(uris[0]):
        return map(one, uris)
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(16) as pool:
        return iter(list(pool.map(one, uris)))


def _load_coco(uri: str, split: str, info: DatasetInfo) -> list[Example]:
    ann_path, coco = _read_coco(uri, split)
    image_ids = {img["id"] for img in coco["images"]}
    by_image: dict[int, list[dict]] = {}
    for ann in coco["annotations"]:
        if ann.get("image_id") not in image_ids:
            raise ValueError(f"annotation {ann.get('id')} in {ann_path} refers to image id "
                             f"{ann.get('image_id')!r}, which is not in its images")
        by_image.setdefault(ann["image_id"], []).append(ann)
    out = []
    rels = [f"coco/images/{split}/{img['file_name']}" for img in coco["images"]]
    blobs = _read_many([_join(uri, rel) for rel in rels])
    for img, rel, data in zip(coco["images"], rels, blobs):
        where = _join(uri, rel)
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
        boxes = np.clip(boxes_px[:, [1, 0, 3, 2]] / np.array([h, w, h, w], np.float64), 0, 1)
        out.append(Example(str(img["id"]), image, boxes.astype(np.float32), labels))
    return out


def iter_tfrecord(data: bytes, where: str):
    """Yield the records of a TFRecord file's bytes (lengths and CRCs checked)."""
    return iter_records(data, where)


def _load_tfrecord(uri: str, split: str, info: DatasetInfo) -> list[Example]:
    from edgeship.tfcompat import tf

    path = _join(uri, "tfrecord", f"{split}.tfrecord")
    data = storage.read_bytes(path)
    out = []
    for n, record in enumerate(iter_tfrecord(data, path)):
        where = f"{path} record {n}"
        ex = tf.train.Example.FromString(record)
        f = ex.features.feature

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
        _check_boxes(boxes_px, labels, w, h, info.num_classes, f"{path} ({label})")
        boxes = np.clip(np.stack([ymin, xmin, ymax, xmax], 1).reshape(-1, 4), 0, 1)
        out.append(Example(source[0].decode() if source else str(n), image, boxes.astype(np.float32), labels))
    return out


def load_split(uri: str | Path, split: str, fmt: str = "coco") -> list[Example]:
    """Read one split (train, val, calibration) of a dataset in COCO or TFRecord form.

    Raises ValueError/FileNotFoundError naming the file for a missing or corrupt image, a box
    outside the image or inverted, a class id outside the label map, or an empty split.
    """
    uri = str(uri)
    info = read_dataset_info(uri)
    if info.splits and split not in info.splits:
        raise ValueError(f"no split {split!r} in {uri}; its dataset.json lists {sorted(info.splits)}")
    if fmt == "coco":
        examples = _load_coco(uri, split, info)
    elif fmt == "tfrecord":
        examples = _load_tfrecord(uri, split, info)
    else:
        raise ValueError(f"unknown dataset format {fmt!r}; expected 'coco' or 'tfrecord'")
    if not examples:
        raise ValueError(f"split {split!r} of {uri} ({fmt}) is empty")
    return examples


def tf_dataset(uri: str | Path, split: str, fmt: str = "coco", examples: list[Example] | None = None):
    """A tf.data.Dataset of {"image": uint8 [H,W,3], "boxes": float32 [None,4], "labels": int32 [None]}."""
    from edgeship.tfcompat import tf

    examples = examples if examples is not None else load_split(uri, split, fmt)

    def gen():
        for ex in examples:
            yield {"image": ex.image, "boxes": ex.boxes, "labels": ex.labels}

    sig = {"image": tf.TensorSpec([None, None, 3], tf.uint8),
           "boxes": tf.TensorSpec([None, 4], tf.float32),
           "labels": tf.TensorSpec([None], tf.int32)}
    return tf.data.Dataset.from_generator(gen, output_signature=sig)


def describe(uri: str | Path) -> dict:
    """The metadata a Dataset artifact carries: counts per class and split, the fingerprint."""
    info = read_dataset_info(uri)
    return {"uri": str(uri), "name": info.name, "fingerprint": info.fingerprint,
            "image_size": info.image_size, "classes": info.class_names,
            "splits": info.splits}


def validate(uri: str | Path, fmt: str = "coco") -> DatasetInfo:
    """Read every split fully (raising on the first bad file); return the dataset's info."""
    info = read_dataset_info(uri)
    for split in SPLITS:
        if split not in info.splits:
            raise ValueError(f"{uri}: dataset.json lists no {split!r} split")
        load_split(uri, split, fmt)
    return info


def _coco_metadata(root: Path) -> dict:
    """dataset.json fields derived from a COCO-only dataset (the user brought no dataset.json)."""
    classes = None
    splits, sizes = {}, Counter()
    for split in SPLITS:
        ann_path, coco = _read_coco(str(root), split)
        cats = sorted((int(c["id"]), str(c["name"])) for c in coco.get("categories", []))
        if not cats:
            raise ValueError(f"{ann_path} has no categories: cannot tell the class names")
        if [i for i, _ in cats] != list(range(1, len(cats) + 1)):
            raise ValueError(f"{ann_path}: category ids must be 1..K, got {[i for i, _ in cats]}")
        if classes is None:
            classes = cats
        elif cats != classes:
            raise ValueError(f"{ann_path}: categories {cats} differ from the train split's {classes}")
        names = dict(cats)
        per_class = Counter(names.get(a["category_id"], str(a["category_id"])) for a in coco["annotations"])
        splits[split] = {"images": len(coco["images"]), "objects": len(coco["annotations"]),
                         "per_class": {n: per_class.get(n, 0) for _, n in cats}}
        sizes.update((img.get("height"), img.get("width")) for img in coco["images"])
    (h, w), _ = sizes.most_common(1)[0] if sizes else ((None, None), 0)
    return {"format_version": FORMAT_VERSION, "name": root.name, "image_size": [h, w], "seed": None,
            "classes": [{"id": i, "name": n} for i, n in classes], "splits": splits,
            "generator": None}


def _write_tfrecords(root: Path, info: DatasetInfo) -> None:
    """TFRecord files for every split, written from the COCO JSON + JPEGs under root."""
    names = info.class_names
    (root / "tfrecord").mkdir(parents=True, exist_ok=True)
    for split in SPLITS:
        _, coco = _read_coco(str(root), split)
        by_image: dict[int, list[dict]] = {}
        for ann in coco["annotations"]:
            by_image.setdefault(ann["image_id"], []).append(ann)
        with open(root / "tfrecord" / f"{split}.tfrecord", "wb") as fh:
            for img in coco["images"]:
                anns = by_image.get(img["id"], [])
                boxes = [(a["bbox"][0], a["bbox"][1], a["bbox"][0] + a["bbox"][2], a["bbox"][1] + a["bbox"][3])
                         for a in anns]
                jpeg = (root / "coco" / "images" / split / img["file_name"]).read_bytes()
                fh.write(frame(_tf_example(img["id"], img["file_name"], jpeg,
                                           (int(img["height"]), int(img["width"])), boxes,
                                           [int(a["category_id"]) for a in anns], names)))


def materialize(source_uri: str, out_dir: str | Path) -> DatasetInfo:
    """Bring a user's dataset (local dir or gs:// prefix) into out_dir as a checked Dataset artifact.

    The source needs coco/annotations/{train,val,calibration}.json and coco/images/{split}/;
    dataset.json, labels.txt and tfrecord/ are optional and made from the COCO data when absent.
    Every split is read in full in each format (a bad file raises, naming it). When the source's
    dataset.json carries a fingerprint and nothing had to be added, the copy must match it.
    Side effect: writes into out_dir. Returns the artifact's info (with its fingerprint).
    """
    import shutil

    source_uri = str(source_uri)
    out = Path(out_dir)
    if storage.is_gcs(source_uri):
        storage.download_dir(source_uri, out)
    else:
        if not Path(source_uri).is_dir():
            raise FileNotFoundError(f"dataset source {source_uri} is not a directory")
        shutil.copytree(source_uri, out, dirs_exist_ok=True)
    meta_path = out / "dataset.json"
    claimed = None
    added = []
    if meta_path.is_file():
        try:
            meta = json.loads(meta_path.read_text())
        except json.JSONDecodeError as exc:
            raise ValueError(f"{_join(source_uri, 'dataset.json')} is not valid JSON: {exc}") from exc
        claimed = meta.get("fingerprint") or None
    else:
        meta = _coco_metadata(out)
        added.append("dataset.json")
    if not (out / "labels.txt").is_file():
        (out / "labels.txt").write_text("".join(c["name"] + "\n" for c in sorted(meta["classes"], key=lambda c: c["id"])))
        added.append("labels.txt")
    meta["fingerprint"] = ""
    meta_path.write_text(json.dumps(meta, indent=2))
    if not all((out / "tfrecord" / f"{s}.tfrecord").is_file() for s in SPLITS):
        _write_tfrecords(out, read_dataset_info(out))
        added.append("tfrecord/")
    actual = fingerprint_dir(out)
    if claimed and not added and claimed != actual:
        raise ValueError(f"{_join(source_uri, 'dataset.json')} says fingerprint {claimed} but its files "
                         f"hash to {actual}: the files changed after dataset.json was written")
    meta["fingerprint"] = actual
    if added:
        meta["derived"] = {"source": source_uri, "added": added}
    meta_path.write_text(json.dumps(meta, indent=2))
    for fmt in ("coco", "tfrecord"):
        validate(out, fmt)
    log.info("materialized %s into %s (%s%s)", source_uri, out, actual,
             f"; added {', '.join(added)}" if added else "")
    return read_dataset_info(out)


__all__ = ["CLASSES", "Example", "DatasetInfo", "generate_dataset", "read_dataset_info",
           "load_split", "tf_dataset", "describe", "validate", "materialize", "SPLITS"]
