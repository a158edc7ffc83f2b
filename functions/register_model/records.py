"""The create-only Firestore records: models/{model}/versions/{version} and models/{model}/releases/{channel}-{version}."""
from __future__ import annotations

import hashlib

from .clients import _firestore, _fs_opts
from .errors import Rejected
from .settings import Config, _Budget


OPTIONAL_RELEASE_FIELDS = ("task", "version_name", "display_name", "tags")


def release_id(channel: str, version: str) -> str:
    """Document id of a release record: sorts by version within a channel."""
    return f"{channel}-{version}"


def _refs(model: str, version: str, channel: str):
    model_ref = _firestore().collection("models").document(model)
    return (model_ref.collection("versions").document(version),
            model_ref.collection("releases").document(release_id(channel, version)))


def _registered(cfg: Config, budget: _Budget, model: str, version: str, channel: str, sha: str) -> bool:
    """True if both records exist for this manifest; Rejected if the version has another one."""
    version_ref, release_ref = _refs(model, version, channel)
    snap = version_ref.get(**_fs_opts(cfg, budget))
    if not snap.exists:
        return False
    existing = (snap.to_dict() or {}).get("manifest_sha256")
    if existing != sha:
        raise Rejected(f"{version_ref.path} already exists with another manifest (sha256 "
                       f"{str(existing)[:16]}… vs {sha[:16]}…): versions are immutable", "manifest_sha256", sha)
    release = release_ref.get(**_fs_opts(cfg, budget))
    return bool(release.exists and (release.to_dict() or {}).get("manifest_sha256") == sha)


def _create_once(cfg: Config, budget: _Budget, doc_ref, data: dict, manifest_sha256: str) -> str:
    """create() the document; 'created', 'duplicate' (same manifest) or raise Rejected (conflict)."""
    from google.api_core import exceptions as gexc

    try:
        doc_ref.create(data, **_fs_opts(cfg, budget))
        return "created"
    except gexc.AlreadyExists:
        existing = doc_ref.get(**_fs_opts(cfg, budget)).to_dict() or {}
        if existing.get("manifest_sha256") == manifest_sha256:
            return "duplicate"
        raise Rejected(f"{doc_ref.path} already exists with another manifest "
                       f"(sha256 {str(existing.get('manifest_sha256'))[:16]}… vs {manifest_sha256[:16]}…): "
                       "versions are immutable", "manifest_sha256", manifest_sha256) from None


def register(cfg: Config, budget: _Budget, bucket: str, model: str, version: str, manifest: dict,
             raw: bytes, files: list[dict], generation: int) -> tuple[str, str]:
    """Write the version record, then the channel's release record. Both create-only."""
    from google.cloud import firestore

    sha = hashlib.sha256(raw).hexdigest()
    prefix = f"gs://{bucket}/models/{model}/{version}/"
    version_ref, release_ref = _refs(model, version, manifest["channel"])
    version_doc = {
        "manifest": manifest, "manifest_sha256": sha, "manifest_generation": str(generation),
        "bucket": bucket, "prefix": prefix, "version": version, "channel": manifest["channel"],
        "registered_at": firestore.SERVER_TIMESTAMP,
    }
    tflite = next(f for f in files if f["format"] == "tflite")
    release_doc = {
        "channel": manifest["channel"], "version": version, "model": model,
        "created_at": manifest["created_at"], "min_app_version": manifest["min_app_version"],
        "bucket": bucket, "prefix": prefix,
        "model_file": {k: tflite[k] for k in ("path", "size", "sha256", "quantization", "uri")},
        "files": [{k: f[k] for k in ("path", "format", "size", "sha256", "quantization", "uri")} for f in files],
        "input": manifest["input"], "outputs": manifest["outputs"], "labels": manifest["labels"],
        "variant": manifest["variant"], "parent_version": manifest["parent_version"],
        "manifest_sha256": sha, "registered_at": firestore.SERVER_TIMESTAMP,
        # what clients show (docs/delivery.md): copied only when the manifest has them, so a
        # pipeline detector's release record keeps exactly the fields the iOS contract reads
        **{k: manifest[k] for k in OPTIONAL_RELEASE_FIELDS if k in manifest},
    }
    v = _create_once(cfg, budget, version_ref, version_doc, sha)
    r = _create_once(cfg, budget, release_ref, release_doc, sha)
    return v, r
