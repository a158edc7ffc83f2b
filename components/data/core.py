"""The data step: generate the embedded dataset, read COCO or TFRecord data, describe it.

Layout and Example type: docs/contracts.md, "Dataset artifact". Readers take a local directory
or a gs:// prefix (through edgeship.base.storage) and check what they read: a bad file gets an error
that names it and says what is wrong.
"""
from __future__ import annotations

import hashlib
import json
import logging
from collections import Counter
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

from components.data.generate import CLASSES, DrawnImage, GeneratorConfig, draw_image, image_rng
from edgeship.base import storage
from edgeship.contracts.dataset import (
    FORMAT_VERSION,
    SPLITS,
    DatasetInfo,
    join_uri,
    read_dataset_info,
)
from edgeship.detection.dataset import (
    Example,
    _read_coco,
    describe,
    load_split,
    tf_dataset,
    validate,
)
from edgeship.detection.tfrecord import encode_example, frame

log = logging.getLogger(__name__)


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
    _check_generate_args(sizes, seed)
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
    with _image_progress(total, enabled=progress) as advance:
        for split, count in sizes.items():
            splits_meta[split] = _write_split(out, split, count, seed=seed, cfg=cfg, categories=categories,
                                              workers=workers, advance=advance)
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


def _check_generate_args(sizes: dict[str, int], seed: int) -> None:
    """Raise ValueError for a split without images or a negative / non-integer seed."""
    for split, count in sizes.items():
        if not isinstance(count, int) or count < 1:
            raise ValueError(f"every split needs at least one image: {split}={count!r}")
    if not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")


@contextmanager
def _image_progress(total: int, *, enabled: bool) -> Iterator[Callable[[], None]]:
    """Yield ``advance()``, which counts one more image on a transient progress bar (or does nothing)."""
    if not enabled:
        yield lambda: None
        return
    from rich.progress import Progress

    bar = Progress(transient=True)
    bar.start()
    task = bar.add_task("generating images", total=total)
    done = 0

    def advance() -> None:
        nonlocal done
        done += 1
        bar.update(task, completed=done)

    try:
        yield advance
    finally:
        bar.stop()


def _write_split(out: Path, split: str, count: int, *, seed: int, cfg: GeneratorConfig,
                 categories: list[dict], workers: int, advance: Callable[[], None]) -> dict:
    """Draw one split into its JPEGs, COCO JSON and TFRecord; returns its dataset.json entry."""
    names = [c["name"] for c in categories]
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
                annotations.append(_coco_annotation(len(annotations) + 1, i, box, label, vis))
                per_class[names[label - 1]] += 1
            writer.write(frame(_tf_example(i, file_name, drawn.jpeg, cfg.image_size,
                                           drawn.boxes_px, drawn.class_ids, names)))
            advance()
    coco = {"info": {"description": f"edgeship synthetic shapes, split {split}, seed {seed}"},
            "images": images, "annotations": annotations, "categories": categories}
    (out / "coco" / "annotations" / f"{split}.json").write_text(json.dumps(coco))
    return {"images": count, "objects": len(annotations),
            "per_class": {n: per_class.get(n, 0) for n in names}}


def _coco_annotation(ann_id: int, image_id: int, box: tuple[float, float, float, float], label: int,
                     visible: float) -> dict:
    """One COCO annotation (integer xywh bbox) of a drawn object, with its visible fraction."""
    x0, y0, x1, y1 = (int(v) for v in box)
    return {
        "id": ann_id, "image_id": image_id, "category_id": label,
        "bbox": [x0, y0, x1 - x0, y1 - y0], "area": (x1 - x0) * (y1 - y0),
        "iscrowd": 0, "visible": visible,
    }


# ---------------------------------------------------------------------------------------------
# Reading


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
            raise ValueError(f"{join_uri(source_uri, 'dataset.json')} is not valid JSON: {exc}") from exc
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
        raise ValueError(f"{join_uri(source_uri, 'dataset.json')} says fingerprint {claimed} but its files "
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
