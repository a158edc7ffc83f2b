"""Writing an imported dataset as the Dataset artifact, so that nothing half-written looks complete.

Local output: everything is written into a temporary folder beside the target
(``.<name>.importing-<pid>``) and renamed onto it at the end; a previous dataset there is replaced
only then, anything else there is refused before any work. A failure removes the temporary folder.

gs:// output: built locally the same way, then uploaded create-only (the prefix must be empty),
every file first and ``dataset.json`` last: readers open a dataset through dataset.json, so a
partial upload is not a dataset. A failed upload deletes what it had uploaded (best effort).
"""
from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from edgeship.base import storage
from edgeship.contracts.dataset import DATASET_JSON, LABELS_TXT, fingerprint_dir
from edgeship.detection.sources.prepare import Prepared
from edgeship.detection.sources.records import Category
from edgeship.detection.tfrecord import ShardWriter, detection_example

log = logging.getLogger(__name__)


def write_split(root: Path, split: str, items: list[Prepared], names: list[str],
                categories: list[dict]) -> dict:
    """coco/images/{split}/*.jpg, coco/annotations/{split}.json and the split's TFRecord shards
    (tfrecord/{split}-{i:05d}-of-{n:05d}.tfrecord); returns the split's dataset.json entry
    (targets only: crowd regions are not objects; ``shards``: the shard files in order)."""
    img_dir = root / "coco" / "images" / split
    img_dir.mkdir(parents=True, exist_ok=True)
    (root / "coco" / "annotations").mkdir(parents=True, exist_ok=True)
    images, annotations = [], []
    per_class = {n: 0 for n in names}
    with ShardWriter(root, split) as tfr:
        for i, p in enumerate(items):
            file_name = f"{i:06d}.jpg"
            jpeg = p.staged.read_bytes()
            os.replace(p.staged, img_dir / file_name)
            images.append({"id": i, "file_name": file_name, "width": p.width, "height": p.height,
                           "source_file": p.file, "source_id": p.source.source_id})
            for k, (box, label) in enumerate(zip(p.boxes, p.labels)):
                x0, y0, x1, y1 = box
                w, h = round(x1 - x0, 4), round(y1 - y0, 4)
                annotations.append({"id": len(annotations) + 1, "image_id": i, "category_id": label,
                                    "bbox": [x0, y0, w, h], "area": round(w * h, 4),
                                    "iscrowd": int(p.iscrowd[k]), "difficult": int(p.difficult[k]),
                                    "source_id": p.ann_ids[k]})
                if not p.iscrowd[k]:
                    per_class[names[label - 1]] += 1
            tfr.write(detection_example(i, file_name, jpeg, p.height, p.width, p.boxes,
                                        p.labels, names, is_crowd=p.iscrowd, difficult=p.difficult))
    coco = {"info": {"description": f"imported by edgeship, split {split}"}, "images": images,
            "annotations": annotations, "categories": categories}
    (root / "coco" / "annotations" / f"{split}.json").write_text(json.dumps(coco))
    return {"images": len(items), "objects": sum(per_class.values()), "per_class": per_class,
            "shards": tfr.shards}


def write_artifact(root: Path, by_split: dict[str, list[Prepared]], categories: list[Category],
                   meta: dict) -> dict:
    """Every split, labels.txt, then dataset.json with the fingerprint; returns dataset.json."""
    names = [c.name for c in categories]
    coco_categories = [{"id": i + 1, "name": c.name, "source_id": c.source_id, "supercategory": ""}
                       for i, c in enumerate(categories)]
    (root / LABELS_TXT).write_text("".join(n + "\n" for n in names))
    splits = {split: write_split(root, split, items, names, coco_categories)
              for split, items in by_split.items()}
    meta = {**meta, "splits": splits, "fingerprint": fingerprint_dir(root)}
    (root / DATASET_JSON).write_text(json.dumps(meta, indent=2))
    return meta


def check_target(out: str) -> None:
    """Refuse, before any work, a target that holds something other than a dataset."""
    if storage.is_gcs(out):
        try:
            present = storage.list_files(out)
        except Exception as exc:
            raise FileNotFoundError(f"cannot list the output {out}: {exc}") from exc
        if present:
            raise ValueError(f"output {out} already holds {len(present)} object(s) (e.g. "
                             f"{present[0]}): imports to gs:// are create-only; choose a new prefix")
        return
    path = Path(out)
    if path.exists() and not path.is_dir():
        raise ValueError(f"output {out} exists and is not a directory")
    if path.is_dir() and any(path.iterdir()) and not (path / DATASET_JSON).is_file():
        raise ValueError(f"output {out} is not empty and holds no dataset.json: refusing to write "
                         "a dataset over other files")


@contextmanager
def staging_dir(out: str) -> Iterator[Path]:
    """A temporary folder to build the artifact in: beside a local target (same file system, so
    the final rename is atomic), in the system temp dir for gs://. Removed on the way out."""
    import tempfile

    if storage.is_gcs(out):
        tmp = Path(tempfile.mkdtemp(prefix="edgeship-import-"))
    else:
        target = Path(out).resolve()
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.parent / f".{target.name}.importing-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def publish(tmp_root: Path, out: str) -> None:
    """Move the finished artifact in ``tmp_root`` to ``out`` (see the module docstring)."""
    if storage.is_gcs(out):
        _upload(tmp_root, out)
        return
    target = Path(out).resolve()
    old = None
    if target.exists():
        if any(target.iterdir()):
            old = target.parent / f".{target.name}.replaced-{os.getpid()}"
            os.replace(target, old)
        else:
            target.rmdir()
    os.replace(tmp_root, target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _upload(tmp_root: Path, uri: str) -> None:
    meta = tmp_root.parent / f"{tmp_root.name}-meta"
    meta.mkdir()
    os.replace(tmp_root / DATASET_JSON, meta / DATASET_JSON)
    try:
        storage.upload_dir(tmp_root, uri)
        storage.upload_dir(meta, uri)
    except Exception:
        _delete_prefix(uri)
        raise
    finally:
        shutil.rmtree(meta, ignore_errors=True)


def _delete_prefix(uri: str) -> None:
    try:
        loc = storage.parse_gcs(uri)
        bucket = storage.gcs_client().bucket(loc.bucket)
        for name in storage.list_files(uri):
            bucket.blob(storage.parse_gcs(name).name).delete()
    except Exception as exc:  # the upload's own error is the one to report
        log.warning("could not remove the partial upload under %s: %s", uri, exc)
