"""``edgeship import-firebase``: move the models a Firebase ML project hosts to edgeship.

Input (docs/firebase-migration.md says how to make it): a JSON file listing the models as the
Firebase Admin SDK describes them (``firebase_admin.ml.list_models()``, each ``Model.as_dict()``:
``name`` = projects/P/models/ID, ``displayName``, ``tags``, ``state.published``,
``tfliteModel.gcsTfliteUri`` / ``sizeBytes``, ``modelHash``), as ``{"models": [...]}`` or a bare
list, and a folder holding each model's .tflite. snake_case keys (``model_id``, ``display_name``,
``published``, ``model_hash``, ``size_bytes``, ``gcs_tflite_uri``) are read too. Per model, an
optional ``file`` (path in the folder), ``edgeship_model`` (the name to publish under) and ``task``
override the defaults: the file is ``file``, else ``{model_id}.tflite``, else
``{displayName}.tflite``, else the basename of ``gcsTfliteUri``; the name is the display name in
lowercase; the task is ``--task`` (default ``other``).

Each model becomes an edgeship model of that name with one version on the channel, keeping its
display name and tags, and the version name ``firebase-{model_id}`` (so a second import of the same
export skips what is already there instead of publishing it twice). A model that is not published
in Firebase is unpublished on the channel *before* its files are uploaded, so no client ever gets
it. Every model is checked first (file present, size and sha256 as Firebase recorded them, a
TFLite model LiteRT loads, outputs that fit the task): one bad model stops the import before
anything is uploaded.
"""
from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

from components.publish.any_model import build_model_manifest, channel_parent
from components.publish.settings import PUBLISH
from components.publish.upload import sha256_file, upload_version, version_name_owner
from edgeship.contracts import manifest as mf
from edgeship.delivery import registry

log = logging.getLogger(__name__)

FIREBASE_VARIANT = "firebase"
DEFAULT_TASK = "other"


@dataclasses.dataclass
class FirebaseModel:
    """One model of the export, resolved and checked."""
    model_id: str | None
    display_name: str
    tags: list[str]
    published: bool
    file: Path
    model: str          # the edgeship model name
    task: str

    @property
    def version_name(self) -> str | None:
        return f"firebase-{self.model_id}" if self.model_id else None


def _get(entry: dict, *keys: str) -> Any:
    for key in keys:
        node: Any = entry
        for part in key.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        if node is not None:
            return node
    return None


def _model_id(entry: dict) -> str | None:
    value = _get(entry, "model_id", "modelId")
    if value is None and isinstance(entry.get("name"), str) and "/models/" in entry["name"]:
        value = entry["name"].rsplit("/models/", 1)[1]
    if value is None:
        return None
    value = str(value)
    mf.check_version_name(f"firebase-{value}", "Firebase model id")
    return value


def _resolve_file(entry: dict, files_dir: Path, model_id: str | None, display_name: str, where: str) -> Path:
    explicit = entry.get("file")
    uri = _get(entry, "tfliteModel.gcsTfliteUri", "gcs_tflite_uri")
    candidates = ([str(explicit)] if explicit else
                  [f"{model_id}.tflite" if model_id else None, f"{display_name}.tflite",
                   uri.rsplit("/", 1)[-1] if isinstance(uri, str) and uri else None])
    candidates = [c for c in candidates if c]
    for name in candidates:
        path = (files_dir / name).resolve()
        if files_dir.resolve() not in path.parents:
            raise ValueError(f"{where}: file {name!r} is outside {files_dir}")
        if path.is_file():
            return path
    raise FileNotFoundError(f"{where}: the export lists this model but its file is missing from "
                            f"{files_dir} (looked for {', '.join(candidates)})")


def _check_recorded(entry: dict, path: Path, where: str) -> None:
    """The file's size and sha256 are those Firebase recorded (when the export has them)."""
    size = _get(entry, "tfliteModel.sizeBytes", "size_bytes")
    if size is not None and int(size) != path.stat().st_size:
        raise ValueError(f"{where}: {path} has {path.stat().st_size} bytes, Firebase recorded {size}: "
                         "not the model's file (download it again)")
    digest = _get(entry, "modelHash", "model_hash")
    if isinstance(digest, str) and len(digest) == 64 and digest.lower() != sha256_file(path):
        raise ValueError(f"{where}: {path} has sha256 {sha256_file(path)[:16]}…, Firebase recorded "
                         f"{digest[:16]}…: not the model's file (download it again)")


