"""register_model: the Cloud Function (2nd gen) that registers published models in Firestore.

Trigger: Eventarc ``google.cloud.storage.object.v1.finalized`` on the model bucket. The publisher
writes ``gs://BUCKET/models/{model}/{version}/manifest.json`` last; its arrival commits the
version. For each manifest this function:

1. checks the object path (``models/{model}/{version}/manifest.json``, names from a strict ASCII
   alphabet) and the object's size from the event, before any read;
2. reads the manifest (that generation, bounded), validates it against manifest.schema.json
   (shipped in this folder, the single source of truth) and checks it names its own folder;
3. checks every listed file exists in the same folder with the listed size and sha256
   (the object's ``sha256`` metadata, else by hashing the object);
4. writes two create-only documents (docs/delivery.md):
   ``models/{model}/versions/{version}`` (the full manifest) and then
   ``models/{model}/releases/{channel}-{version}`` (what clients listen to).

Delivery is at least once, in any order, concurrently: every write is a ``create()`` (exists
precondition), so a redelivered identical manifest is a no-op, a different manifest for an existing
version is rejected, and a channel's current release (its newest record) never moves backwards.

Permanent errors (bad path, bad manifest, missing file) are logged and acknowledged (the handler
returns normally, HTTP 2xx); transient errors (Firestore or Cloud Storage unavailable) raise, so
Eventarc redelivers. One JSON log line per decision (severity, decision, model, version, reason).
Clients are created on first use, never at import; tests inject their own with set_clients().
"""
from __future__ import annotations

import datetime as _dt
import functools
import hashlib
import json
import logging
import os
import re
import sys
from pathlib import Path
from typing import Any

import functions_framework

SCHEMA_PATH = Path(__file__).with_name("manifest.schema.json")
MANIFEST_NAME = "manifest.json"
MAX_MANIFEST_BYTES = 256 * 1024        # a real manifest is a few KB
MAX_EVENT_AGE_S = 24 * 3600            # Eventarc stops retrying after 24 h; drop anything older
NAME_RE = re.compile(r"^(?!.*\.\.)[a-z0-9][a-z0-9._-]{0,62}$")
FIRESTORE_TIMEOUT_S = 10.0             # per call, retries included: then the event is retried
                                       # (override: env REGISTER_MODEL_FIRESTORE_TIMEOUT_S)

log = logging.getLogger("register_model")


class Rejected(Exception):
    """A permanent problem with the event or the manifest: log, acknowledge, never retry."""


class _Clients:
    firestore: Any = None
    storage: Any = None


_clients = _Clients()


def set_clients(firestore_client: Any = None, storage_client: Any = None) -> None:
    """Inject clients (tests, local stack). None resets to lazy creation."""
    _clients.firestore = firestore_client
    _clients.storage = storage_client


def _firestore():
    if _clients.firestore is None:
        from google.cloud import firestore

        _clients.firestore = firestore.Client(project=os.environ.get("GOOGLE_CLOUD_PROJECT"))
    return _clients.firestore


def _storage():
    if _clients.storage is None:
        from google.cloud import storage

        if os.environ.get("STORAGE_EMULATOR_HOST"):
            from google.auth.credentials import AnonymousCredentials

            _clients.storage = storage.Client(
                project=os.environ.get("GOOGLE_CLOUD_PROJECT") or "edgeship-local",
                credentials=AnonymousCredentials())
        else:
            _clients.storage = storage.Client()
    return _clients.storage


@functools.lru_cache(maxsize=1)
def _validator():
    import jsonschema

    schema = json.loads(SCHEMA_PATH.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


class _StdoutHandler(logging.StreamHandler):
    """Writes to whatever sys.stdout is at emit time (the runtime or a test may replace it)."""

    @property
    def stream(self):  # type: ignore[override]
        return sys.stdout

    @stream.setter
    def stream(self, value) -> None:
        pass


def _ensure_log_handler() -> None:
    """One JSON line per record on stdout (Cloud Logging parses it); set up on first event."""
    if not log.handlers:
        handler = _StdoutHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.DEBUG if os.environ.get("REGISTER_MODEL_DEBUG") else logging.INFO)


def _decision(severity: str, decision: str, **fields: Any) -> dict:
    record = {"severity": severity, "decision": decision,
              "message": f"register_model: {decision}" + (f": {fields['reason']}" if fields.get("reason") else ""),
              **{k: v for k, v in fields.items() if v is not None}}
    log.log(getattr(logging, severity if severity != "NOTICE" else "INFO"), json.dumps(record, default=str))
    return record


def _transient_errors() -> tuple[type[BaseException], ...]:
    from google.api_core import exceptions as gexc

    errors: list[type[BaseException]] = [
        gexc.ServiceUnavailable, gexc.DeadlineExceeded, gexc.InternalServerError,
        gexc.TooManyRequests, gexc.Aborted, gexc.RetryError, gexc.BadGateway, gexc.GatewayTimeout,
        ConnectionError, TimeoutError]
    try:
        import requests

        errors += [requests.ConnectionError, requests.Timeout]
    except ImportError:  # pragma: no cover
        pass
    return tuple(errors)


