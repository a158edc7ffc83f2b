"""The publish step's upload path, shared by the pipeline's publish (core.py), ``edgeship publish
PATH`` (any_model.py) and the Firebase ML import (firebase_import.py).

A version is ``gs://BUCKET/models/{model}/{version}/``: every file is uploaded create-only
(``if_generation_match=0``) with its sha256 in the object metadata, then ``manifest.json`` **last**
(its arrival is the commit point the Cloud Function reacts to). A folder that already holds
anything is an error; a failed publish deletes what it uploaded (best effort) and, having no
manifest, is never registered.

Version names: a manifest with ``version_name`` first claims
``gs://BUCKET/models/{model}/_names/{version_name}`` create-only (a small JSON object naming the
version id). A second publish of the same name on the model loses that race and uploads nothing:
names are as immutable as versions. ``_names`` is not a valid version name, so the Cloud Function
ignores these objects.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgeship.contracts import manifest as mf
from edgeship.delivery.registry import current_release_manifest

log = logging.getLogger(__name__)

MANIFEST_FILE = "manifest.json"
NAMES_DIR = "_names"
CONTENT_TYPES = {"tflite": "application/octet-stream", "coreml": "application/zip",
                 "labels": "text/plain; charset=utf-8", "report": "application/json",
                 "decision": "application/json"}


@dataclass
class PublishResult:
    """What was published: the version id, its folder URI and the manifest written last."""
    version: str
    uri: str
    manifest: dict
    objects: list[str] = field(default_factory=list)


@dataclass
class Upload:
    local: Path
    name: str
    format: str
    quantization: str | None
    size: int = 0
    sha256: str = ""


def sha256_file(path: str | os.PathLike) -> str:
    """Hex sha256 of a file, streamed."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def hash_uploads(uploads: list[Upload], source: Path | str) -> None:
    """Fill in each upload's size and sha256; FileNotFoundError for a missing file."""
    for up in uploads:
        if not up.local.is_file():
            raise FileNotFoundError(f"file to publish not found: {up.local} (listed in {source})")
        up.size = up.local.stat().st_size
        up.sha256 = sha256_file(up.local)


def manifest_files(uploads: list[Upload]) -> list[dict]:
    """The manifest's ``files`` entries of the uploads (hashed)."""
    return [{"path": u.name, "format": u.format, "size": u.size, "sha256": u.sha256,
             "quantization": u.quantization} for u in uploads]


def version_name_object(model: str, version_name: str) -> str:
    """The object that claims ``version_name`` for ``model`` (create-only)."""
    return f"models/{model}/{NAMES_DIR}/{version_name}"


def version_name_owner(bucket: str, model: str, version_name: str, storage_client: Any = None) -> str | None:
    """The version id that holds ``version_name`` on ``model``, or None when the name is free."""
    client = storage_client or storage_client_default()
    blob = client.bucket(bucket).get_blob(version_name_object(model, version_name))
    if blob is None:
        return None
    try:
        return str(json.loads(blob.download_as_bytes()).get("version") or "?")
    except ValueError:
        return "?"


def check_version_name_free(bucket: str, model: str, version_name: str | None, storage_client: Any = None) -> None:
    """ValueError when ``version_name`` is already taken on ``model`` (read-only; the claim at
    upload is what makes it race-free)."""
    if not version_name:
        return
    owner = version_name_owner(bucket, model, version_name, storage_client)
    if owner is not None:
        raise ValueError(f"version name {version_name!r} of {model} is already taken by version {owner}: "
                         "versions and their names are immutable; choose another --version-name")


def _claim_version_name(gbucket, model: str, version: str, version_name: str) -> str:
    from google.api_core import exceptions as gexc

    name = version_name_object(model, version_name)
    blob = gbucket.blob(name)
    blob.metadata = {"edgeship-version": version}
    try:
        blob.upload_from_string(json.dumps({"model": model, "version": version, "version_name": version_name}),
                                content_type="application/json", if_generation_match=0)
    except gexc.PreconditionFailed:
        raise ValueError(f"version name {version_name!r} of {model} is already taken: versions and their "
                         "names are immutable; choose another --version-name") from None
    return name


def upload_version(manifest: dict, uploads: list[Upload], *, bucket: str, model: str, version: str,
                   channel: str, lookup_parent: bool, storage_client: Any) -> PublishResult:
    """Claim the version name (if any), upload the files (create-only), then the manifest last;
    clean up on failure."""
    from google.api_core import exceptions as gexc

    if lookup_parent:
        current = current_release_manifest(model, channel, bucket=bucket)
        manifest["parent_version"] = current.get("version") if current else None
        mf.validate(manifest, source=f"manifest of {model} {version}")
    client = storage_client or storage_client_default()
    gbucket = client.bucket(bucket)
    prefix = f"models/{model}/{version}/"
    uri = f"gs://{bucket}/{prefix}"
    if any(True for _ in client.list_blobs(bucket, prefix=prefix, max_results=1)):
        raise ValueError(f"version {version} of {model} already exists at {uri}: versions are immutable")
    done: list[str] = []
    try:
        if manifest.get("version_name"):
            done.append(_claim_version_name(gbucket, model, version, manifest["version_name"]))
        for up in uploads:
            blob = gbucket.blob(prefix + up.name)
            blob.metadata = {"sha256": up.sha256, "edgeship-version": version}
            blob.upload_from_filename(str(up.local), content_type=CONTENT_TYPES[up.format],
                                      if_generation_match=0)
            done.append(prefix + up.name)
            log.info("uploaded gs://%s/%s (%d bytes)", bucket, prefix + up.name, up.size)
        body = json.dumps(manifest, indent=2, ensure_ascii=False).encode("utf-8")
        blob = gbucket.blob(prefix + MANIFEST_FILE)
        blob.metadata = {"sha256": hashlib.sha256(body).hexdigest(), "edgeship-version": version}
        blob.upload_from_string(body, content_type="application/json", if_generation_match=0)
    except gexc.PreconditionFailed as exc:
        _cleanup(gbucket, done)
        raise ValueError(f"an object of version {version} already exists under {uri}: "
                         "versions are immutable") from exc
    except BaseException:
        _cleanup(gbucket, done)
        raise
    log.info("published %s version %s to channel %s: %s (manifest written last)",
             model, version, channel, uri)
    return PublishResult(version=version, uri=uri, manifest=manifest,
                         objects=[f"gs://{bucket}/{n}" for n in done + [prefix + MANIFEST_FILE]])


def _cleanup(gbucket, names: list[str]) -> None:
    """Delete the objects a failed publish uploaded (no manifest was written, so none is visible)."""
    for name in names:
        try:
            gbucket.blob(name).delete()
        except Exception as exc:  # noqa: BLE001 - best effort; the folder has no manifest anyway
            log.warning("could not delete gs://%s/%s after a failed publish: %s", gbucket.name, name, exc)


def storage_client_default():
    from edgeship.base import storage

    return storage.gcs_client()
