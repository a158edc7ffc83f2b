"""The variants artifact (docs/contracts.md "Variants artifact"): a folder with ``variants.json``,
the ``<variant>.tflite`` files, ``labels.txt`` and optional Core ML packages. quantize and autoquant
write it (:func:`save_index`); evaluate (:func:`load_variants`) and publish (:func:`read_variants`,
:func:`entry`) read it. ``variants.json`` = {"variants": [entry...], "coreml": [...], "skipped":
[...]}; an entry has ENTRY_KEYS (name, file, input, outputs) plus scheme, source, extras."""
from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

log = logging.getLogger(__name__)

FILE_NAME = "variants.json"
LABELS_FILE = "labels.txt"
KEYS = ("variants", "coreml", "skipped")
ENTRY_KEYS = ("name", "file", "input", "outputs")



@dataclass(frozen=True)
class VariantSpec:
    """One entry of variants.json, with its file resolved."""

    name: str
    path: Path
    size_bytes: int
    input: dict[str, Any]
    outputs: dict[str, Any]
    scheme: str | None
    source: str | None


def load_variants(variants_dir: str | os.PathLike, only: Sequence[str] | None = None) -> tuple[list[VariantSpec], list[str] | None]:
    """Read variants.json (and labels.txt when present) from a variants artifact directory.

    Raises FileNotFoundError for a missing directory, variants.json or .tflite, ValueError for a
    malformed or empty list, naming the file.
    """
    root = Path(variants_dir)
    if str(variants_dir).startswith("gs://"):
        raise ValueError(f"variants must be a local directory (download it first), got {variants_dir}")
    doc = read_variants(root)
    index = root / FILE_NAME
    entries = doc["variants"]
    specs = []
    for i, entry in enumerate(entries):
        if only and entry["name"] not in only:
            continue
        path = root / entry["file"]
        if not path.is_file():
            raise FileNotFoundError(f"{index}: variant {entry['name']!r} file not found: {path}")
        specs.append(VariantSpec(name=str(entry["name"]), path=path, size_bytes=path.stat().st_size,
                                 input=dict(entry.get("input") or {}), outputs=dict(entry.get("outputs") or {}),
                                 scheme=entry.get("scheme"), source=entry.get("source")))
    if only:
        unknown = sorted(set(only) - {s.name for s in specs})
        if unknown:
            raise ValueError(f"variant(s) {unknown} not in {index} (has {[e.get('name') for e in entries]})")
    for skipped in doc.get("skipped") or []:
        log.warning("variant %r was skipped by quantize (%s): not evaluated", skipped.get("name"),
                    skipped.get("error") or skipped.get("stage"))
    labels_path = root / "labels.txt"
    labels = None
    if labels_path.is_file():
        labels = [line.strip() for line in labels_path.read_text().splitlines() if line.strip()]
    return specs, labels


def read_variants(variants_dir: str | os.PathLike) -> dict[str, Any]:
    """variants.json of a variants artifact, checked: an object whose 'variants' is a non-empty
    list of entries with a name and a file (FileNotFoundError / ValueError naming the file)."""
    path = Path(variants_dir) / FILE_NAME
    if not path.is_file():
        raise FileNotFoundError(f"variants artifact has no {FILE_NAME}: {path}")
    try:
        doc = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not valid JSON: {exc}") from exc
    entries = doc.get("variants") if isinstance(doc, dict) else None
    if not isinstance(entries, list) or not entries:
        raise ValueError(f"{path} lists no variants (expected a non-empty 'variants' list)")
    for i, item in enumerate(entries):
        if not isinstance(item, dict) or not item.get("name") or not item.get("file"):
            raise ValueError(f"{path}: variant #{i} needs 'name' and 'file', got {item!r}")
    return doc


def entry(doc: dict[str, Any], name: str, where: str = FILE_NAME) -> dict[str, Any]:
    """The entry of variant ``name`` with every ENTRY_KEYS key (ValueError naming what is missing)."""
    entries = {v.get("name"): v for v in doc.get("variants", []) if isinstance(v, dict)}
    if name not in entries:
        raise ValueError(f"variant {name!r} is not in {where} (has {sorted(map(str, entries))})")
    for key in ENTRY_KEYS:
        if key not in entries[name]:
            raise ValueError(f"variant {name!r} in {where} has no {key!r}")
    return entries[name]


def save_index(doc: dict[str, Any], out_dir: str | os.PathLike) -> Path:
    """Write variants.json into ``out_dir`` atomically (a temp file, then rename)."""
    out = Path(out_dir)
    tmp = out / (FILE_NAME + ".tmp")
    tmp.write_text(json.dumps(doc, indent=1, default=str) + "\n")
    tmp.replace(out / FILE_NAME)
    return out / FILE_NAME