def _retry():
    from google.api_core import exceptions as gexc
    from google.api_core import retry as gretry

    return gretry.Retry(predicate=gretry.if_exception_type(gexc.ServiceUnavailable, gexc.DeadlineExceeded,
                                                           gexc.InternalServerError, gexc.Aborted),
                        initial=0.1, maximum=1.0, multiplier=2.0, timeout=_timeout())


def _timeout() -> float:
    return float(os.environ.get("REGISTER_MODEL_FIRESTORE_TIMEOUT_S") or FIRESTORE_TIMEOUT_S)


# ----------------------------------------------------------------------------------------- checks

def parse_object_name(name: str) -> tuple[str, str] | None:
    """(model, version) for ``models/{model}/{version}/manifest.json``; None if not a manifest.

    Raises Rejected for a manifest at a path that breaks the layout (wrong depth, path tricks).
    """
    if not name.endswith("/" + MANIFEST_NAME) and name != MANIFEST_NAME:
        return None
    parts = name.split("/")
    if len(parts) != 4 or parts[0] != "models":
        raise Rejected(f"manifest at {name!r} is not in its own version folder "
                       "(expected models/{model}/{version}/manifest.json)")
    model, version = parts[1], parts[2]
    for what, value in (("model", model), ("version", version)):
        if not NAME_RE.match(value):
            raise Rejected(f"{what} name {value[:80]!r} in {name[:200]!r} is not allowed: use 1-63 of "
                           "a-z 0-9 . _ - (ASCII, starting with a letter or digit, no '..')")
    return model, version


def _event_size(data: dict) -> int | None:
    try:
        return int(data.get("size")) if data.get("size") is not None else None
    except (TypeError, ValueError):
        return None


def read_manifest(bucket: str, name: str, generation: Any, size: int | None) -> tuple[dict, bytes]:
    """Read and parse the manifest object (that generation, at most MAX_MANIFEST_BYTES + 1 bytes)."""
    if size is not None and size > MAX_MANIFEST_BYTES:
        raise Rejected(f"manifest is {size} bytes, over the {MAX_MANIFEST_BYTES}-byte limit")
    if size == 0:
        raise Rejected("manifest is empty (0 bytes): not JSON")
    from google.api_core import exceptions as gexc

    kwargs = {"generation": int(generation)} if generation not in (None, "") else {}
    blob = _storage().bucket(bucket).blob(name, **kwargs)
    try:
        raw = blob.download_as_bytes(start=0, end=MAX_MANIFEST_BYTES)  # end is inclusive: +1 byte
    except gexc.NotFound as exc:
        raise Rejected(f"manifest gs://{bucket}/{name} (generation {generation}) no longer exists") from exc
    except gexc.RequestRangeNotSatisfiable as exc:
        raise Rejected("manifest is empty (0 bytes): not JSON") from exc
    if len(raw) > MAX_MANIFEST_BYTES:
        raise Rejected(f"manifest is over the {MAX_MANIFEST_BYTES}-byte limit")
    try:
        manifest = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise Rejected(f"manifest is not JSON: {exc}") from exc
    if not isinstance(manifest, dict):
        raise Rejected(f"manifest is JSON but not an object ({type(manifest).__name__})")
    return manifest, raw


def validate_manifest(manifest: dict, model: str, version: str) -> None:
    """Schema-validate and check the manifest names its own folder. Raises Rejected."""
    errors = sorted(_validator().iter_errors(manifest), key=lambda e: list(e.absolute_path))
    if errors:
        shown = "; ".join(f"{'/'.join(map(str, e.absolute_path)) or '(root)'}: {e.message[:200]}"
                          for e in errors[:5])
        raise Rejected(f"manifest does not match schema version 1 ({len(errors)} error(s)): {shown}")
    if manifest["model"] != model or manifest["version"] != version:
        raise Rejected(f"manifest names {manifest['model']}/{manifest['version']} but lies in "
                       f"models/{model}/{version}/")
    paths = [f["path"] for f in manifest["files"]]
    if len(set(paths)) != len(paths):
        raise Rejected(f"manifest lists a file twice: {paths}")


def check_files(bucket: str, model: str, version: str, manifest: dict) -> list[dict]:
    """Every listed file exists in the version folder with the listed size and sha256."""
    checked = []
    gcs_bucket = _storage().bucket(bucket)
    for entry in manifest["files"]:
        name = f"models/{model}/{version}/{entry['path']}"
        blob = gcs_bucket.get_blob(name)
        if blob is None:
            raise Rejected(f"listed file {entry['path']!r} is missing (gs://{bucket}/{name})")
        if int(blob.size) != entry["size"]:
            raise Rejected(f"listed file {entry['path']!r} is {blob.size} bytes, manifest says {entry['size']}")
        meta_sha = (blob.metadata or {}).get("sha256")
        if meta_sha is None:
            digest = hashlib.sha256()
            with blob.open("rb", chunk_size=1 << 20) as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    digest.update(chunk)
            actual, source = digest.hexdigest(), "content"
        else:
            actual, source = meta_sha, "object metadata"
        if actual != entry["sha256"]:
            raise Rejected(f"listed file {entry['path']!r} has sha256 {actual[:16]}… ({source}), "
                           f"manifest says {entry['sha256'][:16]}…")
        checked.append({**entry, "uri": f"gs://{bucket}/{name}", "generation": int(blob.generation)})
    return checked


