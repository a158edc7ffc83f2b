"""What is hosted: the models in the bucket and their registered versions (``edgeship models list``
and ``edgeship models versions``).

Models are the folders under ``gs://BUCKET/models/`` (Firestore's emulator cannot list
collections or run collection-group queries, so the bucket is the index that can be verified
here); versions are the function's create-only records ``models/{model}/versions/{version}``
(newest first: version ids sort in publish order); what each channel serves follows the one
channel rule (registry.serving_version), unpublished channels included.
"""
from __future__ import annotations

from typing import Any

from edgeship.contracts import manifest as mf
from edgeship.delivery import registry

MAX_VERSIONS = 1000


def hosted_models(bucket: str, storage_client: Any = None) -> list[str]:
    """The model names with a folder under gs://bucket/models/, sorted."""
    from edgeship.base import storage

    client = storage_client or storage.gcs_client()
    pages = client.list_blobs(bucket, prefix="models/", delimiter="/")
    for _ in pages:  # the prefixes are filled in while the listing is read
        pass
    names = {p[len("models/"):].rstrip("/") for p in pages.prefixes}
    return sorted(n for n in names if mf.NAME_RE.match(n))


def version_records(db, model: str, limit: int = MAX_VERSIONS) -> list[dict]:
    """The model's version records (the function's ``versions`` documents), newest first."""
    query = (db.collection("models").document(model).collection("versions")
             .order_by("version", direction="DESCENDING").limit(limit))
    return [d.to_dict() or {} for d in query.stream(retry=registry._retry(),
                                                    timeout=registry.FIRESTORE_TIMEOUT_S)]


def _row(record: dict) -> dict:
    m = record.get("manifest") or {}
    tflite = next((f for f in m.get("files") or [] if f.get("format") == "tflite"), {})
    return {"version": record.get("version") or m.get("version"), "version_name": m.get("version_name"),
            "channel": m.get("channel"), "task": mf.task_of(m), "created_at": m.get("created_at"),
            "display_name": m.get("display_name"), "tags": m.get("tags") or [],
            "size_bytes": tflite.get("size"), "sha256": tflite.get("sha256"),
            "files": [f.get("path") for f in m.get("files") or []], "variant": m.get("variant")}


def _channels(db, model: str, channels: set[str]) -> dict[str, dict]:
    """Per channel: what it serves (and that version's name), whether it is paused or unpublished."""
    out = {}
    for channel in sorted(channels):
        state = registry.channel_state(db, model, channel)
        newest = registry.newest_release(db, model, channel)
        serving = registry.serving_version(state, newest["version"] if newest else None)
        out[channel] = {"serving": serving, "published": not state.get("unpublished"),
                        "paused": bool(state.get("paused")), "pinned_version": state.get("pinned_version"),
                        "last_action": state.get("last_action")}
    return out


def list_versions(model: str, *, channel: str | None = None, db=None, limit: int = 100) -> dict:
    """The model's registered versions, newest first (optionally of one channel), each with its
    version name, task, size and whether its channel serves it; and each channel's state."""
    mf.check_name(model, "model name")
    if channel is not None:
        mf.check_channel(channel)
    db = db or registry.firestore_client()
    rows = [_row(r) for r in version_records(db, model, MAX_VERSIONS)]
    channels = _channels(db, model, {r["channel"] for r in rows if r["channel"]})
    if channel is not None:
        rows = [r for r in rows if r["channel"] == channel]
    for r in rows:
        r["serving"] = channels.get(r["channel"], {}).get("serving") == r["version"]
    return {"model": model, "channels": channels, "versions": rows[:limit]}


def list_models(bucket: str, *, db=None, storage_client: Any = None) -> list[dict]:
    """Every model hosted in ``bucket``: its display name, task and tags (from its newest version),
    how many versions are registered, the newest, and each channel's state (serving, published)."""
    db = db or registry.firestore_client()
    out = []
    for model in hosted_models(bucket, storage_client):
        rows = [_row(r) for r in version_records(db, model)]
        newest = rows[0] if rows else {}
        out.append({"model": model, "display_name": newest.get("display_name"), "task": newest.get("task"),
                    "tags": newest.get("tags") or [], "versions": len(rows),
                    "newest_version": newest.get("version"), "newest_version_name": newest.get("version_name"),
                    "channels": _channels(db, model, {r["channel"] for r in rows if r["channel"]})})
    return out