def _read_entries(export_json: Path) -> list[dict]:
    if not export_json.is_file():
        raise FileNotFoundError(f"Firebase export not found: {export_json}")
    try:
        data = json.loads(export_json.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError(f"Firebase export {export_json} is not JSON: {exc}") from exc
    entries = data.get("models") if isinstance(data, dict) else data
    if not isinstance(entries, list) or not entries or not all(isinstance(e, dict) for e in entries):
        raise ValueError(f"Firebase export {export_json}: expected {{\"models\": [...]}} or a list of "
                         "models (firebase_admin.ml Model.as_dict()), with at least one model")
    return entries


def read_export(export_json: str | os.PathLike, files_dir: str | os.PathLike, *,
                task: str = DEFAULT_TASK) -> list[FirebaseModel]:
    """The export's models, each resolved to its file and edgeship name and checked (files present,
    size and hash as recorded, names valid and distinct). Raises ValueError / FileNotFoundError
    naming the model."""
    export_json, files_dir = Path(export_json), Path(files_dir)
    if not files_dir.is_dir():
        raise FileNotFoundError(f"folder of model files not found: {files_dir}")
    models: list[FirebaseModel] = []
    for i, entry in enumerate(_read_entries(export_json)):
        display_name = _get(entry, "displayName", "display_name")
        where = f"{export_json} model {i} ({display_name!r})"
        if not isinstance(display_name, str) or not display_name:
            raise ValueError(f"{where}: no displayName")
        model_id = _model_id(entry)
        name = str(entry.get("edgeship_model") or display_name.lower())
        mf.check_name(name, f"{where}: edgeship model name (set \"edgeship_model\" to choose one)")
        model_task = mf.check_task(str(entry.get("task") or task), f"{where}: task")
        tags = mf.check_tags(_get(entry, "tags") or [], f"{where}: tags")
        path = _resolve_file(entry, files_dir, model_id, display_name, where)
        _check_recorded(entry, path, where)
        published = bool(_get(entry, "state.published", "published"))
        models.append(FirebaseModel(model_id, display_name, tags, published, path, name, model_task))
    names = [m.model for m in models]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ValueError(f"{export_json}: several models would be published as {dupes}; set "
                         "\"edgeship_model\" on them to choose distinct names")
    return models


def import_firebase(export_json: str | os.PathLike, files_dir: str | os.PathLike, *, bucket: str,
                    channel: str = PUBLISH.channel, task: str = DEFAULT_TASK,
                    min_app_version: str = PUBLISH.min_app_version, check_only: bool = False,
                    storage_client: Any = None, db: Any = None) -> list[dict]:
    """Publish every model of a Firebase ML export to ``channel``; one summary dict per model
    ({model, display_name, firebase_id, published, task, version, version_name, status}).

    Checks everything first — read_export, each model's manifest (LiteRT, task, schema), then the
    read-only remote checks (version name taken = imported before: skipped; another task served
    under the name: refused) — and stops there when ``check_only``; only then writes, per model:
    an unpublished model's channel is unpublished first, then the version is uploaded."""
    if not bucket or "/" in bucket:
        raise ValueError(f"bucket {bucket!r} is not a bucket name")
    mf.check_channel(channel)
    models = read_export(export_json, files_dir, task=task)
    with tempfile.TemporaryDirectory(prefix="edgeship-firebase-") as work:
        plans = []
        for m in models:
            now = _dt.datetime.now(_dt.timezone.utc)
            manifest, uploads = build_model_manifest(
                [m.file], task=m.task, model=m.model, channel=channel, version=mf.new_version(now),
                created_at=registry._utc_iso(now), work_dir=work, tags=m.tags,
                display_name=m.display_name, version_name=m.version_name,
                min_app_version=min_app_version, variant=FIREBASE_VARIANT)
            plans.append((m, manifest, uploads))
        if check_only:
            return [{**_summary(m), "file": str(m.file), "tags": m.tags, "status": "checked"}
                    for m, _, _ in plans]
        done = [_imported_before(m, bucket, storage_client) for m, _, _ in plans]
        for (m, manifest, _), owner in zip(plans, done):
            if owner is None:
                manifest["parent_version"] = channel_parent(m.model, channel, m.task, bucket)
                if not m.published and manifest["parent_version"] is not None:
                    raise ValueError(f"{m.display_name} ({m.model_id}) is unpublished in Firebase, but {m.model} "
                                     f"on channel {channel!r} serves version {manifest['parent_version']}: "
                                     "importing it would unpublish that; set \"edgeship_model\" or --channel")
                mf.validate(manifest, source=f"manifest of {m.model}")
        return [{**_summary(m), "version": owner, "status": "already imported"} if owner is not None else
                _import_one(m, manifest, uploads, bucket=bucket, channel=channel,
                            storage_client=storage_client, db=db)
                for (m, manifest, uploads), owner in zip(plans, done)]


def _summary(m: FirebaseModel) -> dict:
    return {"model": m.model, "display_name": m.display_name, "firebase_id": m.model_id,
            "published": m.published, "task": m.task, "version_name": m.version_name}


def _imported_before(m: FirebaseModel, bucket: str, storage_client: Any) -> str | None:
    """The version an earlier import published for ``m`` (its version name is taken), or None."""
    owner = version_name_owner(bucket, m.model, m.version_name, storage_client) if m.version_name else None
    if owner is not None:
        log.info("%s (%s): already imported as version %s: skipped", m.display_name, m.model_id, owner)
    return owner


def _import_one(m: FirebaseModel, manifest: dict, uploads: list, *, bucket: str, channel: str,
                storage_client: Any, db: Any) -> dict:
    if not m.published:  # before any file lands, so no client ever sees it served
        registry.channel_action("unpublish", m.model, channel, db=db,
                                reason=f"imported from Firebase ML, where model {m.model_id} "
                                       f"({m.display_name}) was not published")
    result = upload_version(manifest, uploads, bucket=bucket, model=m.model, version=manifest["version"],
                            channel=channel, lookup_parent=False, storage_client=storage_client)
    return {**_summary(m), "version": result.version, "uri": result.uri,
            "status": "published" if m.published else "imported, unpublished"}