# ---------------------------------------------------------------------------------------- records

def release_id(channel: str, version: str) -> str:
    """Document id of a release record: sorts by version within a channel."""
    return f"{channel}-{version}"


def _create_once(doc_ref, data: dict, manifest_sha256: str) -> str:
    """create() the document; 'created', 'duplicate' (same manifest) or raise Rejected (conflict)."""
    from google.api_core import exceptions as gexc

    try:
        doc_ref.create(data, retry=_retry(), timeout=_timeout())
        return "created"
    except gexc.AlreadyExists:
        existing = doc_ref.get(retry=_retry(), timeout=_timeout()).to_dict() or {}
        if existing.get("manifest_sha256") == manifest_sha256:
            return "duplicate"
        raise Rejected(f"{doc_ref.path} already exists with another manifest "
                       f"(sha256 {str(existing.get('manifest_sha256'))[:16]}… vs {manifest_sha256[:16]}…): "
                       "versions are immutable") from None


def register(bucket: str, model: str, version: str, manifest: dict, raw: bytes,
             files: list[dict], generation: Any) -> tuple[str, str]:
    """Write the version record, then the channel's release record. Both create-only."""
    from google.cloud import firestore

    db = _firestore()
    sha = hashlib.sha256(raw).hexdigest()
    prefix = f"gs://{bucket}/models/{model}/{version}/"
    model_ref = db.collection("models").document(model)
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
    }
    v = _create_once(model_ref.collection("versions").document(version), version_doc, sha)
    r = _create_once(model_ref.collection("releases").document(release_id(manifest["channel"], version)),
                     release_doc, sha)
    return v, r


# ---------------------------------------------------------------------------------------- handler

def handle(data: dict, event_id: str | None = None, event_time: str | None = None) -> dict:
    """Process one finalized-object payload; returns the logged decision record.

    Raises on transient errors (the caller must answer 5xx so the event is redelivered).
    """
    _ensure_log_handler()
    bucket, name = str(data.get("bucket") or ""), str(data.get("name") or "")
    base = {"event_id": event_id, "object": f"gs://{bucket}/{name}"[:300]}
    try:
        parsed = parse_object_name(name)
    except Rejected as exc:
        return _decision("ERROR", "rejected", reason=str(exc), **base)
    if parsed is None:
        if log.isEnabledFor(logging.DEBUG):
            _decision("DEBUG", "ignored", reason="not a manifest", **base)
        return {"decision": "ignored"}
    model, version = parsed
    ids = {"model": model, "version": version, **base}
    if event_time:
        try:
            when = _dt.datetime.fromisoformat(str(event_time).replace("Z", "+00:00"))
            age = (_dt.datetime.now(_dt.timezone.utc) - when).total_seconds()
            if age > MAX_EVENT_AGE_S:
                return _decision("ERROR", "dropped", reason=f"event is {age:.0f} s old (> {MAX_EVENT_AGE_S})", **ids)
        except ValueError:
            pass
    transient = _transient_errors()
    try:
        manifest, raw = read_manifest(bucket, name, data.get("generation"), _event_size(data))
        validate_manifest(manifest, model, version)
        files = check_files(bucket, model, version, manifest)
        v, r = register(bucket, model, version, manifest, raw, files, data.get("generation"))
    except Rejected as exc:
        return _decision("ERROR", "rejected", reason=str(exc), **ids)
    except transient as exc:
        _decision("WARNING", "retry", reason=f"transient: {type(exc).__name__}: {str(exc)[:300]}", **ids)
        raise
    if v == "duplicate" and r == "duplicate":
        return _decision("INFO", "duplicate", reason="identical manifest already registered", **ids,
                         channel=manifest["channel"])
    return _decision("NOTICE", "registered", reason=f"version {v}, release {r}", **ids,
                     channel=manifest["channel"])


@functions_framework.cloud_event
def register_model(cloud_event) -> None:
    """Entry point: a ``google.cloud.storage.object.v1.finalized`` CloudEvent."""
    data = cloud_event.data
    if isinstance(data, (bytes, str)):
        try:
            data = json.loads(data)
        except json.JSONDecodeError:
            data = {}
    if not isinstance(data, dict):
        data = {}
    handle(data, event_id=cloud_event.get("id") if hasattr(cloud_event, "get") else None,
           event_time=cloud_event.get("time") if hasattr(cloud_event, "get") else None)
