"""edgeship.contracts.variants: moved from components/evaluate/core.py."""
from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

log = logging.getLogger(__name__)



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
    index = root / "variants.json"
    if not index.is_file():
        raise FileNotFoundError(f"variants artifact has no variants.json: {index}")
    try:
        doc = json.loads(index.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{index} is not valid JSON: {exc}") from exc
    entries = doc.get("variants") if isinstance(doc, dict) else None
    if not isinstance(entries, list) or not entries:
        raise ValueError(f"{index} lists no variants (expected a non-empty 'variants' list)")
    specs = []
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict) or not entry.get("name") or not entry.get("file"):
            raise ValueError(f"{index}: variant #{i} needs 'name' and 'file', got {entry!r}")
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
    """variants.json of a quantize output dir (FileNotFoundError / ValueError when bad)."""
    path = Path(variants_dir) / "variants.json"
    if not path.is_file():
        raise FileNotFoundError(f"variants.json not found in {variants_dir}")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON: {exc}") from exc
