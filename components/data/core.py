"""The data step: generate the embedded dataset, or bring the user's own (a Dataset artifact,
copied and checked, or COCO / Pascal VOC / TF OD API data, imported), and describe it.

Layout and Example type: docs/contracts.md, "Dataset artifact". Readers take a local directory
or a gs:// prefix (through edgeship.base.storage) and check what they read: a bad file gets an error
that names it and says what is wrong.
"""
from __future__ import annotations

import dataclasses
import json
import logging
from collections import Counter
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

from components.data.generate import CLASSES, DrawnImage, GeneratorConfig, draw_image, image_rng
from components.data.settings import DATA, DataSettings
from edgeship.base import storage
from edgeship.contracts.dataset import (
    FORMAT_VERSION,
    SPLITS,
    DatasetInfo,
    fingerprint_dir,
    join_uri,
    read_dataset_info,
)
from edgeship.detection.dataset import (
    Example,
    describe,
    load_split,
    tf_dataset,
    validate,
)
from edgeship.detection.sources.importer import ImportOptions, import_dataset
from edgeship.detection.tfrecord import ShardWriter, detection_example

log = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------------
# Generation


def _tf_example(image_id: int, file_name: str, jpeg: bytes, size: int | tuple[int, int], boxes_px,
                labels, names) -> bytes:
    """One serialized tf.train.Example with the TF Object Detection API keys (bytes are stable).

    size: the side of a square image, or (height, width); boxes_px: (x0, y0, x1, y1) pixels.
    """
    height, width = (size, size) if isinstance(size, int) else size
    return detection_example(image_id, file_name, jpeg, height, width, boxes_px, labels, names)


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
    """Write the embedded synthetic dataset (COCO + JPEG, TFRecord shards, dataset.json) to out_dir.

    Same arguments → identical bytes and fingerprint, in any process, with any ``workers``.
    ``config`` overrides the generator's knobs (its image_size is replaced by ``image_size``).
    An earlier dataset in out_dir is replaced; a non-empty out_dir without dataset.json is refused.
    Raises ValueError naming a bad argument.
    """
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
    """Draw one split into its JPEGs, COCO JSON and TFRecord shards; returns its dataset.json entry."""
    names = [c["name"] for c in categories]
    img_dir = out / "coco" / "images" / split
    img_dir.mkdir(parents=True, exist_ok=True)
    images, annotations = [], []
    per_class: Counter = Counter()
    jobs = [(seed, split, i, cfg) for i in range(count)]
    with ShardWriter(out, split) as writer:
        for i, drawn in enumerate(_drawn_images(jobs, workers)):
            file_name = f"{i:06d}.jpg"
            (img_dir / file_name).write_bytes(drawn.jpeg)
            images.append({"id": i, "file_name": file_name, "width": cfg.image_size,
                           "height": cfg.image_size})
            for box, label, vis in zip(drawn.boxes_px, drawn.class_ids, drawn.visible):
                annotations.append(_coco_annotation(len(annotations) + 1, i, box, label, vis))
                per_class[names[label - 1]] += 1
            writer.write(_tf_example(i, file_name, drawn.jpeg, cfg.image_size,
                                     drawn.boxes_px, drawn.class_ids, names))
            advance()
    coco = {"info": {"description": f"edgeship synthetic shapes, split {split}, seed {seed}"},
            "images": images, "annotations": annotations, "categories": categories}
    (out / "coco" / "annotations" / f"{split}.json").write_text(json.dumps(coco))
    return {"images": count, "objects": len(annotations),
            "per_class": {n: per_class.get(n, 0) for n in names}, "shards": writer.shards}


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
# Users' data


def import_options(settings: DataSettings = DATA, **overrides) -> ImportOptions:
    """ImportOptions with the data step's defaults (settings.py), ``overrides`` applied."""
    base = ImportOptions(format=settings.source_format, val_fraction=settings.val_fraction,
                         calibration_fraction=settings.calibration_fraction, seed=settings.seed,
                         strict=settings.strict, input_size=settings.image_size,
                         resize=settings.resize, max_image_side=settings.max_image_side,
                         tiny_box_px=settings.tiny_box_px)
    return dataclasses.replace(base, **overrides)


def is_artifact(uri: str) -> bool:
    """Whether ``uri`` (dir or gs:// prefix) is already a Dataset artifact (has dataset.json).
    A gs:// prefix that cannot be read is not (the importer then says why it cannot read it)."""
    try:
        return storage.exists(join_uri(str(uri), "dataset.json"))
    except Exception:  # noqa: BLE001 (auth, network, no such bucket: reported by the importer)
        return False


def _copy_artifact(source_uri: str, out: Path) -> DatasetInfo:
    """Copy a Dataset artifact, read every split in both formats, check its fingerprint."""
    import shutil

    if storage.is_gcs(source_uri):
        storage.download_dir(source_uri, out)
    else:
        shutil.copytree(source_uri, out, dirs_exist_ok=True)
    try:
        meta = json.loads((out / "dataset.json").read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{join_uri(source_uri, 'dataset.json')} is not valid JSON: {exc}") from exc
    claimed = meta.get("fingerprint") or None
    actual = fingerprint_dir(out)
    if claimed and claimed != actual:
        raise ValueError(f"{join_uri(source_uri, 'dataset.json')} says fingerprint {claimed} but its files "
                         f"hash to {actual}: the files changed after dataset.json was written")
    if not claimed:
        meta["fingerprint"] = actual
        (out / "dataset.json").write_text(json.dumps(meta, indent=2))
    for fmt in ("coco", "tfrecord"):
        validate(out, fmt)
    log.info("copied the dataset %s into %s (%s)", source_uri, out, actual)
    return read_dataset_info(out)


def materialize(source_uri: str, out_dir: str | Path, options: ImportOptions | None = None) -> DatasetInfo:
    """Bring a user's dataset (local path or gs:// prefix) into out_dir as a checked Dataset artifact.

    A Dataset artifact (it has dataset.json) is copied, read in full in both formats and its
    fingerprint checked. Anything else is imported (edgeship.detection.sources: COCO, Pascal VOC,
    TF OD API TFRecords; splits it lacks carved from train; a data report): see
    ``import_dataset``. ``options`` defaults to ``import_options()`` (settings.py).
    Raises ValueError / FileNotFoundError naming the file and the annotation or record.
    """
    source_uri = str(source_uri)
    if not storage.is_gcs(source_uri) and not Path(source_uri).exists():
        raise FileNotFoundError(f"dataset source {source_uri} does not exist")
    if is_artifact(source_uri):
        return _copy_artifact(source_uri, Path(out_dir))
    return import_dataset(source_uri, out_dir, options or import_options())


__all__ = ["CLASSES", "Example", "DatasetInfo", "ImportOptions", "generate_dataset",
           "read_dataset_info", "load_split", "tf_dataset", "describe", "validate", "materialize",
           "import_dataset", "import_options", "fingerprint_dir", "SPLITS"]
