"""The channel's champion: the model a channel serves now, as the gate compares against it.

Looked up where clients look (the Firestore registry, ``registry.serving_version``), or, when
Firestore cannot be read, the newest manifest for the channel in the bucket. ``fetch_model``
downloads the champion's .tflite from its version folder and checks its size and sha256 against
the manifest, so the evaluation can re-score it on the challenger's own images (a paired
comparison instead of two figures measured on different data).
"""
from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, replace
from pathlib import Path

from edgeship.contracts.decision import Champion
from edgeship.delivery import registry

log = logging.getLogger(__name__)


def champion_from_manifest(manifest: dict, source: str) -> Champion:
    """Build a Champion from a published manifest.json (functions/register_model/manifest.schema.json)."""
    metrics = manifest.get("metrics") or {}
    value = None
    for key in ("map", "mAP", "map_50_95"):
        if metrics.get(key) is not None:
            value = float(metrics[key])
            break
    return Champion(version=str(manifest.get("version")), map=value,
                    variant=manifest.get("variant") or metrics.get("variant"),
                    dataset_fingerprint=manifest.get("dataset_fingerprint"), source=source,
                    labels=[str(x) for x in manifest["labels"]] if isinstance(manifest.get("labels"), list) else None)


def find_champion_gcs(bucket: str, model_name: str, channel: str) -> Champion | None:
    """The newest manifest published to ``channel`` under gs://bucket/models/{model}/ (used when
    the Firestore registry cannot be read). None when nothing was published there yet."""
    found = registry.newest_manifest_in_bucket(bucket, model_name, channel)
    return champion_from_manifest(found[1], source=found[0]) if found else None


def find_champion_firestore(model_name: str, channel: str, db=None) -> Champion | None:
    """The channel's current model as clients see it (the channel rule,
    ``edgeship.delivery.registry.serving_version``). Its mAP comes from the registered manifest
    (``models/{model}/versions/{version}.manifest.metrics``). None when nothing was released.
    """
    db = db or registry.firestore_client()
    control = registry.channel_state(db, model_name, channel)
    newest = registry.newest_release(db, model_name, channel)
    version = registry.serving_version(control, newest["version"] if newest else None)
    if version is None:
        return None
    how = "pinned by operator" if control.get("pinned_version") else "newest release"
    source = f"firestore models/{model_name} channel {channel} ({how}"
    source += ", channel paused)" if control.get("paused") else ")"
    manifest = registry.version_manifest(db, model_name, version)
    if manifest is None:
        return Champion(version=version, map=None, source=source + " without a version record")
    champion = champion_from_manifest(manifest, source=source)
    return replace(champion, version=version, source=source)


def find_champion(bucket: str, model_name: str, channel: str) -> Champion | None:
    """The model currently on ``channel``: from the Firestore registry (what clients follow);
    when Firestore cannot be read, the newest manifest for that channel in the bucket (the
    source says which was used)."""
    try:
        return find_champion_firestore(model_name, channel)
    except Exception as exc:  # noqa: BLE001 - any registry failure: fall back, and say so
        log.warning("gate: cannot read the Firestore registry (%s); using the newest manifest "
                    "in gs://%s", str(exc)[:200], bucket)
        champion = find_champion_gcs(bucket, model_name, channel) if bucket else None
        if champion is None:
            return None
        return replace(champion, source=f"{champion.source} (Firestore unavailable)")




@dataclass(frozen=True)
class ChampionModel:
    """The champion's model file, downloaded and checked, with its manifest."""

    version: str
    path: Path
    manifest: dict
    uri: str


def fetch_model(bucket: str, model_name: str, version: str, dest_dir: str | Path) -> ChampionModel:
    """Download the .tflite of published ``version`` (gs://bucket/models/{model}/{version}/) into
    ``dest_dir``, checked against its manifest (size, sha256). Raises ValueError naming the object
    when the manifest or file is missing, of another version, not a .tflite, or corrupt."""
    from edgeship.base import storage

    prefix = f"gs://{bucket}/models/{model_name}/{version}/"
    try:
        manifest = json.loads(storage.read_bytes(prefix + "manifest.json"))
    except (FileNotFoundError, ValueError) as exc:
        raise ValueError(f"champion {version}: cannot read {prefix}manifest.json: {exc}") from exc
    if not isinstance(manifest, dict) or manifest.get("version") != version:
        raise ValueError(f"champion {version}: {prefix}manifest.json is for version "
                         f"{manifest.get('version') if isinstance(manifest, dict) else None!r}")
    files = manifest.get("files")
    if not isinstance(files, list):
        raise ValueError(f"champion {version}: {prefix}manifest.json 'files' must be a list, got {files!r:.80}")
    entries = [f for f in files if isinstance(f, dict) and f.get("format") == "tflite"]
    if not entries:
        raise ValueError(f"champion {version}: {prefix}manifest.json lists no .tflite file (a Core ML "
                         "or other model cannot be re-scored here)")
    entry = entries[0]
    size = entry.get("size")
    if not isinstance(size, int) or isinstance(size, bool) or not isinstance(entry.get("sha256"), str):
        raise ValueError(f"champion {version}: {prefix}manifest.json gives the model file size {size!r:.40} "
                         f"and sha256 {entry.get('sha256')!r:.80}: not an integer and a hex string")
    name = str(entry.get("path", ""))
    if not name or "/" in name or name.startswith("."):
        raise ValueError(f"champion {version}: bad model file path {name!r} in {prefix}manifest.json")
    try:
        data = storage.read_bytes(prefix + name)
    except FileNotFoundError as exc:
        raise ValueError(f"champion {version}: model file {prefix}{name} does not exist") from exc
    sha = hashlib.sha256(data).hexdigest()
    if len(data) != size or sha != entry["sha256"]:
        raise ValueError(f"champion {version}: {prefix}{name} is {len(data)} B, sha256 {sha[:16]}…; its "
                         f"manifest says {entry.get('size')} B, {str(entry.get('sha256'))[:16]}…")
    dest = Path(dest_dir)
    dest.mkdir(parents=True, exist_ok=True)
    path = dest / f"champion-{version}.tflite"
    path.write_bytes(data)
    return ChampionModel(version=version, path=path, manifest=manifest, uri=prefix + name)
