"""The Dataset artifact's contract (docs/contracts.md, "Dataset artifact"): its file names, the
keys of dataset.json, reading and checking it, and its fingerprint."""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from edgeship.base import storage

SPLITS = ("train", "val", "calibration")
EXTRA_SPLITS = ("test",)          # kept when a user's source has one; never read by the steps

FORMAT_VERSION = 1
DATASET_JSON = "dataset.json"
LABELS_TXT = "labels.txt"

TFRECORD_DIR = "tfrecord"
SHARD_MAX_EXAMPLES = 1000          # a TFRecord shard is closed at this many records...
SHARD_MAX_BYTES = 100 * 1024 * 1024  # ...or once it holds this many bytes, whichever comes first

SOURCE_FORMATS = ("coco", "voc", "tfod")     # dataset.json "source.format" of an imported dataset
RESIZE_POLICIES = ("stretch", "letterbox")   # dataset.json "resize.policy"; absent = stretch
DEFAULT_RESIZE = {"policy": "stretch"}


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

    @property
    def resize(self) -> dict:
        """{"policy": "stretch"|"letterbox", "input_size": [H, W], "fill": v}: how images are
        brought to the model's input (stretch when the dataset does not say)."""
        return dict(self.raw.get("resize") or DEFAULT_RESIZE)

    @property
    def source(self) -> dict | None:
        """The ``source`` block of an imported dataset (format, original categories, mapping,
        splits given and carved), or None for a generated one."""
        return self.raw.get("source")

    @property
    def source_ids(self) -> dict[int, object]:
        """{training id: the user's own category id (or None when the source had no ids)}."""
        return {int(c["id"]): c.get("source_id") for c in self.classes}

    def images(self, split: str) -> int:
        """The number of images dataset.json gives for ``split`` (0 when it lists no such split)."""
        return int((self.splits.get(split) or {}).get("images", 0))

    def shards(self, split: str) -> list[str]:
        """The split's TFRecord files, relative to the dataset root, in record order: the shard
        list dataset.json gives (``splits.{split}.shards``), or the single ``tfrecord/{split}.tfrecord``
        of an artifact written before shards."""
        return list((self.splits.get(split) or {}).get("shards") or [legacy_tfrecord(split)])

    def shard_uris(self, split: str) -> list[str]:
        return [join_uri(self.uri, rel) for rel in self.shards(split)]


def shard_name(split: str, index: int, count: int) -> str:
    """``tfrecord/{split}-{index:05d}-of-{count:05d}.tfrecord``: shard ``index`` (0-based) of ``count``."""
    return f"{TFRECORD_DIR}/{split}-{index:05d}-of-{count:05d}.tfrecord"


def legacy_tfrecord(split: str) -> str:
    """The one TFRecord file per split of artifacts written before shards (still read)."""
    return f"{TFRECORD_DIR}/{split}.tfrecord"


def join_uri(uri: str, *parts: str) -> str:
    base = str(uri).rstrip("/")
    return "/".join([base, *parts])


def fingerprint_dir(root: str | Path) -> str:
    """sha256 over every file's relative path and bytes, path-sorted (dataset.json excluded)."""
    root = Path(root)
    h = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file() and p.name != DATASET_JSON):
        h.update(path.relative_to(root).as_posix().encode())
        h.update(b"\0")
        h.update(hashlib.sha256(path.read_bytes()).digest())
    return "sha256:" + h.hexdigest()


def _check_shards(raw: dict, path: str) -> None:
    """Raise ValueError naming dataset.json when a split's ``shards`` is not a list of files under
    tfrecord/ (a path leaving the dataset is refused)."""
    for split, entry in (raw.get("splits") or {}).items():
        shards = entry.get("shards") if isinstance(entry, dict) else None
        if shards is None:
            continue
        if not isinstance(shards, list) or not shards or not all(
                isinstance(s, str) and s.startswith(TFRECORD_DIR + "/") and ".." not in s.split("/")
                and s.endswith(".tfrecord") for s in shards):
            raise ValueError(f"{path}: splits.{split}.shards must be a non-empty list of "
                             f"{TFRECORD_DIR}/*.tfrecord files, got {shards!r}")


def _check_source(raw: dict, path: str) -> None:
    """Raise ValueError naming dataset.json when its ``source`` or ``resize`` block is malformed."""
    resize = raw.get("resize")
    if resize is not None:
        if not isinstance(resize, dict) or resize.get("policy") not in RESIZE_POLICIES:
            raise ValueError(f"{path}: resize.policy must be one of {list(RESIZE_POLICIES)}, "
                             f"got {resize!r}")
    source = raw.get("source")
    if source is None:
        return
    if not isinstance(source, dict) or source.get("format") not in SOURCE_FORMATS:
        raise ValueError(f"{path}: source.format must be one of {list(SOURCE_FORMATS)}, got "
                         f"{source.get('format') if isinstance(source, dict) else source!r}")
    mapping = source.get("mapping")
    if not isinstance(mapping, dict):
        raise ValueError(f"{path}: source.mapping must be {{original id or name: class id}}")
    ids = {int(c["id"]) for c in raw["classes"]}
    if sorted(mapping.values()) != sorted(ids):
        raise ValueError(f"{path}: source.mapping {mapping} does not map onto the class ids "
                         f"{sorted(ids)} one to one")


def read_dataset_info(uri: str | Path) -> DatasetInfo:
    """Read and check dataset.json at the root of a dataset directory or gs:// prefix."""
    path = join_uri(str(uri), DATASET_JSON)
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
    _check_source(raw, path)
    _check_shards(raw, path)
    return DatasetInfo(uri=str(uri), name=raw.get("name", ""), image_size=raw["image_size"],
                       classes=raw["classes"], splits=raw["splits"],
                       fingerprint=raw.get("fingerprint", ""), raw=raw)
