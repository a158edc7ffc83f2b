"""edgeship.contracts.dataset: moved from components/data/core.py."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from edgeship.base import storage

SPLITS = ("train", "val", "calibration")


FORMAT_VERSION = 1


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


def join_uri(uri: str, *parts: str) -> str:
    base = str(uri).rstrip("/")
    return "/".join([base, *parts])


def read_dataset_info(uri: str | Path) -> DatasetInfo:
    """Read and check dataset.json at the root of a dataset directory or gs:// prefix."""
    path = join_uri(str(uri), "dataset.json")
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
